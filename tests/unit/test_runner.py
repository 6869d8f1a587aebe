"""The runner with real scripts run locally (LocalRemote): plan changes nothing, apply is
idempotent, handlers run once after the component's steps, a failing host fails alone,
secrets never reach the output or the run log."""

import getpass
import io
import time

import pytest

from mmdeploy import api, inventory, runner
from mmdeploy.component import Component, ordered
from mmdeploy.errors import InventoryError
from mmdeploy.ops import Command, Directory, File
from mmdeploy.step import Step
from mmdeploy.report import Reporter
from mmdeploy.secrets import REDACTED, Redactor, Secrets
from mmdeploy.dbtier.component import DB_PASSWORD

from .conftest import SINGLE
from .localremote import LocalRemote

ME = getpass.getuser()


class Files(Component):
    """Writes two config files per host under tmp/<host>/ and 'restarts' (appends to a log)."""

    name = "files"

    def __init__(self, root, fail_on=(), after=()):
        self.root, self.fail_on, self.after = root, fail_on, after

    def hosts(self, inv):
        return list(inv.hosts)

    def steps(self, ctx):
        d = self.root / ctx.host.name
        steps = [
            Directory(str(d), owner=ME, group=ME),
            File(f"{d}/a.conf", f"port={ctx.settings.demo.port}\n", owner=ME, group=ME, notify=("restart",)),
            File(
                f"{d}/b.conf",
                f"password={ctx.secrets.get(DB_PASSWORD)}\n",
                owner=ME,
                group=ME,
                mode="0600",
                notify=("restart",),
            ),
        ]
        if ctx.host.name in self.fail_on:
            steps.append(Command("break", "echo broken >&2; exit 7"))
        steps.append(File(f"{d}/last", "x\n", owner=ME, group=ME))
        return steps

    def handlers(self, ctx):
        d = self.root / ctx.host.name
        return {"restart": Command("restart", f"echo restart >> {d}/restarts")}


class After(Component):
    name = "after"
    after = ("files",)

    def __init__(self, root):
        self.root = root

    def hosts(self, inv):
        return list(inv.hosts)

    def steps(self, ctx):
        return [File(f"{self.root}/{ctx.host.name}/after", "y\n", owner=ME, group=ME)]


@pytest.fixture
def site(tmp_path, write_inventory, monkeypatch):
    unreachable = set()
    monkeypatch.setattr(
        runner,
        "Remote",
        lambda host, redact, log_path: LocalRemote(host, redact, log_path, fail_connect=host.name in unreachable),
    )
    inv = inventory.load(write_inventory(SINGLE))
    files = tmp_path / "hosts"
    files.mkdir()

    def run(mode, components=None, limit=None, inv=inv, warnings=(), pipelined=True):
        out = io.StringIO()
        redactor = Redactor()
        secrets = Secrets(tmp_path / "site.secrets.yml", redactor)
        report = runner.run(
            inv,
            components or [Files(files)],
            mode=mode,
            secrets=secrets,
            reporter=Reporter(redactor, out=out),
            limit=limit,
            run_root=tmp_path / "runs",
            warnings=warnings,
            pipelined=pipelined,
        )
        return report, out.getvalue()

    run.files, run.unreachable, run.inv, run.tmp = files, unreachable, inv, tmp_path
    return run


def test_plan_changes_nothing_and_shows_diffs(site):
    report, out = site("plan")
    assert list(site.files.iterdir()) == []
    assert report.changed == 3 * 5  # 4 steps + the notified handler, per host
    assert "app1         files       ~ file " in out and "would create" in out
    assert "+port=8080" in out
    assert "handler restart: would run (notified)" in out


