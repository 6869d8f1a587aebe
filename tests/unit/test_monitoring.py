"""Monitoring: scrape targets generated from the inventory, the exporters' credentials kept
out of facts and diffs, Grafana's provisioning files and dashboards, and the verify check
that reads Prometheus's targets API (served here by a local fake)."""

import http.server
import json
import threading

import pytest
import yaml

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components.grafana import DATASOURCE, Grafana, dashboard_url, fetch_dashboard, provisioned
from mmdeploy.components.prometheus import Prometheus, scrape_jobs, seconds, targets_up
from mmdeploy.facts import Fact
from mmdeploy.ops import File
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.secrets import Redactor, Secrets
from mmdeploy.components.prometheus import GrafanaDashboard
from mmdeploy.dbtier import NodeState, Topology
from mmdeploy.registry import registry
from mmdeploy.dbtier.component import DB_MONITORING_PASSWORD

from .hostfacts import HostFacts

SITE = """\
pattern: single
settings:
  domain: chat.example.com
hosts:
  - {name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.2, private_address: 10.0.0.2, roles: [app]}
  - {name: job1, address: 192.0.2.3, private_address: 10.0.0.3, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.4, private_address: 10.0.0.4, roles: [db]}
  - {name: db2, address: 192.0.2.5, private_address: 10.0.0.5, roles: [db]}
"""


@pytest.fixture
def site(write_inventory, tmp_path):
    def load(*overrides, host="job1"):
        inv = inventory.load(write_inventory(SITE), overrides)
        return Context(inv, inv.host(host), Secrets(tmp_path / "s.yml", Redactor()), HostFacts())

    return load


class Exporters:
    """The exporter steps of every component on a host (each exporter now belongs to the
    service it watches), on a fresh DB topology."""

    NAMES = ("node-exporter", "nginx", "postgresql-replication", "mysql-replication")

    def steps(self, ctx):
        steps = []
        for name in self.NAMES:
            component = registry().component(name)
            if ctx.host.name not in [h.name for h in component.hosts(ctx.inventory)]:
                continue
            db = ctx.inventory.with_role("db")
            ctx.shared = Topology(db, {h.name: NodeState(h, True, False, "unknown", False) for h in db}, db[0], "fresh")
            steps += component.steps(ctx)
        return steps


def rendered_config(ctx) -> dict:
    (step,) = [s for s in Prometheus().steps(ctx) if isinstance(s, File) and s.path == "/etc/prometheus/prometheus.yml"]
    assert step.validate == "promtool check config {}" and step.notify == ("reload",)
    return yaml.safe_load(step.content)


def targets(config: dict) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }


def test_scrape_targets_from_the_inventory(site):
    config = rendered_config(site())
    assert config["global"]["scrape_interval"] == "15s"
    assert targets(config) == {
        "prometheus": ["10.0.0.3:9090"],  # itself, where it listens
        "mattermost": ["10.0.0.2:8067", "10.0.0.3:8067"],
        "node": ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100", "10.0.0.4:9100", "10.0.0.5:9100"],
        "postgres": ["10.0.0.4:9187", "10.0.0.5:9187"],
        "nginx": ["10.0.0.1:9113"],
    }
    node = next(j for j in config["scrape_configs"] if j["job_name"] == "node")
    assert [sc["labels"]["host"] for sc in node["static_configs"]] == ["proxy1", "app1", "job1", "db1", "db2"]


def test_mysql_engine_and_settings_change_the_targets(site):
    config = rendered_config(
        site(
            "database.engine=mysql",
            "mattermost.version=10.11.23",
            "mattermost.metrics_port=9999",
            "monitoring.scrape_interval=1m",
        )
    )
    jobs = targets(config)
    assert "postgres" not in jobs and jobs["mysql"] == ["10.0.0.4:9104", "10.0.0.5:9104"]
    assert jobs["mattermost"] == ["10.0.0.2:9999", "10.0.0.3:9999"]
    assert config["global"]["scrape_interval"] == "1m" and seconds("1m") == 60


