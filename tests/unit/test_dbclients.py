"""Re-pointing the database's clients after a failover (dbclients.repoint), with real
scripts run locally: every follows_db component is re-applied on its hosts on the topology
the failover decided (prepare() is not run again: it would probe the dead primary), a
server that cannot be reached does not stop the others, and the report names what is left
to do."""

import getpass

import pytest

from mmdeploy import dbclients, inventory, runner
from mmdeploy.component import Component
from mmdeploy.dbtier import NodeState, Topology
from mmdeploy.ops import File
from mmdeploy.registry import build, registry

from .conftest import SINGLE
from .localremote import LocalRemote

ME = getpass.getuser()


class Client(Component):
    """Writes the primary it is given into a file per host, like a DataSource."""

    name = "client"
    roles = ("app", "jobserver")
    owns_roles = tuple(registry().roles[r] for r in roles)  # the real Mattermost component's, left out
    follows_db = True

    def __init__(self, root):
        self.root = root
        self.prepared = 0

    def prepare(self, inventory, view):
        self.prepared += 1
        raise AssertionError("a re-point must not probe the database again")

    def after_failover(self, topology):
        return ("failover", topology)

    def steps(self, ctx):
        mode, topology = ctx.shared
        return [
            File(f"{self.root}/{ctx.host.name}.conf", f"primary={topology.primary.name} ({mode})\n", owner=ME, group=ME)
        ]


class NotAClient(Component):
    name = "not-a-client"
    roles = ("*",)

    def steps(self, ctx):
        raise AssertionError("only follows_db components are re-applied")


@pytest.fixture
def site(tmp_path, write_inventory, monkeypatch):
    import mmdeploy.registry as registry_module

    text = SINGLE + "  - name: job1\n    address: 192.0.2.20\n    roles: [jobserver]\n"
    inv = inventory.load(write_inventory(text))
    client = Client(tmp_path)
    real = registry_module.registry()
    keep = [c for c in real.components if not c.name.startswith("mattermost")]  # the real client, out
    fake = build([*keep, client, NotAClient()])
    monkeypatch.setattr(registry_module, "registry", lambda: fake)
    unreachable = set()
    monkeypatch.setattr(
        runner,
        "Remote",
        lambda host, redact, log_path: LocalRemote(host, redact, log_path, fail_connect=host.name in unreachable),
    )
    monkeypatch.setenv("MMDEPLOY_RUN_DIR", str(tmp_path / "runs"))
    db = inv.with_role("db")
    states = {h.name: NodeState(h, True, True, "primary", True) for h in db}
    topology = Topology(db, states, db[0], "writable")
    return inv, client, topology, unreachable, tmp_path


def test_every_client_follows_the_new_primary_without_a_second_look(site):
    inv, client, topology, _, root = site
    lines = []
    report = dbclients.repoint(inv, topology, lines.append)
    assert report.ok and client.prepared == 0
    assert {r.host for r in report.results} == {"app1", "job1"}
    for name in ("app1", "job1"):
        assert (root / f"{name}.conf").read_text() == f"primary={topology.primary.name} (failover)\n"
    assert any("re-pointing client on app1, job1" in line for line in lines)
    assert lines[-1].endswith("done")


def test_an_unreachable_server_does_not_stop_the_others_and_is_named(site):
    inv, _, topology, unreachable, root = site
    unreachable.add("job1")
    lines = []
    report = dbclients.repoint(inv, topology, lines.append)
    assert not report.ok
    assert (root / "app1.conf").exists() and not (root / "job1.conf").exists()
    (todo,) = report.left_to_do
    assert todo.startswith("job1: ") and "inv deploy --only client --limit job1" in todo
    assert any("job1: NOT re-pointed" in line for line in lines)
    assert "1 client(s) left to re-point" in lines[-1]


@pytest.fixture
def multi_site(tmp_path, write_inventory, monkeypatch):
    """Two app servers behind two proxies, the scripts run locally; NGINX's reload replaced
    by one that records which proxy ran it (proxy2 cannot be reached)."""
    import mmdeploy.registry as registry_module
    from mmdeploy import fleet
    from mmdeploy.components import nginx

    text = SINGLE.replace(
        "  - name: app1\n", "  - name: proxy2\n    address: 192.0.2.31\n    roles: [proxy]\n  - name: app1\n"
    )
    text += "  - name: app2\n    address: 192.0.2.22\n    roles: [app]\n"
    inv = inventory.load(write_inventory(text))
    real = registry_module.registry()
    keep = [c for c in real.components if not c.name.startswith("mattermost")]
    fake = build([*keep, Client(tmp_path)])
    monkeypatch.setattr(registry_module, "registry", lambda: fake)
    monkeypatch.setattr(runner, "Remote", lambda host, redact, log_path: LocalRemote(host, redact, log_path))
    monkeypatch.setattr(
        fleet,
        "Remote",
        lambda host, redact, log_path: LocalRemote(host, redact, log_path, fail_connect=host.name == "proxy2"),
    )
    monkeypatch.setattr(nginx, "RELOAD_SCRIPT", "true")  # the real one needs NGINX
    monkeypatch.setenv("MMDEPLOY_RUN_DIR", str(tmp_path / "runs"))
    db = inv.with_role("db")
    states = {h.name: NodeState(h, True, True, "primary", True) for h in db}
    return inv, Topology(db, states, db[0], "writable")


def test_with_several_app_servers_the_proxies_forget_their_failure_marks(multi_site):
    inv, topology = multi_site
    assert [h.name for h in inv.with_role("proxy")] == ["proxy1", "proxy2"] and len(inv.with_role("app")) == 2
    lines = []
    report = dbclients.repoint(inv, topology, lines.append)
    assert report.ok  # a proxy that cannot reload does not make the re-point fail
    assert report.proxies["proxy1"] == "reloaded"
    assert "cannot connect" in report.proxies["proxy2"]
    assert any("proxy1: NGINX reloaded" in line for line in lines)
    assert any("proxy2: NGINX not reloaded" in line and "after fail_timeout" in line for line in lines)
    # The marks are forgotten only once every server is back: after the re-point lines.
    reloaded = next(i for i, line in enumerate(lines) if "NGINX reloaded" in line)
    assert all("re-pointed" not in line for line in lines[reloaded:])


def test_nothing_restarted_no_reload(multi_site):
    inv, topology = multi_site
    dbclients.repoint(inv, topology, lambda _: None)  # the files are written: restarted
    lines = []
    report = dbclients.repoint(inv, topology, lines.append)  # already pointing there
    assert report.proxies == {} and not any("NGINX" in line for line in lines)