def test_apply_then_second_apply_changes_nothing(site):
    first, _ = site("apply")
    assert not first.failed and first.changed == 15
    assert (site.files / "db1" / "a.conf").read_text() == "port=8080\n"
    # Two steps notified the handler; it ran once, after the component's steps.
    assert (site.files / "db1" / "restarts").read_text() == "restart\n"
    second, out = site("apply")
    assert second.changed == 0 and not second.failed
    assert (site.files / "db1" / "restarts").read_text() == "restart\n"
    # The no-op re-run needs one round trip per host for all its checks.
    assert second.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}  # connect facts + one batch
    assert "total" in out


def test_edited_setting_shows_in_plan_and_restarts_once(site, write_inventory):
    site("apply")
    changed = inventory.load(site.inv.path, ["demo.port=9090"])
    report, out = site("plan", inv=changed)
    assert "-port=8080" in out and "+port=9090" in out
    assert (site.files / "app1" / "a.conf").read_text() == "port=8080\n"
    site("apply", inv=changed)
    assert (site.files / "app1" / "restarts").read_text() == "restart\nrestart\n"


def test_failing_host_stops_alone(site):
    report, out = site("apply", [Files(site.files, fail_on=("app1",)), After(site.files)])
    assert report.failed
    assert report.hosts["app1"].failed == 1
    assert "app1         files       ! break: FAILED: break failed (exit 7): broken" in out
    assert not (site.files / "app1" / "last").exists()  # its later steps did not run
    assert not (site.files / "app1" / "after").exists()  # nor its later components
    assert not (site.files / "app1" / "restarts").exists()  # nor handlers after a failure
    for other in ("proxy1", "db1"):
        assert (site.files / other / "after").exists()
    assert "app1: FAILED: files / break: break failed (exit 7)" in out


def test_unreachable_host_fails_alone(site):
    site.unreachable.add("db1")
    report, out = site("apply")
    assert report.hosts["db1"].error.startswith("cannot connect over SSH to root@192.0.2.13:22")
    assert (site.files / "proxy1" / "last").exists() and not (site.files / "db1").exists()
    assert "db1          -           ! FAILED: cannot connect" in out


def test_limit_touches_only_named_hosts(site):
    report, _ = site("apply", limit=["app1"])
    assert list(report.hosts) == ["app1"]
    assert [p.name for p in site.files.iterdir()] == ["app1"]
    with pytest.raises(InventoryError, match="--limit: unknown host 'nope'"):
        runner.select_hosts(site.inv, ["nope"])


def test_secrets_redacted_from_output_and_logs(site):
    report, out = site("plan")
    secret = Secrets(site.tmp / "site.secrets.yml", Redactor()).get(DB_PASSWORD)
    assert len(secret) >= 24
    assert secret not in out and f"+password={REDACTED}" in out
    site("apply")
    for log in (site.tmp / "runs").rglob("*.log"):
        assert secret not in log.read_text(), log
    assert (site.files / "db1" / "b.conf").read_text() == f"password={secret}\n"
    assert oct((site.tmp / "site.secrets.yml").stat().st_mode & 0o777) == "0o600"


def test_run_log_records_commands(site):
    report, _ = site("apply")
    log = (report.log_dir / "app1.log").read_text()
    assert "install -d" in log and "restarts" in log
    assert (report.log_dir / "output.log").read_text().count("app1") >= 4


def test_component_order_follows_dependencies(tmp_path):
    f, a = Files(tmp_path), After(tmp_path)
    assert [c.name for c in ordered([a, f])] == ["files", "after"]
    assert [c.name for c in ordered([a])] == ["after"]  # unselected dependency: already applied
    a.after = ("after",)
    with pytest.raises(ValueError, match="cycle"):
        ordered([a])


class Stamp(Component):
    """On the hosts named: writes when its step started, sleeps, writes when it ended
    (tmp/<host>.<component>.start and .end); fails instead where `fail_on`."""

    def __init__(self, name, root, on, seconds=0.0, after=(), fail_on=()):
        self.name, self.root, self.on, self.seconds, self.after, self.fail_on = name, root, on, seconds, after, fail_on

    def hosts(self, inv):
        return [h for h in inv.hosts if h.name in self.on]

    def steps(self, ctx):
        f = self.root / f"{ctx.host.name}.{self.name}"
        fail = "; exit 3" if ctx.host.name in self.fail_on else ""
        return [Command(self.name, f"date +%s.%N > {f}.start; sleep {self.seconds}; date +%s.%N > {f}.end{fail}")]

    def at(self, host, edge):
        return float((self.root / f"{host}.{self.name}.{edge}").read_text())


