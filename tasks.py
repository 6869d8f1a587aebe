"""mmdeploy's command line: `inv --list` shows every task, `inv --help TASK` its options.

Exit codes: 0 success, 1 a host failed or a check failed, 2 bad input (nothing was touched).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

from invoke import Collection, Exit, task

import mmdeploy
from mmdeploy.errors import MMDeployError

ROOT = Path(__file__).resolve().parent


def _cli(fn):
    """Turn mmdeploy's errors into one clear message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MMDeployError as e:
            print(str(e), file=sys.stderr)
            raise Exit(code=e.exit_code) from None

    return wrapper


def _load(pattern, inventory, overrides=()):
    return mmdeploy.load(mmdeploy.inventory_path(pattern, inventory, ROOT / "hosts"), overrides)


def _names(value: str | None) -> list[str] | None:
    """A comma-separated flag: None when not given; given but naming nothing ("", ",")
    is an empty list, which the API refuses rather than reading it as "all"."""
    return None if value is None else [n.strip() for n in value.split(",") if n.strip()]


_HELP = {
    "pattern": "single, multi or cluster: the inventory hosts/PATTERN.yml",
    "inventory": "an inventory file (overrides --pattern)",
    "limit": "comma-separated host names: only these hosts",
    "set": "key.path=value: override a setting (repeatable; highest precedence)",
    "only": "comma-separated component names: only these components",
    "verbose": "also print steps that are already as wanted",
    "yes": "apply without showing the plan and asking",
}


def _help(*names):
    return {n: _HELP[n] for n in names}


@task(help=_help("pattern", "inventory", "limit", "set", "only", "verbose"), iterable=["set"])
@_cli
def plan(c, pattern=None, inventory=None, limit=None, set=None, only=None, verbose=False):
    """Show, host by host, every step that would change and each file's diff. Changes nothing."""
    inv = _load(pattern, inventory, set or ())
    report = mmdeploy.plan(inv, limit=_names(limit), only=_names(only), verbose=verbose)
    if report.failed:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "limit", "set", "only", "yes", "verbose"), iterable=["set"])
@_cli
def deploy(c, pattern=None, inventory=None, limit=None, set=None, only=None, yes=False, verbose=False):
    """Apply the inventory: hosts in parallel, components in dependency order."""
    inv = _load(pattern, inventory, set or ())
    if not yes and sys.stdin.isatty() and sys.stdout.isatty():
        preview = mmdeploy.plan(inv, limit=_names(limit), only=_names(only))
        if preview.failed:
            raise Exit(code=1)
        if preview.changed == 0:
            print("Nothing to change.")
            return
        if input(f"Apply these {preview.changed} changes? [y/N] ").strip().lower() not in ("y", "yes"):
            raise Exit("Not applied.", code=1)
    report = mmdeploy.deploy(inv, limit=_names(limit), only=_names(only), verbose=verbose)
    if report.failed:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "set", "only"), iterable=["set"])
@_cli
def verify(c, pattern=None, inventory=None, set=None, only=None):
    """End-to-end health checks of a deployed inventory; names each failing check."""
    inv = _load(pattern, inventory, set or ())
    failures = [r for r in mmdeploy.verify(inv, only=_names(only)) if not r.ok]
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        raise Exit(code=1)
    print("all checks passed")


@task(help={"pattern": "test-bed layout to deploy: single (default), allinone, multi, cluster"})
@_cli
def up(c, pattern="single"):
    """The main job: start the local test bed, deploy Mattermost onto it, verify, print the URL."""
    from mmdeploy import testbed

    # A bed that `inv up` did not create for this layout (a test's, another layout's) is
    # never deployed onto: it is replaced. The inventory written holds every bed-only
    # setting, so later commands work on it alone.
    path = testbed.up(ROOT, pattern=pattern, owner="up", replace=True, settings=_bed_settings(pattern))
    inv = mmdeploy.load(path)
    report = mmdeploy.deploy(inv)
    if report.failed:
        raise Exit(code=1)
    print()
    if not all(r.ok for r in mmdeploy.verify(inv)):
        raise Exit(code=1)
    proxy, mm = inv.with_role("proxy")[0], inv.settings.mattermost
    print(f"""
Mattermost ({inv.pattern} pattern, {len(inv.hosts)} test-bed hosts, {path.relative_to(ROOT)}) is up:
  URL:      https://{proxy.address}/   (site URL https://{inv.settings.domain}; self-signed certificate)
  login:    {mm.admin_username}, team '{mm.team_name}'
  password: key mattermost_admin_password in {inv.secrets_path.relative_to(ROOT)}
The Mattermost server on the test bed is a stand-in (tests/standin/): the real release
cannot be downloaded on this machine. On real hosts the same deploy installs the official one.""")


