"""mmdeploy's command line: `inv --list` shows every task, `inv --help TASK` its options.

Exit codes: 0 success, 1 a host failed or a check failed, 2 bad input (nothing was touched).
"""

from __future__ import annotations

import functools
import subprocess
import sys
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
    _prepare_bed(pattern)
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
    the SeaweedFS release built from the Go module proxy, with search hosts OpenSearch
    from Maven Central and a small heap (tests/standin/artifacts.py)."""
    from mmdeploy import testbed
    from mmdeploy.inventory import merge
    from tests.standin import artifacts, release

    settings = release.settings()
    roles = {r for _, rs in testbed.PATTERNS.get(pattern or "", []) for r in rs}
    if "storage" in roles:
        archive, sha = artifacts.build("storage")
        settings = merge(settings, {"storage": {"url": str(archive), "sha256": sha,
                                                "version": artifacts.STORAGE.version}})
    return merge(settings, artifacts.bed_settings(roles))


def _prepare_bed(pattern: str | None) -> None:
    """Test-bed-only setup of the started containers, before any deploy
    (tests/standin/artifacts.prepare_bed: the open-files shim for OpenSearch)."""
    from mmdeploy import testbed
    from tests.standin import artifacts

    artifacts.prepare_bed(testbed.PATTERNS.get(pattern or "", []))


@task(name="up", help={"pattern": "single, multi, cluster or allinone", "hosts": "N generic hosts instead"})
@_cli
def testbed_up(c, pattern=None, hosts=None):
    """Start local Debian hosts (Docker containers with systemd and sshd) and write their inventory."""
    from mmdeploy import testbed

    if pattern is None and hosts is None:
        pattern = "single"
    path = testbed.up(ROOT, pattern=pattern, hosts=int(hosts) if hosts else None, settings=_bed_settings(pattern))
    _prepare_bed(pattern)
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


testbed_ns = Collection("testbed", testbed_up, testbed_down, testbed_status)
bench_ns = Collection("bench", bench_noop)
db_ns = Collection("db", db_status, db_rejoin)
ns = Collection(plan, deploy, verify, up, test, failover_db, testbed_ns, bench_ns, db_ns)
