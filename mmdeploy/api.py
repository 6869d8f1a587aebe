"""What `import mmdeploy` users call: everything the command line does, with structured
results (the CLI in tasks.py only formats them).

    import mmdeploy
    inv = mmdeploy.load(mmdeploy.inventory_path(pattern="single"), overrides=["mattermost.port=8065"])
    report = mmdeploy.plan(inv)             # reads only; report.changed, report.failed, report.results,
                                            # report.warnings (e.g. a release past its support end)
    report = mmdeploy.deploy(inv)           # applies; a second deploy changes nothing
    results = mmdeploy.verify(inv)          # [CheckResult(name, ok, problem, seconds, detail, warning), ...]
    nodes = mmdeploy.db_status(inv)         # [NodeState, ...]
    failover = mmdeploy.failover_db(inv)    # DB switchover/failover, then every DB client re-pointed
    mmdeploy.rejoin(inv, "db1")             # a former primary back as a replica

Output (the same lines the CLI prints) goes to `out` (default: standard output); pass
io.StringIO() to keep it. Every line, and every error's message, is redacted: no secret
ever appears in it.

deploy, failover_db and rejoin hold the inventory's lock (locks.py) on the control machine
and on the hosts: a second one at the same time raises locks.LockHeld naming the holder.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TextIO

from . import inventory as _inventory
from . import locks, runner
from .dbclients import RepointReport
from .dbtier import FailoverResult, NodeState, Topology
from .errors import MMDeployError, redacted
from .inventory import Host, Inventory
from .report import Reporter
from .runner import RunReport
from .secrets import Redactor, Secrets

if TYPE_CHECKING:
    from .registry import Flow
    from .backups import BackupReport, BackupStatus, RestoreReport
    from .driftcheck import DriftReport
    from .migrate import MigrationReport
    from .topology import Graph
    from .upgrades import UpgradeReport
    from .remote import Remote


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Inventory:
    """Load and validate an inventory; raises InventoryError (exit code 2) on bad input,
    before any host is contacted."""
    return _inventory.load(path, overrides)


def inventory_path(
    pattern: str | None = None, inventory: str | Path | None = None, hosts_dir: str | Path = "hosts"
) -> Path:
    """`--pattern P` means hosts/P.yml unless `--inventory` names a file."""
    return _inventory.inventory_path(pattern, str(inventory) if inventory else None, Path(hosts_dir))


def session(inventory: Inventory) -> tuple[Redactor, Secrets]:
    """The redactor and secrets of a run on `inventory`: every known secret is registered
    with the redactor before anything is printed."""
    from .registry import registry

    redactor = Redactor()
    return redactor, Secrets(inventory.secrets_path, redactor, registry().secrets.values())


def plan(
    inventory: Inventory,
    *,
    limit: list[str] | None = None,
    only: list[str] | None = None,
    out: TextIO | None = None,
    verbose: bool = False,
    live: bool = False,
) -> RunReport:
    """Every step that would change, with diffs; changes nothing. `live`: a per-host
    progress view for a terminal (live.py) instead of one line per change."""
    return _run(inventory, "plan", limit, only, out, verbose, live)


def deploy(
    inventory: Inventory,
    *,
    limit: list[str] | None = None,
    only: list[str] | None = None,
    out: TextIO | None = None,
    verbose: bool = False,
    live: bool = False,
    barrier: bool = False,
) -> RunReport:
    """Apply the inventory; a second deploy of the same inventory changes nothing. Each
    host goes through the components at its own pace, waiting for other hosts only where
    a component needs them; `barrier` makes every host finish a component before any
    starts the next."""
    return _run(inventory, "apply", limit, only, out, verbose, live, barrier)


@dataclass
class CheckResult:
    name: str
    ok: bool
    problem: str | None
    seconds: float
    detail: str | None = None  # what a passing check saw (component.Info / component.Warn)
    warning: bool = False  # passed, with a warning the operator should read
    down: str | None = None  # the host this result reports as down (no SSH answer)


@contextmanager
def _masked(redact: Callable[[str], str]) -> Iterator[None]:
    """Errors leave with every secret masked in their message."""
    try:
        yield
    except MMDeployError as e:
        raise redacted(e, redact) from None


@contextmanager
def _locked(
    inventory: Inventory, what: str, redact: Callable[[str], str], connect_timeout: float | None = None
) -> Iterator[dict[str, Remote]]:
    """The inventory's run lock on this machine and the hosts, for the block; yields the
    connections that hold it (host name -> Remote), which a run may share."""
    with locks.acquire(inventory, what, redact, connect_timeout=connect_timeout) as lock:
        yield {name: remote for name, (remote, _held) in lock.held.items()}


def verify(inventory: Inventory, *, only: list[str] | None = None, out: TextIO | None = None) -> list[CheckResult]:
    """Run every component's health checks; each result is named. A check that raises is
    that check failing, with the reason; the later checks still run."""
    redact = session(inventory)[0]
    with _masked(redact):
        return _verify(inventory, only, out or sys.stdout, redact)


def _verify(inventory: Inventory, only: list[str] | None, out: TextIO, redact: Redactor) -> list[CheckResult]:
    from .component import hosts_down

    results = []
    down = _unreachable(inventory, redact)
    for name, reason in down.items():
        host = inventory.host(name)
        alone = [r for r in host.roles if all(h.name in down for h in inventory.with_role(r))]
        result = CheckResult(
            f"host {name} ({', '.join(host.roles)})",
            True,
            None,
            0.0,
            f"DOWN: {reason}" + (f"; no other host serves {', '.join(alone)}" if alone else ""),
            warning=True,
            down=name,
        )
        results.append(_report(out, redact, result))
    with hosts_down(frozenset(down)):
        results += _run_checks(inventory, only, out, redact, down)
    return results


DOWN_AFTER = 5.0  # seconds without an SSH answer before verify takes a host for down


def _unreachable(inventory: Inventory, redact: Redactor) -> dict[str, str]:
    """The hosts that do not answer over SSH (host name -> why), probed in parallel before
    the checks: a dead node is reported once, as down, and the checks of its tier count the
    others, instead of each check failing on it after its own time-out."""
    from concurrent.futures import ThreadPoolExecutor

    from .remote import Remote, impatient

    def probe(host: Host) -> str | None:
        remote = Remote(impatient(host, DOWN_AFTER), redact)  # a dead node found in seconds
        try:
            remote.connect()
        except MMDeployError as e:
            return str(e)
        finally:
            remote.close()
        return None

    with ThreadPoolExecutor(max_workers=min(32, len(inventory.hosts))) as pool:
        found = dict(zip([h.name for h in inventory.hosts], pool.map(probe, inventory.hosts)))
    return {name: reason for name, reason in found.items() if reason is not None}


def _run_checks(
    inventory: Inventory, only: list[str] | None, out: TextIO, redact: Redactor, down: dict[str, str]
) -> list[CheckResult]:
    from .component import Info, Warn
    from .registry import registry

    results = []
    for component in registry().by_name(only):
        try:
            checks = component.checks(inventory)
        except Exception as e:  # building the checks failed: report it as a check
            checks = []
            results.append(
                _report(out, redact, CheckResult(f"{component.name} checks", False, f"{type(e).__name__}: {e}", 0.0))
            )
        for check in checks:
            if check.host in down:
                results.append(
                    _report(out, redact, CheckResult(check.name, True, None, 0.0, "not run: host down", True))
                )
                continue
            t0 = time.monotonic()
            try:
                problem = check.run()
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            seconds = time.monotonic() - t0
            if isinstance(problem, (Info, Warn)):
                result = CheckResult(check.name, True, None, seconds, str(problem), isinstance(problem, Warn))
            else:
                result = CheckResult(check.name, problem is None, problem, seconds)
            results.append(_report(out, redact, result))
    return results


def _report(out: TextIO, redact: Redactor, result: CheckResult) -> CheckResult:
    mark = "FAIL" if not result.ok else "warn" if result.warning else "ok"
    if result.problem:
        result.problem = redact(result.problem)
    if result.detail:
        result.detail = redact(result.detail)
    text = result.problem or result.detail
    line = f"{mark:<4} {result.name}" + (f": {text}" if text else "")
    print(redact(line), file=out, flush=True)
    return result


def db_status(inventory: Inventory, out: TextIO | None = None) -> list[NodeState]:
    """Every DB node's role, access, position, lag, replicas and sync state; reads only."""
    from . import dbtier

    redactor = session(inventory)[0]
    with _masked(redactor):
        return dbtier.status(inventory, redactor=redactor)