@task(help={"e2e": "include the end-to-end tests on the test bed (default true)",
            "k": "only tests matching this pytest expression"})
def test(c, e2e=True, k=None):
    """The whole test suite: unit tests, then end-to-end tests on the local test bed."""
    args = [sys.executable, "-m", "pytest", "-ra"]
    if not e2e:
        args += ["-m", "not e2e"]
    if k:
        args += ["-k", k]
    raise Exit(code=subprocess.call(args, cwd=ROOT))


# --- test bed --------------------------------------------------------------------------


def _bed_settings(pattern: str | None = None) -> dict:
    """What the bed's inventory needs besides its hosts: the stand-ins for what cannot be
    downloaded here (tests/standin), as local files; for a layout with storage hosts,
    the SeaweedFS release built from the Go module proxy (tests/standin/artifacts.py)."""
    from mmdeploy import testbed
    from mmdeploy.inventory import merge
    from tests.standin import artifacts, release

    settings = release.settings()
    if pattern and any("storage" in roles for _, roles in testbed.PATTERNS.get(pattern, [])):
        archive, sha = artifacts.build("storage")
        settings = merge(settings, {"storage": {"url": str(archive), "sha256": sha,
                                                "version": artifacts.STORAGE.version}})
    return settings


@task(name="up", help={"pattern": "single, multi, cluster or allinone", "hosts": "N generic hosts instead"})
@_cli
def testbed_up(c, pattern=None, hosts=None):
    """Start local Debian hosts (Docker containers with systemd and sshd) and write their inventory."""
    from mmdeploy import testbed

    if pattern is None and hosts is None:
        pattern = "single"
    path = testbed.up(ROOT, pattern=pattern, hosts=int(hosts) if hosts else None, settings=_bed_settings(pattern))
    print(f"inventory: {path.relative_to(ROOT)}  (inv deploy --inventory {path.relative_to(ROOT)})")


@task(name="down")
@_cli
def testbed_down(c):
    """Remove the test-bed containers and network (the image stays cached)."""
    from mmdeploy import testbed

    testbed.down()


@task(name="status")
@_cli
def testbed_status(c):
    """List the test-bed hosts, their state and whether SSH answers."""
    from mmdeploy import testbed

    rows = testbed.status()
    if not rows:
        print("no test-bed hosts")
    for r in rows:
        print(f"{r['name']:<12} {r['address']:<15} {r['state']:<8} ssh={'up' if r['ssh'] else 'down':<5} {','.join(r['roles'])}")


@task(name="noop", help={"hosts": "comma-separated host counts (default 1,5,10)",
                         "steps": "steps in the demo component (default 20)"})
def bench_noop(c, hosts="1,5,10", steps=20):
    """Benchmark: time the no-op re-run of the demo component on N test-bed hosts."""
    raise Exit(code=subprocess.call([sys.executable, str(ROOT / "benchmarks" / "noop.py"),
                                     "--hosts", str(hosts), "--steps", str(steps)], cwd=ROOT))


# --- database tier ---------------------------------------------------------------------


@task(name="status", help=_help("pattern", "inventory", "set"), iterable=["set"])
@_cli
def db_status(c, pattern=None, inventory=None, set=None):
    """Per DB node: role, writable or read-only, position and lag, replicas, sync state. Reads only."""
    from mmdeploy import dbtier

    states = mmdeploy.db_status(_load(pattern, inventory, set or ()))
    print(dbtier.format_status(states))
    if sum(s.writable for s in states) != 1:
        raise Exit("expected exactly one writable DB node", code=1)


@task(name="failover-db", help={**_help("pattern", "inventory", "set"),
                                "to": "the replica to promote (default: the most advanced)",
                                "force": "the primary cannot be reached: confirm it is fenced by other means"},
      iterable=["set"])
