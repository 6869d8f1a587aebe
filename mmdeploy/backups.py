"""Backups on demand, their status, and restore (what components/backup.py installs does
the scheduled runs; the engine parts live in components/postgresql/backup.py and
components/mysql/backup.py).

    backup(inventory, kind="full")     a run now, on the backup host, as the timers run it
    status(inventory)                  the backups in the repository, the last runs, the timers
    restore(inventory, to_time=..., to_host=...)
        Mattermost stopped on every node, every DB server stopped, the database restored on
        the primary (or `to_host`): PostgreSQL to any moment (`to_time`, else the newest
        archived), MariaDB to its newest backup; the other DB nodes rejoined as its
        replicas, the local files and plugins copied back, Mattermost started again and
        the site verified. Into fresh DB hosts (disaster recovery: the repository holds
        another cluster's backups, components/postgresql/stanza.py) the same, with the
        new cluster's WAL left alone and the files from before it was made.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .components import backup as component
from .components.mattermost import STOP_GRACE, unit_name
from .components.postgresql.stanza import archive_id, histories_script, initdb_time
from .errors import InventoryError, MMDeployError
from .fleet import Fleet
from .inventory import Host, Inventory
from .step import run_checked

Out = Callable[[str], None]
RESTORE_TIMEOUT = 6 * 3600


@dataclass
class PartResult:
    part: str  # database | files
    ok: bool
    seconds: float
    bytes: int
    label: str
    detail: str


@dataclass
class BackupReport:
    ok: bool
    kind: str
    host: str
    parts: list[PartResult] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def label(self) -> str | None:
        return next((p.label for p in self.parts if p.part == "database" and p.ok), None)

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def configured(inventory: Inventory) -> bool:
    return component.configured(inventory)


def _require(inventory: Inventory) -> Host:
    if not configured(inventory):
        raise InventoryError(["settings.backup.enabled is false: enable backups in the inventory and deploy first"])
    return component.require_host(inventory)


def parse_results(output: str) -> list[PartResult]:
    """The RESULT lines of a run of mmdeploy-backup."""
    parts = []
    for m in re.finditer(
        r"^RESULT part=(\S+) ok=(\d) seconds=(\d+) bytes=(\d+) label=(\S+) detail=(.*)$", output, re.M
    ):
        parts.append(PartResult(m[1], m[2] == "1", float(m[3]), int(m[4]), m[5], m[6].strip()))
    return parts


def backup(inventory: Inventory, kind: str = "diff", out: Out | None = None) -> BackupReport:
    """A backup run now (full or diff: pgBackRest makes the first one full anyway)."""
    if kind not in ("full", "diff"):
        raise InventoryError([f"backup kind: expected full or diff, got {kind!r}"])
    repo = _require(inventory)
    with Fleet(inventory, "backup", out) as fleet:
        found = component.owner_now(inventory, fleet)
        if found.other:  # pgBackRest would refuse too, less clearly
            fleet.say(found.message)
            return BackupReport(False, kind, repo.name, [], fleet.elapsed(), f"backup refused: {found.message}")
        fleet.say(f"{kind} backup on {repo.name}")
        result = fleet.remote(repo).run(
            f"{component.SCRIPT} {kind}", timeout=component.RUN_TIMEOUT, what=f"the {kind} backup"
        )
        parts = parse_results(result.stdout)
        for p in parts:
            fleet.say(
                f"{p.part}: {'ok' if p.ok else 'FAILED'} in {p.seconds:.0f} s, {p.bytes} bytes, {p.label} ({p.detail})"
            )
        ok = result.ok and bool(parts) and all(p.ok for p in parts)
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        message = "backup done" if ok else "backup failed: " + " | ".join(tail)
        return BackupReport(ok, kind, repo.name, parts, fleet.elapsed(), message)


@dataclass
class BackupStatus:
    host: str
    engine: str
    repository: str
    database: list[dict] = field(default_factory=list)  # backups in the repository, oldest first
    files: list[str] = field(default_factory=list)  # file copies, oldest first
    last: dict = field(default_factory=dict)  # part -> {"success": ts, "run": ts, "ok": bool, ...}
    timers: dict = field(default_factory=dict)  # timer -> next run

    def to_dict(self) -> dict:
        return asdict(self)


def status(inventory: Inventory) -> BackupStatus:
    from .components.postgresql import backup as pgb

    repo = _require(inventory)
    s = inventory.settings.backup
    engine = inventory.settings.database.engine
    where = f"s3://{s.s3.bucket}{s.s3.path}" if s.repository == "s3" and s.s3 else f"{repo.name}:{s.path}"
    result = BackupStatus(repo.name, engine, where)
    db_list = (
        pgb.info_command()
        if engine == "postgresql"
        else f"ls -1 {s.path}/mysql/*.xbstream 2>/dev/null | xargs -r stat -c '%n %s %Y'"
    )
    with Fleet(inventory, "backup-status") as fleet:
        r = fleet.remote(repo)
        listing = run_checked(r, db_list, "list the database backups", timeout=60).stdout
        files = r.run(f"ls -1 {s.path}/files 2>/dev/null | grep -v '^latest$'", timeout=30).stdout.split()
        state = r.run(f"cd {component.STATE} 2>/dev/null && grep -H . *.last_run *.last_success", timeout=30).stdout
        timers = r.run(
            'for t in full diff; do echo "mmdeploy-backup-$t.timer=$(systemctl show -p NextElapseUSecRealtime '
            '--value mmdeploy-backup-$t.timer)"; done',
            timeout=30,
        ).stdout
    if engine == "postgresql":
        result.database = pgb.parse_info(listing)
    else:
        for line in listing.splitlines():
            name, size, mtime = line.rsplit(" ", 2)
            result.database.append(
                {
                    "label": name.rsplit("/", 1)[-1].removesuffix(".xbstream"),
                    "type": "full",
                    "stop": int(mtime),
                    "size": int(size),
                }
            )
    result.files = sorted(files)
    for line in state.splitlines():
        name, _, values = line.partition(":")
        part, kind = name.split(".")
        fields = values.split()
        entry = result.last.setdefault(part, {})
        if kind == "last_run":
            entry.update(run=int(fields[0]), ok=fields[1] == "1", seconds=int(fields[2]))
        else:
            entry.update(success=int(fields[0]), size=int(fields[2]), label=fields[3])
    for line in timers.splitlines():
        timer, _, when = line.partition("=")
        result.timers[timer] = when.strip()
    return result


# --- restore -----------------------------------------------------------------------------


@dataclass
class RestoreReport:
    ok: bool
    host: str  # the DB node restored (the primary now)
    to_time: str | None
    database_seconds: float = 0.0
    seconds: float = 0.0
    rejoined: list[str] = field(default_factory=list)
    files: str | None = None  # the file copy put back
    checks_failed: list[str] = field(default_factory=list)
    message: str = ""
    timeline: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def pgbackrest_time(value: str, now: datetime | None = None) -> str:
    """An operator's time (ISO 8601: '2026-11-29 14:03:00', with an offset or Z; no
    offset means UTC) as pgBackRest's target, in UTC; a time in the future is refused."""
    text = value.strip().replace("T", " ")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"([+-]\d{2})$", r"\1:00", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InventoryError(
            [f"--to-time: expected a time like '2026-11-29 14:03:00' (UTC unless an offset is given), got {value!r}"]
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    if parsed > (now or datetime.now(timezone.utc)):
        raise InventoryError([f"--to-time {value!r} is in the future"])
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00"


def restore(
    inventory: Inventory,
    to_time: str | None = None,
    to_host: str | None = None,
    files: bool = True,
    start: bool = True,
    out: Out | None = None,
) -> RestoreReport:
    """`start` False leaves Mattermost stopped: the first step of going back to an older
    release after a schema-changing upgrade (`inv rollback` starts it)."""
    from . import dbtier
    from .dbtier import engine_for

    repo = _require(inventory)
    engine_name = inventory.settings.database.engine
    if to_time and engine_name != "postgresql":
        raise InventoryError(
            [
                "--to-time: point-in-time restore needs PostgreSQL (WAL archiving); the MySQL family "
                "restores its newest backup (run without --to-time)"
            ]
        )
    target_time = pgbackrest_time(to_time) if to_time else None
    dbs = inventory.with_role("db")
    if to_host is not None and to_host not in [h.name for h in dbs]:
        raise InventoryError([f"--to-host: {to_host!r} is not a DB host ({', '.join(h.name for h in dbs)})"])
    engine = engine_for(inventory.settings.database)
    states = {s.host.name: s for s in dbtier.status(inventory)}
    writable = [s for s in states.values() if s.writable]
    if to_host is None:
        if len(writable) != 1:
            raise MMDeployError("no single writable DB node to restore onto: name one with --to-host")
        to_host = writable[0].host.name
    target = inventory.host(to_host)
    if not states[to_host].reachable:
        raise MMDeployError(f"{to_host} does not answer over SSH: {states[to_host].detail}")
    report = RestoreReport(False, to_host, target_time)
    with Fleet(inventory, "restore", out) as fleet:
        try:
            _restore(fleet, inventory, repo, engine, states, writable, target, target_time, files, start, report)
        finally:
            report.seconds = fleet.elapsed()
            report.timeline = list(fleet.lines)
    return report


def _restore(
    fleet: Fleet,
    inventory: Inventory,
    repo: Host,
    engine,
    states,
    writable,
    target: Host,
    target_time: str | None,
    files: bool,
    start: bool,
    report: RestoreReport,
) -> None:
    from .components.mysql import backup as myb
    from .components.postgresql import backup as pgb
    from .components.postgresql.scripts import stop_script
    from .components.postgresql.config import Paths, paths
    from .facts import HOST_FACTS
    from .dbtier import rejoin
    from .upgrades import mattermost_nodes

    pg = engine.name == "postgresql"
    dbs = inventory.with_role("db")
    fleet.say(f"restore onto {target.name}" + (f" to {target_time}" if target_time else " (newest backup)"))
    owner = component.owner_now(inventory, fleet) if pg else None
    fresh_since = initdb_time(owner.cluster) if owner and owner.other and owner.cluster else None
    if fresh_since is not None:
        # Disaster recovery: the DB hosts run a cluster made since (a fresh deploy); its WAL
        # is not the repository's to keep, and the restore replaces it.
        made = datetime.fromtimestamp(fresh_since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        fleet.say(f"the DB hosts run a new cluster (made {made} UTC): the repository's cluster replaces it")
    elif pg and len(writable) == 1:
        # Whatever the primary wrote until now, archived: a restore can reach it.
        out = fleet.remote(writable[0].host).run(pgb.switch_wal_script(), timeout=90, what="archive the current WAL")
        fleet.say(f"{writable[0].host.name}: " + (out.stdout.strip() or f"WAL not archived: {out.stderr.strip()}"))
    backup_set = None
    if pg:  # which backup: chosen before anything stops, so a refusal leaves the site running
        info = run_checked(fleet.remote(target), pgb.info_as_postgres(), "read the backups", timeout=120).stdout
        newest = max(
            (int(a["max"][:8], 16) for st in json.loads(info or "[]") for a in st.get("archive", []) if a.get("max")),
            default=1,
        )
        if fresh_since is None:
            histories = fleet.remote(target).run(pgb.histories_script(max(2, newest)), timeout=120).stdout
        else:  # the target runs another cluster: its archive-get refuses, the repository answers
            histories = run_checked(
                fleet.remote(repo),
                histories_script(archive_id(info) or ""),
                "read the timeline histories",
                timeout=120,
            ).stdout
        epoch = (
            datetime.strptime(target_time[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
            if target_time
            else None
        )
        backup_set, why = pgb.choose_backup(info, histories, epoch)
        if backup_set is None:
            raise MMDeployError(f"nothing to restore from: {why}; nothing was changed")
        fleet.say(f"restoring from {why}")
    else:
        s = inventory.settings.backup
        latest = (
            fleet.remote(repo)
            .run(
                f"ls -1 {s.path}/mysql/*.xbstream 2>/dev/null | sort | tail -n 1",
                timeout=30,
                what="find the newest backup",
            )
            .stdout.strip()
        )
        if not latest:
            raise MMDeployError(
                f"nothing to restore from: no MariaDB backup in {repo.name}:{s.path}/mysql; nothing was changed"
            )
        fleet.say(f"restoring from {latest.rsplit('/', 1)[-1]}")
    apps = mattermost_nodes(inventory)

    def stop_mm(h: Host) -> None:
        u = unit_name(h)
        run_checked(
            fleet.remote(h),
            f"timeout {STOP_GRACE} systemctl stop {u} || systemctl kill -s KILL {u}",
            f"stop {u} on {h.name}",
            timeout=STOP_GRACE + 30,
        )

    fleet.parallel(stop_mm, apps)
    fleet.say(f"Mattermost stopped on {', '.join(h.name for h in apps)}")
    watcher = "mmdeploy-pg-fence" if pg else "mmdeploy-mysql-fence"
    reachable = [h for h in dbs if states[h.name].reachable]

    def pg_paths(h: Host) -> Paths:
        """The node's PostgreSQL paths: its version as its probe found it, else its distribution's."""
        version = states[h.name].extra.get("version") if h.name in states else None
        if version:
            return Paths(version)
        os_fact = run_checked(fleet.remote(h), HOST_FACTS["os"], f"read {h.name}'s distribution", timeout=30)
        return paths(h, os_fact.stdout.strip())

    def stop_db(h: Host) -> None:
        stop = stop_script(pg_paths(h).unit) if pg else f"systemctl stop {engine.flavor.service}"
        run_checked(
            fleet.remote(h),
            f"systemctl stop {watcher} || true\n{stop}\n",
            f"stop the database on {h.name}",
            timeout=180,
        )

    fleet.parallel(stop_db, reachable)
    fleet.say(f"database servers stopped on {', '.join(h.name for h in reachable)}")
    t0 = time.monotonic()
    if pg:
        result = run_checked(
            fleet.remote(target),
            pgb.restore_script(pg_paths(target), target_time, backup_set),
            f"pgBackRest restore on {target.name}",
            timeout=RESTORE_TIMEOUT,
        )
        for line in result.stdout.strip().splitlines():
            fleet.say(f"{target.name}: {line}")
    else:
        run_checked(
            fleet.remote(repo),
            f"ssh -F {component.SSH_CONFIG} root@{target.private_address} receive < {latest}",
            f"send {latest} to {target.name}",
            timeout=RESTORE_TIMEOUT,
        )
        result = run_checked(
            fleet.remote(target),
            myb.restore_script(engine.flavor),
            f"restore on {target.name}",
            timeout=RESTORE_TIMEOUT,
        )
        fleet.say(f"{target.name}: restored {latest.rsplit('/', 1)[-1]}; {result.stdout.strip().splitlines()[-1]}")
        node = engine._fresh(fleet.remote(target))
        engine.promote(fleet.remote(target), node)
    report.database_seconds = round(time.monotonic() - t0, 2)
    fleet.say(f"{target.name}: the database is back and takes writes ({report.database_seconds:.1f} s)")
    peers = [h for h in dbs if h.name != target.name]
    engine.attach(fleet.remote(target), peers, [])  # commits wait for no replica until they follow
    for h in peers:
        if not states[h.name].reachable:
            fleet.say(f"{h.name}: unreachable; `inv db.rejoin {h.name}` when it is back")
            continue
        rejoin(inventory, h.name, out=fleet.say, redactor=fleet.redactor)
        report.rejoined.append(h.name)
    followers = [h for h in peers if h.name in report.rejoined]
    engine.attach(fleet.remote(target), peers, followers)
    fleet.parallel(lambda h: fleet.remote(h).run(f"systemctl start {watcher}", timeout=60), reachable)
    if fresh_since is not None:  # the deploy paused them while the repository was another cluster's
        run_checked(
            fleet.remote(repo), f"systemctl start {' '.join(component.TIMERS)}", "start the backup timers", timeout=60
        )
        fleet.say(f"{repo.name}: the backup timers run again")
    if files and inventory.settings.backup.files:
        report.files = _restore_files(fleet, inventory, repo, target_time, fresh_since)
    if not start:
        report.ok = True
        report.message = (
            f"restored onto {target.name}"
            + (f" to {target_time}" if target_time else "")
            + "; Mattermost is left stopped (start it with `inv rollback` or `inv deploy`)"
        )
        fleet.say(report.message)
        return
    fleet.parallel(
        lambda h: run_checked(
            fleet.remote(h),
            f"timeout 700 systemctl start {unit_name(h)}",
            f"start {unit_name(h)} on {h.name}",
            timeout=720,
        ),
        apps,
    )
    fleet.say(f"Mattermost started on {', '.join(h.name for h in apps)}")
    checks = fleet.verify(inventory)
    report.checks_failed = [f"{c.name}: {c.problem}" for c in checks if not c.ok]
    report.ok = not report.checks_failed
    report.message = (
        f"restored onto {target.name}"
        + (f" to {target_time}" if target_time else "")
        + ("; every check passes" if report.ok else f"; {len(report.checks_failed)} check(s) fail")
    )
    fleet.say(report.message)


def files_cutoff(target_time: str | None, fresh_since: float | None) -> str | None:
    """The newest label (20261129T140300Z) a copy of the files may have: taken by the
    target time, and before the fresh cluster a disaster recovery replaces was made (copies
    taken since are of the new, empty site)."""
    limits = []
    if target_time:
        limits.append(datetime.strptime(target_time[:19], "%Y-%m-%d %H:%M:%S").strftime("%Y%m%dT%H%M%SZ"))
    if fresh_since is not None:
        limits.append(datetime.fromtimestamp(fresh_since - 1, timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    return min(limits) if limits else None


def _restore_files(
    fleet: Fleet, inventory: Inventory, repo: Host, target_time: str | None, fresh_since: float | None = None
) -> str | None:
    """The newest copy of Mattermost's files taken at or before `target_time` (and before
    `fresh_since`) back onto every app server (files written since stay: they may belong
    to posts the database has)."""
    s = inventory.settings.backup
    listing = (
        fleet.remote(repo).run(f"ls -1 {s.path}/files 2>/dev/null | grep -v '^latest$'", timeout=30).stdout.split()
    )
    cutoff = files_cutoff(target_time, fresh_since)
    copies = sorted(c for c in listing if cutoff is None or c <= cutoff)
    if not copies:
        fleet.say("no copy of the files to put back" + (f" from before {cutoff}" if cutoff else ""))
        return None
    snap = f"{s.path}/files/{copies[-1]}"
    fresh = []
    for h in inventory.with_role("app"):
        parts = " ".join(d for d in ("data", "plugins", "client/plugins"))
        # In a disaster recovery, an app server deployed afresh with the new cluster (no file
        # in its data directory, its config file written since) gets the config file back
        # too, with what was set in the System Console; elsewhere the config stays.
        if fresh_since is not None and not inventory.settings.mattermost.config_in_database:
            found = fleet.remote(h).run(
                f"find {component.MM_HOME}/data -type f -print -quit; stat -c %Y {component.MM_HOME}/config/config.json",
                timeout=60,
            )
            lines = found.stdout.split()
            if found.ok and len(lines) == 1 and lines[0].isdigit() and int(lines[0]) >= fresh_since:
                parts += " config"
                fresh.append(h.name)
        run_checked(
            fleet.remote(repo),
            f"""\
set -e
for d in {parts}; do
  [ -d {snap}/$d ] || continue
  rsync -a -e 'ssh -F {component.SSH_CONFIG}' {snap}/$d/ root@{h.private_address}:$d/
done
""",
            f"put the files back on {h.name}",
            timeout=RESTORE_TIMEOUT,
        )
        run_checked(
            fleet.remote(h),
            f"chown -R mattermost:mattermost {component.MM_HOME}/data {component.MM_HOME}/plugins "
            f"{component.MM_HOME}/client/plugins {component.MM_HOME}/config",
            f"file owners on {h.name}",
            timeout=600,
        )
    fleet.say(
        f"files of {copies[-1]} back on {', '.join(h.name for h in inventory.with_role('app'))}"
        + (f" (and the config file on {', '.join(fresh)}: fresh)" if fresh else "")
    )
    return copies[-1]
