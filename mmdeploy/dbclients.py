"""After a failover: every client of the database follows the new primary.

The clients are the components that declare `follows_db` (Mattermost's app and job
servers). Each is re-applied on all its hosts at once, on the topology the failover just
decided (no second look at the dead primary), with `Component.after_failover` telling it
that this is a re-point: switch the server first (config, then a restart that does not
wait on the old primary), and nothing that needs the database. A server that cannot be
re-pointed does not stop the others; the report says, per server, what is left to do.

With several app servers, every one was restarted at the same moment, so NGINX's passive
checks (max_fails per worker) had marked them all down, and it would answer "no live
upstreams" for its whole fail_timeout after they are back. Once they are, the proxies
reload NGINX: new workers start with no marks, the old ones finish their requests.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

from .dbtier import Topology
from .errors import MMDeployError
from .inventory import Host, Inventory
from .secrets import Redactor


@dataclass
class ClientResult:
    host: str
    component: str
    ok: bool
    changed: int
    seconds: float
    error: str | None = None


@dataclass
class RepointReport:
    results: list[ClientResult] = field(default_factory=list)
    proxies: dict[str, str] = field(default_factory=dict)  # proxy -> "reloaded" or why not

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def left_to_do(self) -> list[str]:
        """One line per client that still names the old primary."""
        return [
            f"{r.host}: {r.error}; when it is reachable again: inv deploy --only {r.component} --limit {r.host}"
            for r in self.results
            if not r.ok
        ]


def repoint(
    inventory: Inventory, topology: Topology, say: Callable[[str], None], started: float | None = None
) -> RepointReport:
    """Re-apply every follows_db component on its hosts, in parallel, on `topology`."""
    from . import runner
    from .api import session
    from .registry import registry
    from .report import Reporter

    started = time.monotonic() if started is None else started

    def stamp(message: str) -> None:
        say(f"[{time.monotonic() - started:5.1f}s] {message}")

    report = RepointReport()
    redactor, secrets = session(inventory)
    for component in registry().components:
        if not component.follows_db:
            continue
        hosts = [h.name for h in component.hosts(inventory)]
        if not hosts:
            continue
        stamp(f"re-pointing {component.name} on {', '.join(hosts)} to {topology.require_primary().name}")
        log = io.StringIO()  # the per-step lines go to the run log; the timeline stays short
        run = runner.run(
            inventory,
            [component],
            mode="apply",
            secrets=secrets,
            reporter=Reporter(redactor, out=log),
            limit=hosts,
            shared={component.name: component.after_failover(topology)},
        )
        for name, h in run.hosts.items():
            error = redactor(h.error) if h.error else None
            result = ClientResult(name, component.name, h.alive, h.changed, round(h.seconds, 1), error)
            report.results.append(result)
            if h.alive:
                stamp(
                    f"{name}: re-pointed ({'restarted' if h.changed else 'already pointing there'}, {h.seconds:.1f} s)"
                )
            else:
                stamp(f"{name}: NOT re-pointed: {error}")
    restarted = [r.host for r in report.results if r.ok and r.changed and inventory.host(r.host).has("app")]
    if restarted and len(inventory.with_role("app")) > 1:
        report.proxies = forget_failures(inventory, redactor, stamp)
    stamp("done" if report.ok else f"done, {sum(not r.ok for r in report.results)} client(s) left to re-point")
    return report


def forget_failures(inventory: Inventory, redactor: Redactor, stamp: Callable[[str], None]) -> dict[str, str]:
    """Reload NGINX on every proxy so that it forgets the app servers it marked down
    while they restarted. A proxy that cannot be reached (it may be the one that lost the
    floating address) is named; it forgets by itself after fail_timeout."""
    from .components.nginx import RELOAD_SCRIPT
    from .fleet import Fleet
    from .step import run_checked

    proxies = inventory.with_role("proxy")
    done: dict[str, str] = {}

    def reload(proxy: Host) -> None:
        try:
            run_checked(fleet.remote(proxy), RELOAD_SCRIPT, f"reload nginx on {proxy.name}", timeout=30)
            done[proxy.name] = "reloaded"
        except MMDeployError as e:
            done[proxy.name] = str(e)

    with Fleet(inventory, "failover-db-proxies", redactor=redactor) as fleet:
        fleet.parallel(reload, proxies)
    for proxy in proxies:
        state = done[proxy.name]
        stamp(
            f"{proxy.name}: NGINX reloaded (the app servers' failure marks forgotten)"
            if state == "reloaded"
            else f"{proxy.name}: NGINX not reloaded ({state}); it sends requests to the restarted servers "
            "again after fail_timeout"
        )
    return done
