"""mmdeploy's command line: `inv --list` shows every task, `inv --help TASK` its options.

Exit codes: 0 success, 1 a host failed or a check failed, 2 bad input (nothing was touched),
3 another deploy, failover-db or db.rejoin holds the inventory's lock (nothing was done).
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

from invoke import Collection, Exit, task

import mmdeploy
from mmdeploy import jsonout
from mmdeploy.errors import MMDeployError

ROOT = Path(__file__).resolve().parent

# A command is a short process whose objects (modules, settings models, templates) mostly
# live to its end: the collector need not scan them every 700 allocations, nor at exit,
# where it would only free what the process is about to give back (together some 60 ms of
# a 0.9 s no-op deploy of 10 hosts). Cycles are still collected as the run goes.
gc.set_threshold(10_000, 10, 10)
atexit.register(gc.freeze)  # registered first, so it runs after the other exit handlers


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


def _output(json: bool) -> dict:
    """Where a run's lines go: standard error when standard output carries the JSON
    document; a live per-host view on a terminal; else one line per change."""
    if json:
        return {"out": sys.stderr}
    return {"live": sys.stdout.isatty()}


def _json(document: dict, inv) -> None:
    jsonout.dump(document, sys.stdout, mmdeploy.session(inv)[0])


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
    "barrier": "every host finishes a component before any starts the next (default: each host at its own pace)",
    "json": "print one JSON document on standard output (schema: docs/json.md); other output goes to stderr",
}


def _help(*names):
    return {n: _HELP[n] for n in names}


@task(help=_help("pattern", "inventory", "limit", "set", "only", "verbose", "json"), iterable=["set"])
@_cli
def plan(c, pattern=None, inventory=None, limit=None, set=None, only=None, verbose=False, json=False):
    """Show every step that would change, with diffs; changes nothing (--limit, --only, --json).

    Host by host, each step that would change and each file's unified diff."""
    inv = _load(pattern, inventory, set or ())
    report = mmdeploy.plan(inv, limit=_names(limit), only=_names(only), verbose=verbose, **_output(json))
    if json:
        _json(jsonout.run(report, inv), inv)
    if report.failed:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "limit", "set", "only", "yes", "verbose", "json", "barrier"), iterable=["set"])
@_cli
def deploy(
    c,
    pattern=None,
    inventory=None,
    limit=None,
    set=None,
    only=None,
    yes=False,
    verbose=False,
    json=False,
    barrier=False,
):
    """Apply the inventory, hosts in parallel (--yes: do not ask first; --json for scripts).

    Components in dependency order; on a terminal it shows the plan and asks first, with a
    live per-host view while it runs."""
    inv = _load(pattern, inventory, set or ())
    if not yes and sys.stdin.isatty() and sys.stdout.isatty():
        preview = mmdeploy.plan(inv, limit=_names(limit), only=_names(only), **_output(json))
        if preview.failed:
            raise Exit(code=1)
        if preview.changed == 0:
            print("Nothing to change.", file=sys.stderr if json else sys.stdout)
            if json:  # nothing was applied: the deploy's document, with no change
                _json({**jsonout.run(preview, inv), "kind": "deploy"}, inv)
            return
        print(
            f"Apply these {preview.changed} changes? [y/N] ",
            end="",
            flush=True,
            file=sys.stderr if json else sys.stdout,
        )
        if input().strip().lower() not in ("y", "yes"):
            raise Exit("Not applied.", code=1)
    report = mmdeploy.deploy(
        inv, limit=_names(limit), only=_names(only), verbose=verbose, barrier=barrier, **_output(json)
    )
    if json:
        _json(jsonout.run(report, inv), inv)
    if report.failed:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "set", "only", "json"), iterable=["set"])
@_cli
def verify(c, pattern=None, inventory=None, set=None, only=None, json=False):
    """End-to-end health checks; names each failing check (--only, --json)."""
    inv = _load(pattern, inventory, set or ())
    results = mmdeploy.verify(inv, only=_names(only), out=sys.stderr if json else None)
    if json:
        _json(jsonout.verify(results, inv), inv)
    failures, warned = [r for r in results if not r.ok], sum(r.warning for r in results)
    if failures:
        print(f"{len(failures)} check(s) failed" + (f", {warned} warning(s)" if warned else ""), file=sys.stderr)
        raise Exit(code=1)
    print(
        "all checks passed" + (f" ({warned} warning(s): see the warn lines)" if warned else ""),
        file=sys.stderr if json else sys.stdout,
    )