@dataclass
class FailoverReport:
    """failover-db's result: the database side and the re-point of every DB client."""

    db: FailoverResult
    clients: RepointReport

    @property
    def ok(self) -> bool:
        return self.clients.ok and not self.db.behind


def failover_db(
    inventory: Inventory, *, to: str | None = None, force: bool = False, out: TextIO | None = None
) -> FailoverReport:
    """Switch the database primary (dbtier.failover: fence, promote, re-point replicas),
    then re-point every client of the database (dbclients.repoint). A client that cannot
    be re-pointed does not stop the others; the report names what is left to do."""
    from . import dbclients, dbtier

    out = out or sys.stdout
    redactor = session(inventory)[0]

    def say(line: str) -> None:
        print(redactor(line), file=out, flush=True)

    from .dbtier.orchestrate import CONNECT_TIMEOUT

    with _masked(redactor), _locked(inventory, "failover-db", redactor, CONNECT_TIMEOUT):
        result = dbtier.failover(inventory, to=to, force=force, out=say, redactor=redactor)
        if getattr(dbtier.engine_for(inventory.settings.database), "manages_failover", False):
            # The clients connect through the routes that follow the leader: nothing to re-point.
            say(f"[{result.seconds:5.1f}s] the clients follow {result.new} through the leader route (HAProxy)")
            return FailoverReport(result, dbclients.RepointReport())
        clients = dbclients.repoint(inventory, result.topology, say, started=time.monotonic() - result.seconds)
    return FailoverReport(result, clients)