def stamps(root):
    """db1 is slow in its first component; proxy1 has one of its own that needs nobody,
    app1 one that needs db1's, and proxy1 and db1 share one they start together."""
    slow = Stamp("slow", root, {"db1"}, seconds=1.0)
    local = Stamp("local", root, {"proxy1"})
    needs = Stamp("needs", root, {"app1"}, after=("slow",))
    together = Stamp("together", root, {"proxy1", "db1"})
    return slow, local, needs, together


def test_pipelines_wait_for_other_hosts_only_where_a_component_needs_them(site):
    slow, local, needs, together = stamps(site.tmp)
    report, _ = site("apply", [slow, local, needs, together])
    assert not report.failed and report.changed == 5
    assert local.at("proxy1", "start") < slow.at("db1", "end")  # needs nobody: did not wait
    assert needs.at("app1", "start") >= slow.at("db1", "end")  # after = ("slow",): waited for db1
    assert together.at("proxy1", "start") >= slow.at("db1", "end")  # its hosts start it together
    # The report reads as under a barrier: components in order, hosts in inventory order.
    assert [(r.component, r.host) for r in report.results] == [
        ("slow", "db1"),
        ("local", "proxy1"),
        ("needs", "app1"),
        ("together", "proxy1"),
        ("together", "db1"),
    ]
    # The host's own work, not its waits: proxy1 worked well under db1's second.
    assert report.hosts["proxy1"].seconds < report.hosts["db1"].seconds


def test_hosts_of_a_component_that_is_not_together_start_it_alone(site):
    slow, local, needs, together = stamps(site.tmp)
    together.together = False  # e.g. mattermost-release: each server unpacks its own copy
    report, _ = site("apply", [slow, local, needs, together])
    assert not report.failed
    assert together.at("proxy1", "start") < slow.at("db1", "end")  # did not wait for db1 to come


class Moved(Stamp):
    """Stamp's server (tmp/<host>.server) on its hosts; retire() removes one left elsewhere,
    stamping when it did."""

    def steps(self, ctx):
        return super().steps(ctx) + [File(f"{self.root}/{ctx.host.name}.server", "up\n", owner=ME, group=ME)]

    def retire(self, ctx):
        f, server = self.root / f"{ctx.host.name}.{self.name}", self.root / f"{ctx.host.name}.server"
        return [Command("retire", f"date +%s.%N > {f}.start; rm {server}", unless=f"test ! -e {server}")]


def test_a_host_with_nothing_to_retire_neither_waits_nor_is_waited_for(site):
    """A component that retires servers elsewhere: a host that has one to retire starts it
    with the component's own hosts; one with nothing to retire (as before the run) goes
    through its checks without waiting for them (in the single pattern every host passed
    SeaweedFS's and OpenSearch's no-op retire checks only once the slowest got there)."""
    slow = Stamp("slow", site.tmp, {"db1"}, seconds=1.0)
    moved = Moved("moved", site.tmp, {"db1"})
    local = Stamp("local", site.tmp, {"app1"})
    (site.tmp / "proxy1.server").write_text("left by an earlier layout\n")
    report, _ = site("apply", [slow, moved, local])
    assert not report.failed and report.changed == 1 + 1 + 2 + 1
    assert local.at("app1", "start") < slow.at("db1", "end")  # nothing to retire: went on
    assert moved.at("proxy1", "start") >= slow.at("db1", "end")  # retired with db1's start
    assert not (site.tmp / "proxy1.server").exists() and (site.tmp / "db1.server").exists()
    assert [(r.component, r.host) for r in report.results if r.status == "changed"] == [
        ("slow", "db1"),
        ("moved", "proxy1"),
        ("moved", "db1"),
        ("moved", "db1"),
        ("local", "app1"),
    ]