@task(
    help={
        "pattern": "test-bed layout to deploy: single (default), allinone, pair, multi, cluster",
        "distro": "Debian suite of the test-bed hosts: bookworm (default) or trixie",
    }
)
@_cli
def up(c, pattern="single", distro="bookworm"):
    """The main job: test bed up, deploy, verify, print the URL and topology (--pattern, --distro)."""
    from mmdeploy import testbed

    # A bed that `inv up` did not create for this layout (a test's, another layout's) is
    # never deployed onto: it is replaced. The inventory written holds every bed-only
    # setting, so later commands work on it alone.
    path = testbed.up(ROOT, pattern=pattern, owner="up", replace=True, settings=_bed_settings(pattern), distro=distro)
    _prepare_bed(pattern)
    inv = mmdeploy.load(path)
    report = mmdeploy.deploy(inv, live=sys.stdout.isatty())
    if report.failed:
        raise Exit(code=1)
    print()
    if not all(r.ok for r in mmdeploy.verify(inv)):
        raise Exit(code=1)
    from mmdeploy import topology as drawing

    picture = drawing.render(mmdeploy.topology_graph(inv), path.with_suffix(".svg"))
    proxy, mm = inv.with_role("proxy")[0], inv.settings.mattermost
    print(f"""
Mattermost ({inv.pattern} pattern, {len(inv.hosts)} test-bed hosts, {path.relative_to(ROOT)}) is up:
  URL:      https://{proxy.address}/   (site URL https://{inv.settings.domain}; self-signed certificate)
  login:    {mm.admin_username}, team '{mm.team_name}'
  password: key mattermost_admin_password in {inv.secrets_path.relative_to(ROOT)}
  topology: {picture.relative_to(ROOT)}   (inv topology --inventory {path.relative_to(ROOT)} redraws it)
The Mattermost server on the test bed is a stand-in (tests/standin/): the real release
cannot be downloaded on this machine. On real hosts the same deploy installs the official one.""")


@task(
    help={
        **_help("pattern", "inventory", "set"),
        "out": "the picture to write: .svg (default topology.svg), .png, .pdf or .dot",
        "offline": "draw from the inventory alone, without asking the hosts",
        "firewall": "draw the host firewall's flow matrix: who may reach which ports of each layer",
    },
    iterable=["set"],
)
@_cli
def topology(c, pattern=None, inventory=None, out="topology.svg", offline=False, firewall=False, set=None):
    """Draw the deployment with its live state as an SVG picture (--out F, --offline, --firewall).

    Hosts by layer, floating addresses, flows with ports, and (unless --offline) live state
    read from the hosts: VIP holder, DB primary and replicas, hosts down. --firewall draws
    the flows the host firewall allows instead (inv flows prints them)."""
    from mmdeploy import topology as drawing

    inv = _load(pattern, inventory, set or ())
    path = drawing.render(mmdeploy.topology_graph(inv, live=not offline, firewall=firewall), Path(out))
    print(f"topology: {path}")