@_cli
def failover_db(c, pattern=None, inventory=None, to=None, force=False, set=None):
    """Switch the DB primary (planned when it answers, failover when it does not): fence, promote,
    re-point the replicas, then the Mattermost servers one at a time."""
    report = mmdeploy.failover_db(_load(pattern, inventory, set or ()), to=to, force=force)
    print(f"\ndatabase: {report.db.new} is the primary (was {report.db.old or 'none'}; old primary: {report.db.fenced})")
    for r in report.clients.results:
        print(f"  {r.host:<12} {r.component:<12} {'re-pointed' if r.ok else 'NOT re-pointed'}"
              f"{'' if r.ok else ': ' + (r.error or '')}")
    for name in report.db.behind:
        print(f"  {name:<12} replica not streaming yet: check `inv db.status`")
    if not report.ok:
        print("left to do:\n  " + "\n  ".join(report.clients.left_to_do or ["wait for the replicas above"]),
              file=sys.stderr)
        raise Exit(code=1)


@task(name="rejoin", help={**_help("pattern", "inventory", "set"), "host": "the former primary to bring back as a replica"},
      iterable=["set"])
@_cli
def db_rejoin(c, host, pattern=None, inventory=None, set=None):
    """Bring a former DB primary back as a replica of the current one (never as a writer)."""
    mmdeploy.rejoin(_load(pattern, inventory, set or ()), host)


# --- day 2: upgrades, backups, migration, drift --------------------------------------------


def _node_table(report) -> None:
    for n in report.nodes:
        moved = f"{n.before or '?'} -> {n.after or '?'}" if n.before != n.after else (n.after or "?")
        drain = f"  drained in {n.drain_seconds:.1f} s" if n.drain_seconds is not None else ""
        print(f"  {n.host:<12} {n.role:<9} {n.status:<11} {moved:<22} {n.seconds:6.1f} s{drain}"
              + (f"\n  {'':<12} {n.problem}" if n.problem else ""))
    for w in report.warnings:
        print(f"  warning: {w}")


@task(help={**_help("pattern", "inventory", "set"), "version": "the Mattermost version to upgrade to "
            "(give its url/sha256 with --set, as for deploy)", "no_backup": "skip the backup before a "
            "schema-changing upgrade", "limit": "comma-separated Mattermost nodes only (a canary)"},
      iterable=["set"])
@_cli
def upgrade(c, version=None, pattern=None, inventory=None, set=None, no_backup=False, limit=None):
    """Upgrade Mattermost: rolling within a series (job server, then one drained app server at a
    time, verified, rolled back automatically on failure); across series as Mattermost documents."""
    overrides = list(set or ()) + ([f"mattermost.version={version}"] if version else [])
    report = mmdeploy.upgrade(_load(pattern, inventory, overrides), backup_first=not no_backup, limit=_names(limit))
    print(f"\n{report.action} ({report.procedure}) in {report.seconds:.1f} s: {report.message}")
    _node_table(report)
    if report.downtime_seconds is not None:
        print(f"  no app server behind the proxies for {report.downtime_seconds:.1f} s")
    if not report.ok:
        raise Exit(code=1)


@task(help={**_help("pattern", "inventory", "set"), "limit": "comma-separated Mattermost nodes only"},
      iterable=["set"])
@_cli
def rollback(c, pattern=None, inventory=None, set=None, limit=None):
    """Return every Mattermost node to the release it ran before its last upgrade (kept on disk)."""
    report = mmdeploy.rollback(_load(pattern, inventory, set or ()), limit=_names(limit))
    print(f"\nrollback in {report.seconds:.1f} s: {report.message}")
    _node_table(report)
    if not report.ok:
        raise Exit(code=1)


@task(name="backup", help={**_help("pattern", "inventory", "set"), "now": "run a backup now (else: show the "
                            "backups and the timers)", "full": "with --now: a full backup (default: differential)"},
      iterable=["set"])