def test_a_barrier_makes_every_host_wait_for_the_slowest(site):
    slow, local, needs, together = stamps(site.tmp)
    report, _ = site("apply", [slow, local, needs, together], pipelined=False)
    assert not report.failed
    assert local.at("proxy1", "start") >= slow.at("db1", "end")


def test_pipelines_wait_no_more_for_a_host_that_failed(site):
    slow, local, needs, together = stamps(site.tmp)
    slow.fail_on = ("db1",)
    report, out = site("apply", [slow, local, needs, together])
    assert report.failed and report.hosts["db1"].failed == 1
    assert needs.at("app1", "start") >= slow.at("db1", "end")  # still after it ended
    assert (site.tmp / "proxy1.together.end").exists() and not (site.tmp / "db1.together.start").exists()
    assert "db1: FAILED: slow / slow" in out


def test_pipelines_wait_no_more_for_a_host_that_could_not_be_reached(site, monkeypatch):
    """A host that fails to connect runs no pipeline: the hosts that wait for its
    components go on without it (they waited for it forever once; if they ever do again,
    the test stops them after a minute and fails)."""
    from concurrent.futures import ThreadPoolExecutor

    made, init = [], runner._Pipelines.__init__
    monkeypatch.setattr(runner._Pipelines, "__init__", lambda self, *a: init(self, *a) or made.append(self))
    slow, local, needs, together = stamps(site.tmp)
    site.unreachable.add("db1")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(site, "apply", [slow, local, needs, together])
        try:
            report, out = running.result(timeout=60)
        finally:
            for pipelines in made:
                pipelines.stop.set()
    assert report.failed and report.hosts["db1"].error.startswith("cannot connect over SSH")
    assert (site.tmp / "app1.needs.end").exists() and (site.tmp / "proxy1.together.end").exists()
    assert not (site.tmp / "db1.slow.start").exists()


def test_cross_host_waits_follow_after_and_the_firewall():
    """What each real component waits for on other hosts in a pipelined deploy: always
    components earlier in the order (so no pipeline can wait for itself), what it is
    `after` through others too, and the firewall; nothing else."""
    from mmdeploy.component import cross_host
    from mmdeploy.registry import registry

    order = ordered(list(registry().by_name(None)))
    waits = cross_host(order)
    index = {c.name: i for i, c in enumerate(order)}
    for name, deps in waits.items():
        assert all(index[d] < index[name] for d in deps), name
    assert waits["base"] == set() and waits["firewall"] == {"base"}
    assert waits["nginx"] == {"base", "firewall"}  # not the database, not the apps
    assert {"postgresql-replication", "patroni", "haproxy", "keepalived-start", "firewall"} <= waits["mattermost"]
    assert "prometheus" not in waits["mattermost"] and "nginx" not in waits["postgresql"]


class Topology(Component):
    """prepare() reads one fact from every host, including hosts outside --limit."""

    name = "topology"

    def __init__(self, root):
        self.root = root

    def hosts(self, inv):
        return list(inv.hosts)

    def prepare(self, inv, view):
        return {h.name: view.facts(h, ["echo seen"])["echo seen"].out.strip() for h in inv.hosts}

    def steps(self, ctx):
        d = self.root / ctx.host.name
        return [
            Directory(str(d), owner=ME, group=ME),
            File(f"{d}/cluster", f"{sorted(ctx.shared.items())}\n", owner=ME, group=ME),
        ]


def test_prepare_reads_across_hosts_once_and_shares_the_result(site):
    report, _ = site("apply", [Topology(site.files)], limit=["app1"])
    assert [p.name for p in site.files.iterdir()] == ["app1"]
    assert "('db1', 'seen')" in (site.files / "app1" / "cluster").read_text()