def rejoin(inventory: Inventory, host: str, out: TextIO | None = None) -> Topology:
    """Bring a former primary (or a broken replica) back as a replica of the primary."""
    from . import dbtier

    out = out or sys.stdout
    redactor = session(inventory)[0]
    from .dbtier.orchestrate import CONNECT_TIMEOUT

    with _masked(redactor), _locked(inventory, "db.rejoin", redactor, CONNECT_TIMEOUT):
        return dbtier.rejoin(
            inventory, host, out=lambda line: print(redactor(line), file=out, flush=True), redactor=redactor
        )


def topology_graph(inventory: Inventory, *, live: bool = True, firewall: bool = False) -> "Graph":
    """The deployment as a graph (topology.py): hosts by layer, floating addresses,
    balancers and flows with ports; with `live`, annotated with what the hosts say now
    (read-only, time-limited: the floating address holders, DB primary and replicas, hosts
    that do not answer); with `firewall`, its flows are the host firewall's matrix (what
    each source may reach). Draw it with mmdeploy.topology.render(graph, path)."""
    from . import topology

    return topology.build(inventory, topology.read_live(inventory) if live else None, firewall=firewall)


def flows(inventory: Inventory, *, control: list[str] | tuple[str, ...] = ()) -> list[tuple["Flow", list[str] | None]]:
    """The host firewall's flow matrix: every port of every host (registry.Flow), in host
    and port order, with the networks allowed to reach it (None: anyone). `control`: the
    control machine's addresses as the hosts see them (none: where it is not known)."""
    from .components import firewall
    from .registry import registry

    order = {h.name: i for i, h in enumerate(inventory.hosts)}
    found = sorted(registry().flows(inventory), key=lambda f: (order[f.host.name], f.port, f.proto))
    return [(f, firewall.allowed_sources(f, f.host, list(control))) for f in found]


def reachable(
    inventory: Inventory, address: str, *, control: list[str] | tuple[str, ...] = ()
) -> dict[tuple[str, str, int], list[str]]:
    """What the flow matrix lets `address` reach: (host, proto, port) -> the flows allowing
    it; a port scan from that address should find exactly these TCP ports open."""
    from .components import firewall

    return firewall.reachable(inventory, address, control)


def run_warnings(inventory: Inventory, *, only: list[str] | None = None, today: date | None = None) -> list[str]:
    """What the selected components warn about before a run (a Mattermost release past its
    support end, ...); `today` defaults to the real date."""
    from .registry import registry

    today = today or date.today()
    found: list[str] = []
    for component in registry().by_name(only):
        found += [w for w in component.warnings(inventory, today) if w not in found]
    return found


@contextmanager
def _operation(inventory: Inventory, what: str | None, out: TextIO | None) -> Iterator[Callable[[str], None]]:
    """A day-2 operation: errors leave with secrets masked; one that changes hosts (`what`
    names it) holds the inventory's run lock. Yields the function printing its lines."""
    stream = out or sys.stdout
    redactor = session(inventory)[0]
    with _masked(redactor):
        if what is None:
            yield lambda line: print(redactor(line), file=stream, flush=True)
            return
        with _locked(inventory, what, redactor):
            yield lambda line: print(redactor(line), file=stream, flush=True)


def upgrade(
    inventory: Inventory,
    *,
    out: TextIO | None = None,
    drain_timeout: float = 30.0,
    verify_timeout: float = 60.0,
    backup_first: bool = True,
    limit: list[str] | None = None,
) -> "UpgradeReport":
    """Every Mattermost node to the inventory's mattermost.version: rolling within a
    series (job server first, then one drained app server at a time, each verified
    directly and rolled back automatically when it fails), Mattermost's short service
    interruption across series (a backup first). Returns an upgrades.UpgradeReport."""
    from . import upgrades as _upgrade

    with _operation(inventory, "upgrade", out) as say:
        return _upgrade.upgrade(
            inventory,
            out=say,
            drain_timeout=drain_timeout,
            verify_timeout=verify_timeout,
            backup_first=backup_first,
            limit=limit,
        )


