"""After a failover: every client of the database follows the new primary.

The clients are the components that declare `follows_db` (Mattermost's app and job
servers). Each is re-applied on all its hosts at once, on the topology the failover just
decided (no second look at the dead primary), with `Component.after_failover` telling it
that this is a re-point: switch the server first (config, then a restart that does not
wait on the old primary), and nothing that needs the database. A server that cannot be
re-pointed does not stop the others; the report says, per server, what is left to do.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

from .dbtier import Topology
from .inventory import Inventory


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
    stamp("done" if report.ok else f"done, {sum(not r.ok for r in report.results)} client(s) left to re-point")
    return report