def test_a_handler_left_pending_by_an_interrupted_run_runs_next_time(site, monkeypatch):
    """app1 writes its config (notifying restart), then fails before the handler, as a run
    killed there would: the next run finds the files as wanted, and still restarts."""
    from mmdeploy import pending

    monkeypatch.setattr(pending, "DIR", str(site.tmp / "pending"))
    monkeypatch.setattr(pending, "FACT", f"ls -1 {site.tmp / 'pending'} 2>/dev/null || true")
    report, _ = site("apply", [Files(site.files, fail_on=("app1",))])
    assert report.failed and not (site.files / "app1" / "restarts").exists()
    assert (site.files / "db1" / "restarts").read_text() == "restart\n"
    again, out = site("apply")
    assert "app1         files       ~ handler restart: run" in out
    assert (site.files / "app1" / "restarts").read_text() == "restart\n"
    assert (site.files / "db1" / "restarts").read_text() == "restart\n"  # nothing pending there
    third, _ = site("apply")
    assert third.changed == 0 and (site.files / "app1" / "restarts").read_text() == "restart\n"


def test_warnings_come_first_in_the_output_and_the_report(site):
    """Release warnings (issue #15) are printed before any step, copied to the run log, and
    returned in the report so API users see them."""
    warning = "Mattermost 10.5.1 is a known-bad patch: bundles Jira plugin v4.2.0"
    report, out = site("plan", warnings=[warning])
    assert report.warnings == [warning]
    lines = out.splitlines()
    assert lines[0] == f"warning: {warning}"
    assert any("would create" in line for line in lines[1:])
    log = next((site.tmp / "runs").iterdir()) / "output.log"
    assert log.read_text().splitlines()[0] == f"warning: {warning}"
    assert site("plan")[0].warnings == []


class Found(Topology):
    """What prepare() read on the hosts is worth a warning (a backup repository holding
    another cluster's backups)."""

    name = "found"

    def found_warnings(self, prepared):
        return [f"{len(prepared)} hosts answered"]


def test_warnings_found_on_the_hosts_are_printed_after_the_summary_and_returned(site):
    report, out = site("plan", [Found(site.files)], warnings=["before"])
    assert report.warnings == ["before", "3 hosts answered"]
    lines = out.splitlines()
    assert lines[0] == "warning: before" and lines[-1] == "warning: 3 hosts answered"
    assert lines.count("warning: 3 hosts answered") == 2  # when found, and where it is read
    assert "warning: before" not in lines[1:]


def test_run_warnings_once_per_version_from_the_selected_components(write_inventory):
    """api.run_warnings asks the selected components: Mattermost's are releases.warnings for
    each distinct version its hosts deploy (host vars may differ), each said once."""
    from datetime import date

    import mmdeploy
    from mmdeploy import releases

    path = write_inventory(
        SINGLE.replace("    roles: [proxy]\n", "    roles: [proxy]\n    vars: {mattermost: {version: 11.8.5}}\n")
    )
    inv = inventory.load(path, ["mattermost.version=10.5.1"])  # --set wins over host vars: one version
    day = date(2026, 11, 29)
    found = mmdeploy.run_warnings(inv, today=day)
    assert found == releases.warnings("10.5.1", day)
    assert len(found) == 2 and mmdeploy.run_warnings(inv, only=["base"], today=day) == []
    mixed = inventory.load(
        write_inventory(
            """\
pattern: single
hosts:
  - {name: proxy1, address: 192.0.2.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.2, roles: [app, monitoring, db]}
  - {name: app2, address: 192.0.2.3, roles: [app], vars: {mattermost: {version: 11.8.5}}}
  - {name: job1, address: 192.0.2.4, roles: [jobserver], vars: {mattermost: {version: 11.8.5}}}
""",
            "mixed.yml",
        )
    )
    later = date(2027, 5, 1)
    assert mmdeploy.run_warnings(mixed, today=day) == releases.warnings("11.8.5", day)  # the default is fine
    assert mmdeploy.run_warnings(mixed, today=later) == releases.warnings(
        releases.DEFAULT_VERSION, later
    ) + releases.warnings("11.8.5", later)


