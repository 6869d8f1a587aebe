"""What `import mmdeploy` users call: everything the command line does, with structured
results (the CLI in tasks.py only formats them).

    import mmdeploy
    inv = mmdeploy.load(mmdeploy.inventory_path(pattern="single"), overrides=["mattermost.port=8065"])
    report = mmdeploy.plan(inv)             # reads only; report.changed, report.failed, report.results
    report = mmdeploy.deploy(inv)           # applies; a second deploy changes nothing
    results = mmdeploy.verify(inv)          # [CheckResult(name, ok, problem, seconds), ...]
    nodes = mmdeploy.db_status(inv)         # [NodeState, ...]
    failover = mmdeploy.failover_db(inv)    # DB switchover/failover, then every DB client re-pointed
    mmdeploy.rejoin(inv, "db1")             # a former primary back as a replica

Output (the same lines the CLI prints) goes to `out` (default: standard output); pass
io.StringIO() to keep it. Every line is redacted: no secret ever appears in it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import inventory as _inventory
from . import runner
from .dbclients import RepointReport
from .dbtier import FailoverResult, NodeState, Topology
from .errors import MMDeployError
from .inventory import Inventory
from .report import Reporter
from .runner import RunReport
from .secrets import Redactor, Secrets


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Inventory:
    """Load and validate an inventory; raises InventoryError (exit code 2) on bad input,
    before any host is contacted."""
    return _inventory.load(path, overrides)


def inventory_path(pattern: str | None = None, inventory: str | Path | None = None,
                   hosts_dir: str | Path = "hosts") -> Path:
    """`--pattern P` means hosts/P.yml unless `--inventory` names a file."""
    return _inventory.inventory_path(pattern, str(inventory) if inventory else None, Path(hosts_dir))


def session(inventory: Inventory) -> tuple[Redactor, Secrets]:
    """The redactor and secrets of a run on `inventory`: every known secret is registered
    with the redactor before anything is printed."""
    from .registry import registry

    redactor = Redactor()
    return redactor, Secrets(inventory.secrets_path, redactor, registry().secrets.values())


def plan(inventory: Inventory, *, limit: list[str] | None = None, only: list[str] | None = None,
         out: TextIO | None = None, verbose: bool = False) -> RunReport:
    """Every step that would change, with diffs; changes nothing."""
    return _run(inventory, "plan", limit, only, out, verbose)


def deploy(inventory: Inventory, *, limit: list[str] | None = None, only: list[str] | None = None,
           out: TextIO | None = None, verbose: bool = False) -> RunReport:
    """Apply the inventory; a second deploy of the same inventory changes nothing."""
    return _run(inventory, "apply", limit, only, out, verbose)


@dataclass
class CheckResult:
    name: str
    ok: bool
    problem: str | None
    seconds: float


def verify(inventory: Inventory, *, only: list[str] | None = None, out: TextIO | None = None) -> list[CheckResult]:
    """Run every component's health checks; each result is named. A check that raises is
    that check failing, with the reason; the later checks still run."""
    from .registry import registry

    out = out or sys.stdout
    redact = session(inventory)[0]
    results = []
    for component in registry().by_name(only):
        try:
            checks = component.checks(inventory)
        except Exception as e:  # building the checks failed: report it as a check
            checks = []
            results.append(_report(out, redact, CheckResult(f"{component.name} checks", False,
                                                             f"{type(e).__name__}: {e}", 0.0)))
        for check in checks:
            t0 = time.monotonic()
            try:
                problem = check.run()
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            results.append(_report(out, redact, CheckResult(check.name, problem is None, problem,
                                                            time.monotonic() - t0)))
    return results


def _report(out: TextIO, redact, result: CheckResult) -> CheckResult:
    line = f"{'ok' if result.ok else 'FAIL':<4} {result.name}" + (f": {result.problem}" if result.problem else "")
    print(redact(line), file=out, flush=True)
    return result


def db_status(inventory: Inventory, out: TextIO | None = None) -> list[NodeState]:
    """Every DB node's role, access, position, lag, replicas and sync state; reads only."""
    from . import dbtier

    return dbtier.status(inventory, redactor=session(inventory)[0])


@dataclass
class FailoverReport:
    """failover-db's result: the database side and the re-point of every DB client."""

    db: FailoverResult
    clients: RepointReport

    @property
    def ok(self) -> bool:
        return self.clients.ok and not self.db.behind


def failover_db(inventory: Inventory, *, to: str | None = None, force: bool = False,
                out: TextIO | None = None) -> FailoverReport:
    """Switch the database primary (dbtier.failover: fence, promote, re-point replicas),
    then re-point every client of the database (dbclients.repoint). A client that cannot
    be re-pointed does not stop the others; the report names what is left to do."""
    from . import dbclients, dbtier

    out = out or sys.stdout
    redactor = session(inventory)[0]

    def say(line: str) -> None:
        print(redactor(line), file=out, flush=True)

    result = dbtier.failover(inventory, to=to, force=force, out=say, redactor=redactor)
    clients = dbclients.repoint(inventory, result.topology, say, started=time.monotonic() - result.seconds)
    return FailoverReport(result, clients)