def test_all_in_one_host_is_scraped_once_per_job(write_inventory):
    inv = inventory.load(
        write_inventory(
            "pattern: single\nhosts:\n  - {name: one, address: 192.0.2.9, "
            "roles: [proxy, app, jobserver, db, monitoring]}\n"
        )
    )
    assert {j.name: [t.address for t in j.targets] for j in scrape_jobs(inv, inv.host("one"))} == {
        "prometheus": ["192.0.2.9:9090"],
        "mattermost": ["192.0.2.9:8067"],
        "node": ["192.0.2.9:9100"],
        "postgres": ["192.0.2.9:9187"],
        "nginx": ["192.0.2.9:9113"],
    }


def test_exporters_per_role(site):
    names = {h: [s.name for s in Exporters().steps(site(host=h))] for h in ("proxy1", "app1", "db1")}
    assert "packages prometheus-node-exporter" in names["app1"]
    assert not any("postgres" in n or "nginx" in n for n in names["app1"])
    assert "packages prometheus-nginx-exporter" in names["proxy1"]
    assert "service prometheus-postgres-exporter" in names["db1"]
    mysql = [
        s.name for s in Exporters().steps(site("database.engine=mysql", "mattermost.version=10.11.23", host="db1"))
    ]
    assert "packages prometheus-mysqld-exporter" in mysql and not any("postgres" in n for n in mysql)


def test_db_exporter_credentials_stay_out_of_facts_diffs_and_commands(site):
    ctx = site(host="db1")
    password = ctx.secrets.get(DB_MONITORING_PASSWORD)
    steps = Exporters().steps(ctx)
    env = next(s for s in steps if getattr(s, "path", "") == "/etc/default/prometheus-postgres-exporter")
    assert isinstance(env, SecretFile) and (env.owner, env.group, env.mode) == ("prometheus", "prometheus", "0640")
    # In place before the package starts the exporter.
    names = [s.name for s in steps]
    assert names.index("user prometheus") < names.index(env.name) < names.index("packages prometheus-postgres-exporter")
    # The password comes from a libpq password file (0600, the exporter's user), not the DSN.
    assert "postgresql://mmmonitor@127.0.0.1:5432/postgres" in env.content.decode()
    assert password not in env.content.decode()
    passfile = next(s for s in steps if getattr(s, "path", "") == "/etc/default/prometheus-postgres-exporter.pgpass")
    assert isinstance(passfile, SecretFile) and (passfile.owner, passfile.mode) == ("prometheus", "0600")
    assert passfile.content.decode() == f"*:*:*:mmmonitor:{password}\n"
    assert f'PGPASSFILE="{passfile.path}"' in env.content.decode()
    assert (
        names.index("user prometheus")
        < names.index(passfile.name)
        < names.index("packages prometheus-postgres-exporter")
    )
    (probe,) = env.facts()
    change = env.check({probe: Fact(0, "")})
    assert password not in change.diff + change.summary + probe
    for step in steps:
        assert all(password not in f for f in step.facts())
        assert password not in getattr(step, "script", "")


def test_exporters_and_prometheus_listen_on_the_private_address(site):
    """Not on every interface (the packages' default): each exporter's and Prometheus's
    /etc/default file gives --web.listen-address, in place before the package starts it,
    and a change restarts the service (a reload does not re-bind)."""

    def listen(steps, unit):
        names = [s.name for s in steps]
        env = next(s for s in steps if getattr(s, "path", "") == f"/etc/default/{unit}")
        assert names.index(env.name) < names.index(f"packages {unit}") and env.notify == (f"restart {unit}",)
        return env.content.decode()

    db = Exporters().steps(site(host="db1"))
    assert "--web.listen-address=10.0.0.4:9100" in listen(db, "prometheus-node-exporter")
    assert "--web.listen-address=10.0.0.4:9187" in listen(db, "prometheus-postgres-exporter")
    mysql = Exporters().steps(site("database.engine=mysql", "mattermost.version=10.11.23", host="db1"))
    assert "--web.listen-address=10.0.0.4:9104" in listen(mysql, "prometheus-mysqld-exporter")
    proxy = Exporters().steps(site(host="proxy1"))
    assert "-web.listen-address=10.0.0.1:9113" in listen(proxy, "prometheus-nginx-exporter")
    job = site(host="job1")
    assert 'ARGS="--web.listen-address=10.0.0.3:9090"' in listen(Prometheus().steps(job), "prometheus")
    assert set(Prometheus().handlers(job)) == {"reload", "restart prometheus"}
    assert "http://10.0.0.3:9090/-/ready" in Prometheus().handlers(job)["reload"].script