def test_verify_reports_info_and_warnings_as_passing(write_inventory, monkeypatch):
    """A check may pass with a line worth reading (Info: the running version) or a warning
    (Warn: a feature inactive without a license); only a problem fails, and a check that
    raises fails with the reason."""
    import mmdeploy
    from mmdeploy import registry as registry_module
    from mmdeploy.component import Check, Info, Warn

    class Checked(Component):
        name = "checked"

        def checks(self, inv):
            def boom():
                raise RuntimeError("no route to host")

            return [
                Check("version", lambda: Info("Mattermost 11.7.15 (11.7 ESR)")),
                Check("license", lambda: Warn("no license: cluster mode inactive")),
                Check("plain", lambda: None),
                Check("broken", lambda: "app2 not in the cluster"),
                Check("raises", boom),
            ]

    class Registry:
        secrets: dict = {}

        def by_name(self, names):
            return [Checked()]

    inv = inventory.load(write_inventory(SINGLE))
    monkeypatch.setattr(registry_module, "registry", lambda: Registry())
    monkeypatch.setattr(api, "_unreachable", lambda inv, redact: {})  # every host answers
    out = io.StringIO()
    results = mmdeploy.verify(inv, out=out)
    assert out.getvalue().splitlines() == [
        "ok   version: Mattermost 11.7.15 (11.7 ESR)",
        "warn license: no license: cluster mode inactive",
        "ok   plain",
        "FAIL broken: app2 not in the cluster",
        "FAIL raises: RuntimeError: no route to host",
    ]
    assert [(r.ok, r.warning) for r in results] == [
        (True, False),
        (True, True),
        (True, False),
        (False, False),
        (False, False),
    ]
    assert results[0].detail == "Mattermost 11.7.15 (11.7 ESR)" and results[0].problem is None


class Primary(Component):
    """On db1 only: writes the state another host's component reads (a primary's role)."""

    name = "primary"

    def __init__(self, state):
        self.state = state

    def hosts(self, inv):
        return [h for h in inv.hosts if h.name == "db1"]

    def steps(self, ctx):
        return [File(str(self.state), "promoted\n", owner=ME, group=ME)]


class Follower(Component):
    """On app1, after `primary`: its check reads what db1's step wrote (a replica following)."""

    name = "follower"
    after = ("primary",)

    def __init__(self, state, seen):
        self.state, self.seen = state, seen

    def hosts(self, inv):
        return [h for h in inv.hosts if h.name == "app1"]

    def steps(self, ctx):
        return [_Reads(str(self.state), self.seen)]


class _Reads(Step):
    name = "read the primary's state"

    def __init__(self, path, seen):
        self.path, self.seen = path, seen

    def facts(self):
        return [f"cat {self.path} 2>/dev/null || echo none"]

    def check(self, facts):
        self.seen.append(facts[self.facts()[0]].out.strip())
        return None


def test_a_noop_run_reads_every_components_facts_in_one_round_trip_per_host(site):
    """_Prefetch: the facts of both components are read ahead, together."""
    components = [Files(site.files), After(site.files)]
    site("apply", components)
    again, _ = site("apply", components)
    assert again.changed == 0
    assert again.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}  # connect facts + one batch
    plan, _ = site("plan", components)
    assert plan.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}


def test_a_change_on_one_host_is_seen_by_another_hosts_later_component(site):
    """The facts read ahead are dropped at the first change: app1's follower, after db1's
    primary changed its state, reads the new state, not the one read before the run."""
    state, seen = site.tmp / "state", []
    components = [Primary(state), Follower(state, seen)]
    report, _ = site("apply", components)
    assert report.changed == 1 and seen == ["promoted"]
    again, _ = site("apply", components)
    assert again.changed == 0 and seen == ["promoted", "promoted"]
    assert again.round_trips["app1"] == 2