@_cli
def backup_task(c, pattern=None, inventory=None, set=None, now=False, full=False):
    """Backups: with --now, a backup run now on the backup host; without, what the repository holds,
    the last runs and when the timers run next (deploy installs the timers: settings.backup)."""
    inv = _load(pattern, inventory, set or ())
    if now:
        report = mmdeploy.backup(inv, kind="full" if full else "diff")
        print(f"\n{report.message} in {report.seconds:.1f} s")
        if not report.ok:
            raise Exit(code=1)
        return
    st = mmdeploy.backup_status(inv)
    print(f"repository: {st.repository} ({st.engine})")
    for b in st.database:
        print(f"  database {b['label']:<28} {b['type']:<5} {b.get('size') or 0:>12} bytes")
    for f in st.files:
        print(f"  files    {f}")
    for part, last in sorted(st.last.items()):
        good = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last["success"])) if "success" in last else "never"
        print(f"  {part}: last good backup {good}; last run {'ok' if last.get('ok') else 'FAILED'}")
    for timer, when in st.timers.items():
        print(f"  {timer}: next {when}")


@task(name="restore", help={**_help("pattern", "inventory", "set"),
                            "to_time": "PostgreSQL: restore to this moment (ISO 8601, UTC unless an offset is given)",
                            "to_host": "the DB host to restore onto (default: the primary)",
                            "no_files": "do not put Mattermost's files and plugins back",
                            "no_start": "leave Mattermost stopped (then `inv rollback` to an older release)"},
      iterable=["set"])
@_cli
def restore_task(c, pattern=None, inventory=None, set=None, to_time=None, to_host=None, no_files=False,
                 no_start=False):
    """Restore the database from the backups (stopping and starting Mattermost around it), rejoin the
    other DB nodes, put the files back, verify."""
    report = mmdeploy.restore(_load(pattern, inventory, set or ()), to_time=to_time, to_host=to_host,
                              files=not no_files, start=not no_start)
    print(f"\n{report.message}: database in {report.database_seconds:.1f} s, all in {report.seconds:.1f} s")
    for line in report.checks_failed:
        print(f"  FAIL {line}")
    if not report.ok:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "set"), iterable=["set"])
@_cli
def drift(c, pattern=None, inventory=None, set=None):
    """Where nodes that must be identical disagree (release, config, plugins, units, TLS certificate,
    upstream) and where a node disagrees with the inventory; exit 1 when there is a difference."""
    from mmdeploy.driftcheck import format_report

    report = mmdeploy.drift(_load(pattern, inventory, set or ()))
    print(format_report(report))
    if not report.ok:
        raise Exit(code=1)


@task(name="migrate", help={**_help("pattern", "inventory", "set"), "to": "the target engine: postgresql",
                            "dry_run": "only the checks and pgloader's dry run (no downtime, no data moved)"},
      iterable=["set"])
@_cli
def db_migrate(c, to="postgresql", pattern=None, inventory=None, set=None, dry_run=False):
    """Move the MySQL-family database to PostgreSQL (Mattermost's documented path with pgloader), compare
    every table, cut every server over; the old tier stays read-only for a rollback."""
    overrides = list(set or ()) + [f"database.engine={to}"]
    report = mmdeploy.migrate_db(_load(pattern, inventory, overrides), to=to, dry_run=dry_run)
    print(f"\n{report.message} ({report.seconds:.1f} s)")
    for t in report.tables:
        print(f"  {'ok  ' if t.ok else 'DIFF'} {t.table:<24} {t.source_rows:>8} -> {t.target_rows:<8} "
              f"{(t.target_sum or '')[:12]}")
    for p in report.problems:
        print(f"  problem: {p}")
    for w in report.warnings:
        print(f"  warning: {w}")
    for line in report.checks_failed:
        print(f"  FAIL {line}")
    if report.cut_over:
        print(f"  {report.downtime_seconds:.1f} s without Mattermost; pgloader {report.load_seconds:.1f} s")
    if not report.ok:
        raise Exit(code=1)


testbed_ns = Collection("testbed", testbed_up, testbed_down, testbed_status)
bench_ns = Collection("bench", bench_noop)
db_ns = Collection("db", db_status, db_rejoin, db_migrate)
ns = Collection(plan, deploy, verify, up, test, failover_db, upgrade, rollback, drift, backup_task, restore_task, testbed_ns,
                bench_ns, db_ns)