def test_nginx_exporter_reads_the_status_port(site):
    steps = Exporters().steps(site("nginx.status_port=8123", host="proxy1"))
    env = next(s for s in steps if getattr(s, "path", "") == "/etc/default/prometheus-nginx-exporter")
    assert (
        'ARGS="-nginx.scrape-uri=http://127.0.0.1:8123/stub_status -nginx.retries=10 -web.listen-address=10.0.0.1:9113"'
        in env.content.decode()
    )


# --- Grafana -------------------------------------------------------------------------------

BOARD = {
    "__inputs": [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}],
    "id": 7,
    "title": "Mattermost Performance",
    "panels": [
        {"datasource": "${DS_PROMETHEUS}", "targets": [{"expr": "mattermost_http_requests_total"}]},
        {"datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}},
    ],
}


@pytest.fixture
def boards(tmp_path):
    """Local copies of the three dashboards (grafana.com is not reachable from tests)."""
    paths = {}
    for i in (15582, 2539, 2545):
        paths[i] = tmp_path / f"{i}.json"
        paths[i].write_text(json.dumps({**BOARD, "title": f"board {i}"}))
    return paths


def test_dashboard_urls_pin_a_grafana_com_revision(tmp_path):
    assert (
        dashboard_url(GrafanaDashboard(id=15582, revision=4))
        == "https://grafana.com/api/dashboards/15582/revisions/4/download"
    )
    assert (
        dashboard_url(GrafanaDashboard(id=2539)) == "https://grafana.com/api/dashboards/2539/revisions/latest/download"
    )
    mirror = tmp_path / "2539.json"
    mirror.write_text("{}")  # a local mirror must exist when the inventory is loaded
    assert dashboard_url(GrafanaDashboard(id=2539, url=str(mirror))) == str(mirror)


def test_dashboard_is_made_loadable_from_a_file():
    board = json.loads(provisioned(json.dumps(BOARD).encode()))
    assert "__inputs" not in board and board["id"] is None
    assert board["panels"][0]["datasource"] == DATASOURCE
    assert board["panels"][1]["datasource"] == {"type": "prometheus", "uid": DATASOURCE}


def test_dashboard_fetch_is_cached_and_checked(tmp_path, boards):
    import hashlib

    from mmdeploy.artifacts import ArtifactError

    cache = tmp_path / "cache"
    unpinned = GrafanaDashboard(id=2539, url=str(boards[2539]))
    assert json.loads(fetch_dashboard(unpinned, cache))["title"] == "board 2539"
    boards[2539].write_text("changed")
    assert json.loads(fetch_dashboard(unpinned, cache))["title"] == "board 2539"  # the cached copy
    good = hashlib.sha256(boards[2545].read_bytes()).hexdigest()
    assert fetch_dashboard(GrafanaDashboard(id=2545, revision=3, url=str(boards[2545]), sha256=good), cache)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch_dashboard(GrafanaDashboard(id=2545, revision=4, url=str(boards[2545]), sha256="0" * 64), cache)