def test_verify_reports_a_down_host_once_and_the_tier_counts_the_others(write_inventory, monkeypatch):
    """A host without an SSH answer is reported once, as down (a warning naming the roles
    no other host serves); its own checks are not run; a tier check sees it in
    down_hosts() and passes on the others; verify passes, and --json lists it in `down`."""
    import mmdeploy
    from mmdeploy import jsonout
    from mmdeploy import registry as registry_module
    from mmdeploy.component import Check, down_hosts, live, without_down

    ran = []
    inv = inventory.load(write_inventory(SINGLE))
    app = inv.with_role("app")[0].name

    class Tiered(Component):
        name = "tiered"

        def checks(self, inv):
            apps = inv.with_role("app")
            answering = [h.name for h in live(apps)]

            def own(name):
                return lambda: ran.append(name)

            return [
                *(Check(f"answers on {h.name}", own(h.name), h.name) for h in inv.hosts),
                Check("the tier", lambda: without_down(f"{len(answering)} of {len(apps)} in the cluster", apps)),
                Check("seen down", lambda: None if down_hosts() == {app} else f"down_hosts() is {down_hosts()}"),
            ]

    class Registry:
        secrets: dict = {}

        def by_name(self, names):
            return [Tiered()]

    monkeypatch.setattr(registry_module, "registry", lambda: Registry())
    monkeypatch.setattr(api, "_unreachable", lambda inv, redact: {app: "no route to host"})
    out = io.StringIO()
    results = mmdeploy.verify(inv, out=out)
    lines = out.getvalue().splitlines()
    roles = ", ".join(inv.host(app).roles)
    assert lines[0] == f"warn host {app} ({roles}): DOWN: no route to host; no other host serves {roles}"
    assert f"warn answers on {app}: not run: host down" in lines
    assert app not in ran and sorted(ran) == sorted(h.name for h in inv.hosts if h.name != app)
    assert f"warn the tier: degraded while {app} is down: 0 of 1 in the cluster" in lines
    # down_hosts() holds while verify builds and runs the checks, and only then.
    assert "ok   seen down" in lines and down_hosts() == frozenset()
    assert all(r.ok for r in results) and [r.down for r in results if r.down] == [app]
    assert jsonout.verify(results, inv)["down"] == [app]


def test_a_tier_problem_with_every_host_up_stays_a_failure():
    from mmdeploy.component import Warn, hosts_down, without_down

    class H:
        def __init__(self, name):
            self.name = name

    tier = [H("search1"), H("search2")]
    assert without_down("status red", tier) == "status red" and not isinstance(without_down("x", tier), Warn)
    with hosts_down(frozenset({"search2"})):
        assert isinstance(without_down("status yellow", tier), Warn)
        assert without_down(None, tier) is None


class Served(Component):
    """A 'server' (a file) on the hosts the test names; retire() removes it elsewhere."""

    name = "served"

    def __init__(self, root, on):
        self.root, self.on = root, on

    def hosts(self, inv):
        return [h for h in inv.hosts if h.name in self.on]

    def steps(self, ctx):
        return [File(f"{self.root}/{ctx.host.name}/server", "running\n", owner=ME, group=ME)]

    def retire(self, ctx):
        path = f"{self.root}/{ctx.host.name}/server"
        return [Command(f"stop the server on {ctx.host.name}", f"rm {path}", unless=f"test ! -e {path}")]


def test_a_host_the_layout_no_longer_places_a_server_on_retires_it(site):
    """A layout change (growing multi into cluster moves the job server's tiebreakers to
    new hosts): the host that no longer gets the server runs the component's retire()
    steps, in the component's turn; elsewhere they find nothing to do, from the facts
    read ahead (a no-op run keeps one round trip per host)."""
    for host in ("proxy1", "app1", "db1"):
        (site.files / host).mkdir()
    first, _ = site("apply", [Served(site.files, {"app1", "db1"})])
    assert first.changed == 2 and (site.files / "db1" / "server").exists()
    grown, out = site("apply", [Served(site.files, {"app1"})])
    assert grown.changed == 1 and not (site.files / "db1" / "server").exists()
    assert "db1          served      ~ stop the server on db1" in out
    assert (site.files / "app1" / "server").exists()  # its own host keeps it
    again, _ = site("apply", [Served(site.files, {"app1"})])
    assert again.changed == 0 and again.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}


