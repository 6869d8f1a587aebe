"""What `import mmdeploy` users call: load an inventory, plan, deploy, verify.

    import mmdeploy
    inv = mmdeploy.load("hosts/single.yml", overrides=["mattermost.version=10.11.4"])
    report = mmdeploy.plan(inv)           # reads only
    report = mmdeploy.deploy(inv)         # applies; report.failed, report.changed
    problems = mmdeploy.verify(inv)       # [] when healthy
    mmdeploy.failover_db(inv)             # DB switchover/failover, Mattermost re-pointed
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from . import components as _components
from . import inventory as _inventory
from . import runner
from .errors import MMDeployError
from .inventory import Inventory
from .report import Reporter
from .runner import RunReport
from .secrets import Redactor, Secrets


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Inventory:
    """Load and validate an inventory; raises InventoryError (exit code 2) on bad input."""
    return _inventory.load(path, overrides)


def plan(inventory: Inventory, *, limit: list[str] | None = None, only: list[str] | None = None,
         out: TextIO | None = None, verbose: bool = False) -> RunReport:
    """Every step that would change, with diffs; changes nothing."""
    return _run(inventory, "plan", limit, only, out, verbose)


def deploy(inventory: Inventory, *, limit: list[str] | None = None, only: list[str] | None = None,
           out: TextIO | None = None, verbose: bool = False) -> RunReport:
    """Apply the inventory; a second deploy of the same inventory changes nothing."""
    return _run(inventory, "apply", limit, only, out, verbose)


def verify(inventory: Inventory, *, only: list[str] | None = None, out: TextIO | None = None) -> list[str]:
    """Run every component's health checks; returns the failing ones as 'name: problem'."""
    out = out or sys.stdout
    redact = _session(inventory)[0]
    failures = []
    for component in _components.by_name(only):
        for check in component.checks(inventory):
            problem = check.run()
            line = f"{'FAIL' if problem else 'ok':<4} {check.name}" + (f": {problem}" if problem else "")
            print(redact(line), file=out, flush=True)
            if problem:
                failures.append(f"{check.name}: {problem}")
    return failures


def failover_db(inventory: Inventory, *, to: str | None = None, force: bool = False,
                out: TextIO | None = None) -> dict:
    """Switch the database primary (dbtier.failover), then re-point every Mattermost server
    that is installed: a deploy of the mattermost component (which reads the live primary)
    on one server at a time, job server first, so the app tier never restarts all at once."""
    from . import dbtier
    from .components.mattermost import CONFIG
    from .remote import Remote

    out = out or sys.stdout
    result = dbtier.failover(inventory, to=to, force=force, out=lambda line: print(line, file=out, flush=True))
    servers = sorted((h for h in inventory.hosts if h.has("app") or h.has("jobserver")), key=lambda h: h.has("app"))
    redactor, _ = _session(inventory)
    installed = []
    for h in servers:
        remote = Remote(h, redactor)
        try:
            if remote.run(f"test -f {CONFIG}").ok:
                installed.append(h.name)
        except MMDeployError as e:  # a dead app server is re-pointed by the next deploy
            print(f"{h.name}: not re-pointed to {result['new']}: {e}", file=out, flush=True)
        finally:
            remote.close()
    for name in installed:
        report = deploy(inventory, limit=[name], only=["mattermost"], out=out)
        if report.failed:
            raise MMDeployError(f"the database failed over to {result['new']}, but re-pointing Mattermost on "
                                f"{name} failed: {report.hosts[name].error}")
    result["mattermost"] = installed
    return result


def _session(inventory: Inventory) -> tuple[Redactor, Secrets]:
    redactor = Redactor()
    return redactor, Secrets(inventory.secrets_path, redactor)


def _run(inventory, mode, limit, only, out, verbose) -> RunReport:
    redactor, secrets = _session(inventory)
    selected = _components.by_name(only)
    runner.select_hosts(inventory, limit)  # bad --limit is bad input: refuse before connecting
    reporter = Reporter(redactor, out=out, verbose=verbose)
    return runner.run(inventory, selected, mode=mode, secrets=secrets, reporter=reporter, limit=limit)