@task(
    help={
        "users": "the number of users to size for",
        "out": "also write a starting inventory there (addresses as placeholders to fill in)",
        "mb_per_user_month": "MB of files per user per month (low 1-5, medium 5-25, high 25-100; default 15)",
        "domain": "the site's domain in the written inventory",
        "force": "overwrite --out if it exists",
    }
)
@_cli
def size(c, users, out=None, mb_per_user_month=15.0, domain="chat.example.com", force=False):
    """Size a site: pattern and per-role hosts, vCPU, memory, disk (--users N, --out F).

    Figures from the report's Table 1 and Mattermost's reference architectures, each with its
    source; with --out, also a starting inventory with placeholders for the addresses."""
    from mmdeploy import sizing
    from mmdeploy.errors import InventoryError

    try:
        count = int(users)
    except ValueError:
        raise InventoryError([f"--users: expected a whole number, got {users!r}"]) from None
    rec = sizing.recommend(count, float(mb_per_user_month))
    print(f"{count:,} users: the {rec.pattern} pattern (Mattermost's {rec.tier.users:,}-user reference architecture)\n")
    print(rec.table())
    if out:
        path = Path(out)
        if path.exists() and not force:
            raise InventoryError([f"--out: {path} exists (use --force to overwrite)"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sizing.inventory(rec, domain))
        print(f"\ninventory: {path} (fill in the addresses, then: inv plan --inventory {path})")


@task(
    help={
        **_help("pattern", "inventory", "set"),
        "out": "the directory to write the manifests into (kubectl apply -k DIR)",
    },
    iterable=["set"],
)
@_cli
def k8s(c, pattern=None, inventory=None, out="k8s", set=None):
    """Render the Kubernetes pattern's manifests from the inventory (--out DIR).

    The report's section 6.4: the Mattermost operator's custom resource, the secrets it
    references, an NGINX ingress with TLS. Contacts no host and no cluster."""
    from mmdeploy import k8s as kubernetes

    inv = _load(pattern, inventory, set or ())
    rendered = kubernetes.manifests(inv, mmdeploy.session(inv)[1])
    for path in rendered.write(Path(out)):
        secret = path.name == "secrets.yaml"
        print(f"wrote {path}" + ("  (secret values: mode 0600, keep it out of git)" if secret else ""))
    for item in rendered.placeholders:
        print(f"fill in: {item}")
    print(f"then: kubectl apply -k {out}   (needs the Mattermost operator and an NGINX ingress controller)")


@task(
    help={
        "pattern": "single, multi or cluster: VMs for the hosts of hosts/PATTERN.yml",
        "inventory": "another inventory whose hosts (names, roles) to make VMs for",
        "out": "the directory for the Vagrantfile and the inventory (default vagrant/PATTERN)",
        "distro": "the Debian box: bookworm (default) or trixie",
    }
)
@_cli
def vagrant(c, pattern=None, inventory=None, out=None, distro="bookworm"):
    """Write a Vagrantfile and inventory for a pattern's hosts (--pattern, --out DIR, --distro).

    Box, host-only addresses and memory per role; the inventory deploys onto those VMs."""
    from mmdeploy import vagrant as vms

    inv = _load(pattern, inventory)
    directory = Path(out) if out else ROOT / "vagrant" / inv.pattern
    shown = os.path.relpath(directory, Path.cwd())
    vfile, inv_file = vms.write(inv, directory, distro, where=shown)
    print(f"wrote {os.path.relpath(vfile)} and {os.path.relpath(inv_file)}")
    print(f"then: cd {shown} && vagrant up; inv deploy --inventory {os.path.relpath(inv_file)}")


@task(
    help={
        "e2e": "include the end-to-end tests on the test bed (default true)",
        "k": "only tests matching this pytest expression",
        "lint": "run ruff (lint and format check) and mypy first (default true)",
        "workers": "pytest-xdist workers, each module on one, each worker on a bed of its own (default 2; 1: none)",
    }
)
def test(c, e2e=True, k=None, lint=True, workers=2):
    """Run ruff, mypy, the unit and the end-to-end tests (--no-e2e, -k EXPR, --no-lint, --workers N)."""
    if lint:
        for check in (
            [sys.executable, "-m", "ruff", "check", "."],
            [sys.executable, "-m", "ruff", "format", "--check", "."],
            [sys.executable, "-m", "mypy"],
        ):
            print("$ " + " ".join(["python3", *check[1:]]), flush=True)
            if subprocess.call(check, cwd=ROOT) != 0:
                raise Exit(f"{' '.join(check[2:4])} found problems (`ruff format .` fixes the format)", code=1)
    args = [sys.executable, "-m", "pytest", "-ra", "--durations=30"]
    if int(workers) > 1:
        # Whole modules per worker (their beds and fixtures are per module), in the order
        # tests/conftest.py gives (longest first), each worker on a bed of its own: most of
        # an end-to-end test waits on its hosts, so two workers share two cores well.
        args += ["-n", str(int(workers)), "--dist", "loadfile", "--no-loadscope-reorder"]
    if not e2e:
        args += ["-m", "not e2e"]
    if k:
        args += ["-k", k]
    raise Exit(code=subprocess.call(args, cwd=ROOT))


# --- test bed --------------------------------------------------------------------------


def _bed_settings(pattern: str | None = None, hosts: int | None = None) -> dict:
    """What the bed's inventory needs besides its hosts: the stand-ins and builds of what
    cannot be downloaded here (tests/standin) as local files, a test license, dummy push
    credentials (tests/standin/bed.py)."""
    from mmdeploy import testbed
    from tests.standin import bed

    roles = {r for h in testbed.layout(pattern, hosts) for r in h.roles}
    return bed.settings(ROOT, roles)


def _prepare_bed(pattern: str | None) -> None:
    """Test-bed-only setup of the started containers, before any deploy
    (tests/standin/artifacts.prepare_bed: the open-files shim for OpenSearch)."""
    from mmdeploy import testbed
    from tests.standin import artifacts

    artifacts.prepare_bed(testbed.PATTERNS.get(pattern or "", []))


@task(
    name="up",
    help={
        "pattern": "single, multi, cluster, allinone or pair",
        "hosts": "N generic hosts instead",
        "distro": "Debian suite of the hosts: bookworm (default) or trixie",
        "sudo_user": "reach the hosts as this user with passwordless sudo instead of root",
    },
)
@_cli
def testbed_up(c, pattern=None, hosts=None, distro="bookworm", sudo_user=None):
    """Start local Debian test-bed hosts and write their inventory (--pattern, --hosts N, --distro, --sudo-user).

    Docker containers with systemd and sshd, reached over SSH like real hosts."""
    from mmdeploy import testbed
    from mmdeploy.grammar import unix_user

    if pattern is None and hosts is None:
        pattern = "single"
    if sudo_user is not None:
        try:
            unix_user(sudo_user)
        except ValueError as e:
            raise Exit(f"--sudo-user: {e}", code=2) from None
    hosts = int(hosts) if hosts else None
    path = testbed.up(
        ROOT, pattern=pattern, hosts=hosts, settings=_bed_settings(pattern, hosts), distro=distro, sudo_user=sudo_user
    )
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
        print(
            f"{r['name']:<12} {r['address']:<15} {r['state']:<8} ssh={'up' if r['ssh'] else 'down':<5} {','.join(r['roles'])}"
        )


@task(
    name="noop",
    help={
        "hosts": "comma-separated host counts (default 1,10,50)",
        "steps": "steps in the demo component (default 20)",
    },
)
def bench_noop(c, hosts="1,10,50", steps=20):
    """Benchmark the no-op re-run of the demo component on test-bed hosts (--hosts, --steps)."""
    raise Exit(
        code=subprocess.call(
            [sys.executable, str(ROOT / "benchmarks" / "noop.py"), "--hosts", str(hosts), "--steps", str(steps)],
            cwd=ROOT,
        )
    )


# --- database tier ---------------------------------------------------------------------


@task(name="status", help=_help("pattern", "inventory", "set", "json"), iterable=["set"])
@_cli
def db_status(c, pattern=None, inventory=None, set=None, json=False):
    """Per DB node: role, access, position, lag, replicas, sync; reads only (--json)."""
    from mmdeploy import dbtier

    inv = _load(pattern, inventory, set or ())
    states = mmdeploy.db_status(inv)
    if json:
        _json(jsonout.db_status(states, inv), inv)
    else:
        print(dbtier.format_status(states))
    if sum(s.writable for s in states) != 1:
        raise Exit("expected exactly one writable DB node", code=1)


@task(
    name="failover-db",
    help={
        **_help("pattern", "inventory", "set"),
        "to": "the replica to promote (default: the most advanced)",
        "force": "the primary cannot be reached: confirm it is fenced by other means",
    },
    iterable=["set"],
)
@_cli
def failover_db(c, pattern=None, inventory=None, to=None, force=False, set=None):
    """Switch the DB primary: fence, promote, re-point replicas and Mattermost (--to H, --force).

    Planned when the primary answers, failover when it does not; the Mattermost servers are
    re-pointed one at a time."""
    report = mmdeploy.failover_db(_load(pattern, inventory, set or ()), to=to, force=force)
    print(
        f"\ndatabase: {report.db.new} is the primary (was {report.db.old or 'none'}; old primary: {report.db.fenced})"
    )
    for r in report.clients.results:
        print(
            f"  {r.host:<12} {r.component:<12} {'re-pointed' if r.ok else 'NOT re-pointed'}"
            f"{'' if r.ok else ': ' + (r.error or '')}"
        )
    for name in report.db.behind:
        print(f"  {name:<12} replica not streaming yet: check `inv db.status`")
    if not report.ok:
        print(
            "left to do:\n  " + "\n  ".join(report.clients.left_to_do or ["wait for the replicas above"]),
            file=sys.stderr,
        )
        raise Exit(code=1)


@task(
    name="rejoin",
    help={**_help("pattern", "inventory", "set"), "host": "the former primary to bring back as a replica"},
    iterable=["set"],
)
@_cli
def db_rejoin(c, host, pattern=None, inventory=None, set=None):
    """Bring former DB primary HOST back as a replica of the current one, never as a writer (db.rejoin H)."""
    mmdeploy.rejoin(_load(pattern, inventory, set or ()), host)


# --- day 2: upgrades, backups, migration, drift --------------------------------------------


def _node_table(report) -> None:
    for n in report.nodes:
        moved = f"{n.before or '?'} -> {n.after or '?'}" if n.before != n.after else (n.after or "?")
        drain = f"  drained in {n.drain_seconds:.1f} s" if n.drain_seconds is not None else ""
        print(
            f"  {n.host:<12} {n.role:<9} {n.status:<11} {moved:<22} {n.seconds:6.1f} s{drain}"
            + (f"\n  {'':<12} {n.problem}" if n.problem else "")
        )
    for w in report.warnings:
        print(f"  warning: {w}")


@task(
    help={
        **_help("pattern", "inventory", "set"),
        "version": "the Mattermost version to upgrade to (give its url/sha256 with --set, as for deploy)",
        "no_backup": "skip the backup before a schema-changing upgrade",
        "limit": "comma-separated Mattermost nodes only (a canary)",
    },
    iterable=["set"],
)
@_cli
def upgrade(c, version=None, pattern=None, inventory=None, set=None, no_backup=False, limit=None):
    """Upgrade every Mattermost node, rolling within a series (--version X, --limit H, --no-backup).

    Within a series: the job server, then one drained app server at a time, verified, rolled back
    automatically on failure; across series as Mattermost documents (a backup first)."""
    overrides = list(set or ()) + ([f"mattermost.version={version}"] if version else [])
    report = mmdeploy.upgrade(_load(pattern, inventory, overrides), backup_first=not no_backup, limit=_names(limit))
    print(f"\n{report.action} ({report.procedure}) in {report.seconds:.1f} s: {report.message}")
    _node_table(report)
    if report.downtime_seconds is not None:
        print(f"  no app server behind the proxies for {report.downtime_seconds:.1f} s")
    if not report.ok:
        raise Exit(code=1)


@task(help={**_help("pattern", "inventory", "set"), "limit": "comma-separated Mattermost nodes only"}, iterable=["set"])
@_cli
def rollback(c, pattern=None, inventory=None, set=None, limit=None):
    """Return every Mattermost node to the release it ran before its last upgrade, on disk (--limit H)."""
    report = mmdeploy.rollback(_load(pattern, inventory, set or ()), limit=_names(limit))
    print(f"\nrollback in {report.seconds:.1f} s: {report.message}")
    _node_table(report)
    if not report.ok:
        raise Exit(code=1)


@task(
    name="backup",
    help={
        **_help("pattern", "inventory", "set"),
        "now": "run a backup now (else: show the backups and the timers)",
        "full": "with --now: a full backup (default: differential)",
    },
    iterable=["set"],
)
@_cli
def backup_task(c, pattern=None, inventory=None, set=None, now=False, full=False):
    """Show the backups and their timers, or take one now (--now).

    With --now, a backup run now on the backup host; without, what the repository holds, the last
    runs and when the timers run next (deploy installs the timers: settings.backup)."""
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


@task(
    name="restore",
    help={
        **_help("pattern", "inventory", "set"),
        "to_time": "PostgreSQL: restore to this moment (ISO 8601, UTC unless an offset is given)",
        "to_host": "the DB host to restore onto (default: the primary)",
        "no_files": "do not put Mattermost's files and plugins back",
        "no_start": "leave Mattermost stopped (then `inv rollback` to an older release)",
    },
    iterable=["set"],
)
@_cli
def restore_task(c, pattern=None, inventory=None, set=None, to_time=None, to_host=None, no_files=False, no_start=False):
    """Restore the database and Mattermost's files from the backups, then verify (--to-time T, --to-host H).

    Mattermost is stopped around it; the other DB nodes are rejoined."""
    report = mmdeploy.restore(
        _load(pattern, inventory, set or ()), to_time=to_time, to_host=to_host, files=not no_files, start=not no_start
    )
    print(f"\n{report.message}: database in {report.database_seconds:.1f} s, all in {report.seconds:.1f} s")
    for line in report.checks_failed:
        print(f"  FAIL {line}")
    if not report.ok:
        raise Exit(code=1)


@task(help=_help("pattern", "inventory", "set", "json"), iterable=["set"])
@_cli
def drift(c, pattern=None, inventory=None, set=None, json=False):
    """Show where nodes that must be identical disagree, or disagree with the inventory (exit 1; --json).

    Compared: release, config, plugins, units, TLS certificate and upstream (--json for scripts)."""
    from mmdeploy.driftcheck import format_report

    inv = _load(pattern, inventory, set or ())
    report = mmdeploy.drift(inv)
    if json:
        _json(jsonout.drift(report, inv), inv)
    else:
        print(format_report(report))
    if not report.ok:
        raise Exit(code=1)


@task(
    name="migrate",
    help={
        **_help("pattern", "inventory", "set"),
        "to": "the target engine: postgresql",
        "dry_run": "only the checks and pgloader's dry run (no downtime, no data moved)",
    },
    iterable=["set"],
)
@_cli
def db_migrate(c, to="postgresql", pattern=None, inventory=None, set=None, dry_run=False):
    """Move the MySQL-family database to PostgreSQL with pgloader, as Mattermost documents (--dry-run).

    Every table is compared, then every server cut over; the old tier stays read-only for a rollback."""
    overrides = list(set or ()) + [f"database.engine={to}"]
    report = mmdeploy.migrate_db(_load(pattern, inventory, overrides), to=to, dry_run=dry_run)
    print(f"\n{report.message} ({report.seconds:.1f} s)")
    for t in report.tables:
        print(
            f"  {'ok  ' if t.ok else 'DIFF'} {t.table:<24} {t.source_rows:>8} -> {t.target_rows:<8} "
            f"{(t.target_sum or '')[:12]}"
        )
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


@task(
    help={
        **_help("pattern", "inventory", "set"),
        "source": "an address: list only what it may reach (a port scan from it should find exactly that)",
        "control": "the control machine's address as the hosts see it (default: none, i.e. a stranger)",
    },
    iterable=["set"],
)
@_cli
def flows(c, pattern=None, inventory=None, set=None, source=None, control=None):
    """Print the firewall's flow matrix: every host's ports and who may reach them (or what --source may)."""
    inv = _load(pattern, inventory, set or ())
    controls = [control] if control else []
    if source:
        for (host, proto, port), names in sorted(mmdeploy.reachable(inv, source, control=controls).items()):
            print(f"{host:<12} {proto:<4} {port:>5}  {', '.join(names)}")
        return
    for flow, allowed in mmdeploy.flows(inv, control=controls):
        hosts = {h.private_address for h in flow.sources}
        who = (
            "anyone"
            if allowed is None
            else ", ".join(
                [r for r in flow.reach if r in ("@control", "@admin")]
                + [h.name for h in flow.sources]
                + [a for a in allowed if a not in hosts]
            )
            or "-"
        )
        print(f"{flow.host.name:<12} {flow.proto:<4} {flow.port:>5}  {flow.name:<32} {who}")


testbed_ns = Collection("testbed", testbed_up, testbed_down, testbed_status)
bench_ns = Collection("bench", bench_noop)
db_ns = Collection("db", db_status, db_rejoin, db_migrate)
ns = Collection(
    plan,
    deploy,
    verify,
    up,
    test,
    failover_db,
    upgrade,
    rollback,
    drift,
    backup_task,
    restore_task,
    flows,
    topology,
    size,
    k8s,
    vagrant,
    testbed_ns,
    bench_ns,
    db_ns,
)