def test_a_retiring_component_with_no_host_this_run_costs_no_round_trip_of_its_own(site):
    """A component that retires servers elsewhere but has no host in this layout (the single
    pattern keeps SeaweedFS and OpenSearch off every host): its retire checks are read with
    every other fact, ahead, not in a round trip of their own on every host. The single bed's
    no-op went from 41 round trips to 16 with this."""
    for host in ("proxy1", "app1", "db1"):
        (site.files / host).mkdir()
    components = [Files(site.files), Served(site.files, set())]
    first, _ = site("apply", components)
    assert not first.failed
    again, _ = site("apply", components)
    assert again.changed == 0 and again.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}
    plan, _ = site("plan", components)
    assert plan.changed == 0 and plan.round_trips == {"proxy1": 2, "app1": 2, "db1": 2}


class Installs(Stamp):
    """Stamp, plus a step that 'installs' `packages` (tmp/<host>.<name>.installed), which a
    pipelined run may fetch ahead (Step.downloads, as Packages' does)."""

    def __init__(self, name, root, on, packages, after=()):
        super().__init__(name, root, on, after=after)
        self.packages = packages

    def steps(self, ctx):
        done = self.root / f"{ctx.host.name}.{self.name}.installed"
        packages = self.packages

        class Install(Command):
            def downloads(self, change):
                return list(packages)

        return [Install("install", f"touch {done}", unless=f"test -e {done}"), *super().steps(ctx)]


def test_a_host_fetches_its_later_packages_ahead_once_apt_is_set_up(site, monkeypatch):
    """After the component that sets up apt (base) has run on a host, the run starts there
    the download of what the host's later components will install (ops.apt), at once and
    in their order, but the next one's (its install starts at once); nothing when there is
    nothing to install, and never in plan."""
    started = []  # (packages, when) for each download started
    monkeypatch.setattr(
        runner,
        "fetch_ahead_script",
        lambda groups: started.append((groups, time.monotonic())) or "true",
    )
    apt = Stamp("apt", site.tmp, {"db1", "app1"}, seconds=0.3)
    apt.sets_up_apt = True
    firewall = Installs("firewall", site.tmp, {"db1", "app1"}, ["nftables"], after=("apt",))
    server = Installs("server", site.tmp, {"db1"}, ["postgresql-15", "curl"], after=("firewall",))
    app = Installs("app", site.tmp, {"db1", "app1"}, ["jq", "curl"], after=("server",))  # waits for db1

    site("plan", [apt, firewall, server, app])
    assert started == []
    report, out = site("apply", [apt, firewall, server, app])
    assert not report.failed
    assert report.hosts["db1"].fetched_ahead == ["postgresql-15", "curl", "jq"]
    assert report.hosts["app1"].fetched_ahead == ["jq", "curl"]
    # Each package in the first component that installs it: db1 fetches curl once.
    assert sorted(g for g, _ in started) == [[["jq", "curl"]], [["postgresql-15", "curl"], ["jq"]]]
    for groups, when in started:
        host = "db1" if len(groups) == 2 else "app1"
        timeline = {name: (t0, t1) for name, t0, t1 in report.hosts[host].timeline}
        assert timeline["apt"][1] <= when <= timeline["firewall"][0]  # after apt, before the next one
    assert "db1          -             fetching 3 packages ahead: postgresql-15 curl jq" in out
    assert "app1         -             fetching 2 packages ahead: jq curl" in out

    started.clear()
    again, _ = site("apply", [apt, firewall, server, app])
    assert again.changed == 7 and started == []  # the stamps ran again; nothing to install