def test_grafana_provisioning(site, boards, tmp_path, monkeypatch):
    import mmdeploy.components.grafana as grafana

    monkeypatch.setattr(grafana, "CACHE", tmp_path / "cache")
    dashboards = "[" + ", ".join(f"{{id: {i}, url: '{p}'}}" for i, p in boards.items()) + "]"
    ctx = site(f"monitoring.dashboards={dashboards}")
    steps = {getattr(s, "path", s.name): s for s in Grafana().steps(ctx)}
    source = steps["/etc/apt/sources.list.d/grafana.list"].content.decode()
    assert "deb [signed-by=/etc/apt/keyrings/grafana.gpg] https://apt.grafana.com stable main" in source
    assert "packages grafana" in steps
    ds = yaml.safe_load(steps["/etc/grafana/provisioning/datasources/mmdeploy.yaml"].content)
    assert ds["apiVersion"] == 1
    assert ds["datasources"] == [
        {
            "name": DATASOURCE,
            "uid": DATASOURCE,
            "type": "prometheus",
            "access": "proxy",
            "url": "http://10.0.0.3:9090",  # this host's Prometheus, on its private address
            "isDefault": True,
            "editable": False,
        }
    ]
    provider = yaml.safe_load(steps["/etc/grafana/provisioning/dashboards/mmdeploy.yaml"].content)
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["options"]["path"] == "/var/lib/grafana/dashboards/mattermost"
    for i in (15582, 2539, 2545):
        board = json.loads(steps[f"/var/lib/grafana/dashboards/mattermost/{i}.json"].content)
        assert board["title"] == f"board {i}" and board["panels"][0]["datasource"] == DATASOURCE
    assert steps["/etc/grafana/provisioning/datasources/mmdeploy.yaml"].notify == ("restart",)


def test_grafana_only_where_enabled(site):
    ctx = site("monitoring.grafana=false")
    assert Grafana().hosts(ctx.inventory) == [] and Grafana().checks(ctx.inventory) == []
    assert [h.name for h in Grafana().hosts(site().inventory)] == ["job1"]


# --- verify: Prometheus's targets API -----------------------------------------------------


@pytest.fixture
def fake_prometheus():
    """A loopback HTTP server answering /api/v1/targets with the given targets."""
    state = {"targets": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "success", "data": {"activeTargets": state["targets"]}}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1/targets?state=active", state
    server.shutdown()


def target(job, instance, health, error=""):
    return {"labels": {"job": job, "instance": instance}, "health": health, "lastError": error}


def test_targets_check_names_every_down_target(fake_prometheus):
    url, state = fake_prometheus
    state["targets"] = [
        target("node", "10.0.0.1:9100", "up"),
        target("mattermost", "10.0.0.2:8067", "down", "connection refused"),
    ]
    assert targets_up(url, wait=0)() == "mattermost 10.0.0.2:8067 down (connection refused)"
    state["targets"] = [target("node", "10.0.0.1:9100", "up")]
    assert targets_up(url, wait=0)() is None
    state["targets"] = []
    assert targets_up(url, wait=0)() == "no targets"


def test_targets_of_a_host_found_down_are_not_counted(fake_prometheus):
    url, state = fake_prometheus
    dead = target("mattermost", "10.0.0.2:8067", "down", "no route to host")
    dead["labels"]["host"] = "app2"
    state["targets"] = [target("node", "10.0.0.1:9100", "up"), dead]
    assert targets_up(url, wait=0, gone=frozenset({"app2"}))() is None
    assert "10.0.0.2:8067 down" in targets_up(url, wait=0, gone=frozenset({"app3"}))()


def test_targets_check_waits_for_a_first_scrape(fake_prometheus):
    url, state = fake_prometheus
    state["targets"] = [target("node", "10.0.0.1:9100", "unknown")]
    threading.Timer(0.5, lambda: state.update(targets=[target("node", "10.0.0.1:9100", "up")])).start()
    assert targets_up(url, wait=10)() is None


def test_targets_check_reports_an_unreachable_prometheus():
    assert "127.0.0.1:9" in targets_up("http://127.0.0.1:9/api/v1/targets", wait=0)()