def rollback(
    inventory: Inventory,
    *,
    out: TextIO | None = None,
    drain_timeout: float = 30.0,
    verify_timeout: float = 60.0,
    limit: list[str] | None = None,
) -> "UpgradeReport":
    """Every Mattermost node back to the release it ran before its last upgrade
    (refused after a schema change, as Mattermost documents). An upgrades.UpgradeReport."""
    from . import upgrades as _upgrade

    with _operation(inventory, "rollback", out) as say:
        return _upgrade.rollback(
            inventory, out=say, drain_timeout=drain_timeout, verify_timeout=verify_timeout, limit=limit
        )


def backup(inventory: Inventory, *, kind: str = "diff", out: TextIO | None = None) -> "BackupReport":
    """A backup run now on the backup host (the database, then Mattermost's config, plugins
    and local files), as the timers run it. A backups.BackupReport."""
    from . import backups as _backup

    with _operation(inventory, "backup", out) as say:
        return _backup.backup(inventory, kind=kind, out=say)


def backup_status(inventory: Inventory) -> "BackupStatus":
    """The backups in the repository, the last runs and the timers. A backups.BackupStatus."""
    from . import backups as _backup

    return _backup.status(inventory)


def restore(
    inventory: Inventory,
    *,
    to_time: str | None = None,
    to_host: str | None = None,
    files: bool = True,
    start: bool = True,
    out: TextIO | None = None,
) -> "RestoreReport":
    """Restore the database (PostgreSQL: to `to_time`, else the newest archived moment;
    MariaDB: its newest backup) onto the primary or `to_host`, with Mattermost stopped
    around it, the other DB nodes rejoined and the files put back; then verify. A
    backups.RestoreReport."""
    from . import backups as _backup

    with _operation(inventory, "restore", out) as say:
        return _backup.restore(inventory, to_time=to_time, to_host=to_host, files=files, start=start, out=say)


def migrate_db(
    inventory: Inventory, *, to: str = "postgresql", dry_run: bool = False, out: TextIO | None = None
) -> "MigrationReport":
    """Move a MySQL-family tier to PostgreSQL along Mattermost's documented path (the
    inventory names the target engine; the source is the MySQL tier on the db hosts):
    checks and pgloader's dry run, then the data-only load, per-table counts and
    checksums, and the cut-over of every app and job server. A migrate.MigrationReport."""
    from . import migrate as _migrate

    with _operation(inventory, None if dry_run else "db.migrate", out) as say:
        return _migrate.migrate(inventory, to=to, dry_run=dry_run, out=say)


def drift(inventory: Inventory) -> "DriftReport":
    """Where nodes that must be identical disagree (release, config, plugins, unit files,
    the proxies' certificate and upstream), and where a node disagrees with the
    inventory. Reads only. A driftcheck.DriftReport (ok: no difference)."""
    from . import driftcheck as _drift

    return _drift.drift(inventory)


def _run(
    inventory: Inventory,
    mode: str,
    limit: list[str] | None,
    only: list[str] | None,
    out: TextIO | None,
    verbose: bool,
    live: bool = False,
    barrier: bool = False,
) -> RunReport:
    from .registry import registry

    redactor, secrets = session(inventory)
    selected = registry().by_name(only)
    runner.select_hosts(inventory, limit)  # bad --limit is bad input: refuse before connecting
    if live:
        from .live import LiveReporter

        reporter: Reporter = LiveReporter(redactor, out=out, verbose=verbose)
    else:
        reporter = Reporter(redactor, out=out, verbose=verbose)
    try:
        warnings = run_warnings(inventory, only=only)
        with _masked(redactor):
            if mode == "plan":  # reads only: no lock
                return runner.run(
                    inventory, selected, mode=mode, secrets=secrets, reporter=reporter, limit=limit, warnings=warnings
                )
            with _locked(inventory, "deploy", redactor) as connections:
                return runner.run(
                    inventory,
                    selected,
                    mode=mode,
                    secrets=secrets,
                    reporter=reporter,
                    limit=limit,
                    warnings=warnings,
                    connections=connections,
                    pipelined=not barrier,
                )
    finally:
        if live:
            reporter.stop()  # type: ignore[attr-defined]  # the view ends even when the run raised


__all__ = [
    "CheckResult",
    "FailoverReport",
    "MMDeployError",
    "db_status",
    "deploy",
    "failover_db",
    "inventory_path",
    "load",
    "plan",
    "rejoin",
    "rollback",
    "run_warnings",
    "session",
    "topology_graph",
    "upgrade",
    "verify",
    "backup",
    "backup_status",
    "drift",
    "migrate_db",
    "restore",
]