def rejoin(inventory: Inventory, host: str, out: TextIO | None = None) -> Topology:
    """Bring a former primary (or a broken replica) back as a replica of the primary."""
    from . import dbtier

    out = out or sys.stdout
    redactor = session(inventory)[0]
    return dbtier.rejoin(inventory, host, out=lambda line: print(redactor(line), file=out, flush=True),
                         redactor=redactor)


def _say(inventory: Inventory, out: TextIO | None):
    out = out or sys.stdout
    redactor = session(inventory)[0]
    return lambda line: print(redactor(line), file=out, flush=True)


def upgrade(inventory: Inventory, *, out: TextIO | None = None, drain_timeout: float = 30.0,
            verify_timeout: float = 60.0, backup_first: bool = True, limit: list[str] | None = None):
    """Every Mattermost node to the inventory's mattermost.version: rolling within a
    series (job server first, then one drained app server at a time, each verified
    directly and rolled back automatically when it fails), Mattermost's short service
    interruption across series (a backup first). Returns an upgrades.UpgradeReport."""
    from . import upgrades as _upgrade

    return _upgrade.upgrade(inventory, out=_say(inventory, out), drain_timeout=drain_timeout,
                            verify_timeout=verify_timeout, backup_first=backup_first, limit=limit)


def rollback(inventory: Inventory, *, out: TextIO | None = None, drain_timeout: float = 30.0,
             verify_timeout: float = 60.0, limit: list[str] | None = None):
    """Every Mattermost node back to the release it ran before its last upgrade
    (refused after a schema change, as Mattermost documents). An upgrades.UpgradeReport."""
    from . import upgrades as _upgrade

    return _upgrade.rollback(inventory, out=_say(inventory, out), drain_timeout=drain_timeout,
                             verify_timeout=verify_timeout, limit=limit)


def backup(inventory: Inventory, *, kind: str = "diff", out: TextIO | None = None):
    """A backup run now on the backup host (the database, then Mattermost's config, plugins
    and local files), as the timers run it. A backups.BackupReport."""
    from . import backups as _backup

    return _backup.backup(inventory, kind=kind, out=_say(inventory, out))


def backup_status(inventory: Inventory):
    """The backups in the repository, the last runs and the timers. A backups.BackupStatus."""
    from . import backups as _backup

    return _backup.status(inventory)


def restore(inventory: Inventory, *, to_time: str | None = None, to_host: str | None = None, files: bool = True,
            start: bool = True, out: TextIO | None = None):
    """Restore the database (PostgreSQL: to `to_time`, else the newest archived moment;
    MariaDB: its newest backup) onto the primary or `to_host`, with Mattermost stopped
    around it, the other DB nodes rejoined and the files put back; then verify. A
    backups.RestoreReport."""
    from . import backups as _backup

    return _backup.restore(inventory, to_time=to_time, to_host=to_host, files=files, start=start,
                           out=_say(inventory, out))


def migrate_db(inventory: Inventory, *, to: str = "postgresql", dry_run: bool = False, out: TextIO | None = None):
    """Move a MySQL-family tier to PostgreSQL along Mattermost's documented path (the
    inventory names the target engine; the source is the MySQL tier on the db hosts):
    checks and pgloader's dry run, then the data-only load, per-table counts and
    checksums, and the cut-over of every app and job server. A migrate.MigrationReport."""
    from . import migrate as _migrate

    return _migrate.migrate(inventory, to=to, dry_run=dry_run, out=_say(inventory, out))


def drift(inventory: Inventory):
    """Where nodes that must be identical disagree (release, config, plugins, unit files,
    the proxies' certificate and upstream), and where a node disagrees with the
    inventory. Reads only. A driftcheck.DriftReport (ok: no difference)."""
    from . import driftcheck as _drift

    return _drift.drift(inventory)


def _run(inventory, mode, limit, only, out, verbose) -> RunReport:
    from .registry import registry

    redactor, secrets = session(inventory)
    selected = registry().by_name(only)
    runner.select_hosts(inventory, limit)  # bad --limit is bad input: refuse before connecting
    reporter = Reporter(redactor, out=out, verbose=verbose)
    return runner.run(inventory, selected, mode=mode, secrets=secrets, reporter=reporter, limit=limit)


__all__ = ["CheckResult", "FailoverReport", "MMDeployError", "db_status", "deploy", "failover_db",
           "inventory_path", "load", "plan", "rejoin", "rollback", "session", "upgrade", "verify", "backup",
           "backup_status", "drift", "migrate_db", "restore"]
