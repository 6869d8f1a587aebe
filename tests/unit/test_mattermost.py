"""The Mattermost component's logic with fake facts: release URL, config.json keys, units,
job server placement, first admin without a secret on any command line."""

import dataclasses

import pytest

from mmdeploy import inventory, releases
from mmdeploy.facts import Fact
from mmdeploy.component import Context
from mmdeploy.components import mattermost as mm
from mmdeploy.errors import MMDeployError
from mmdeploy.ops import Command, File, JsonSettings, OneAtATime, started_since
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.secrets import Redactor, Secrets
from mmdeploy.dbtier import NodeState, Topology
from mmdeploy.dbtier.component import DB_PASSWORD
from mmdeploy.components.mattermost import ADMIN_PASSWORD

SITE = """\
pattern: single
settings:
  domain: chat.example.com
  mattermost:
    sha256: "{sha}"
    config: {{ServiceSettings: {{EnableCustomEmoji: true}}, TeamSettings: {{MaxUsersPerTeam: 500}}}}
  smtp: {{host: smtp.example.com, username: mailer}}
hosts:
  - {{name: proxy1, address: 192.0.2.1, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.2, private_address: 10.0.0.2, roles: [app]}}
  - {{name: app2, address: 192.0.2.3, private_address: 10.0.0.3, roles: [app]}}
  - {{name: job1, address: 192.0.2.4, roles: [jobserver, monitoring]}}
  - {{name: db1, address: 192.0.2.5, private_address: 10.0.0.5, roles: [db]}}
  - {{name: db2, address: 192.0.2.6, private_address: 10.0.0.6, roles: [db]}}
"""


class FakeFacts:
    """Every probe answers `ok` (a host whose clock chrony may set, unless told otherwise)."""

    def __init__(self, ok=True):
        self.ok = ok

    def get(self, commands):
        return {c: Fact(0 if self.ok else 1, "1700000000" if c == mm.NOW else "") for c in commands}


@pytest.fixture
def site(write_inventory, tmp_path, request):
    inv = inventory.load(write_inventory(SITE.format(sha="a" * 64)), getattr(request, "param", ()))
    secrets = Secrets(tmp_path / "s.yml", Redactor())

    db1, db2 = inv.host("db1"), inv.host("db2")
    states = {"db1": NodeState(db1, True, True, "primary", True), "db2": NodeState(db2, True, True, "replica", False)}

    def ctx(name, facts=None):
        return Context(
            inv,
            inv.host(name),
            secrets,
            facts=facts or FakeFacts(),
            shared=mm.DBView(Topology([db1, db2], states, db1, "writable")),
        )

    ctx.inv, ctx.secrets = inv, secrets
    return ctx


def test_release_url_is_the_official_pattern():
    assert (
        mm.release_url("10.11.4", "enterprise")
        == "https://releases.mattermost.com/10.11.4/mattermost-10.11.4-linux-amd64.tar.gz"
    )
    assert (
        mm.release_url("11.1.0", "team")
        == "https://releases.mattermost.com/11.1.0/mattermost-team-11.1.0-linux-amd64.tar.gz"
    )


def test_artifact_needs_a_checksum(site, write_inventory):
    # The default version is the release table's (issue #15): the current ESR's newest patch.
    assert site.inv.settings.mattermost.version == releases.DEFAULT_VERSION
    assert mm.artifact(site.inv.settings).url == mm.release_url(releases.DEFAULT_VERSION, "enterprise")
    bare = inventory.load(write_inventory(SITE.replace('    sha256: "{sha}"\n', "").format(), "bare.yml"))
    with pytest.raises(MMDeployError, match="settings.mattermost.sha256 is required"):
        mm.artifact(bare.settings)


def test_config_keys(site):
    cfg = mm.config(
        site("app1"), f"{site.inv.host('db1').private_address}:5432", [f"{site.inv.host('db2').private_address}:5432"]
    )
    password = site.secrets.get(DB_PASSWORD)
    assert cfg["SqlSettings"]["DriverName"] == "postgres"
    assert cfg["SqlSettings"]["DataSource"] == (
        f"postgres://mmuser:{password}@10.0.0.5:5432/mattermost?sslmode=disable&connect_timeout=10&binary_parameters=yes"
    )
    assert cfg["SqlSettings"]["DataSourceReplicas"] == [
        cfg["SqlSettings"]["DataSource"].replace("10.0.0.5", "10.0.0.6")
    ]
    assert cfg["ServiceSettings"]["SiteURL"] == "https://chat.example.com"
    assert cfg["ServiceSettings"]["EnableCustomEmoji"] is True  # mattermost.config merged in
    assert cfg["TeamSettings"] == {"RestrictCreationToDomains": "", "MaxUsersPerTeam": 500}
    # Listening on the private address only: the proxies and Prometheus reach it there.
    assert cfg["MetricsSettings"] == {"Enable": True, "ListenAddress": "10.0.0.2:8067"}
    assert cfg["ServiceSettings"]["ListenAddress"] == "10.0.0.2:8065"
    assert cfg["EmailSettings"]["SMTPServer"] == "smtp.example.com" and cfg["EmailSettings"]["EnableSMTPAuth"]
    assert cfg["ClusterSettings"]["Enable"] is True  # two app servers
    # A dedicated job server runs the jobs; the app servers do not.
    assert cfg["JobSettings"] == {"RunJobs": False, "RunScheduler": False}
    job = mm.config(site("job1"), f"{site.inv.host('db1').private_address}:5432", [])
    assert job["JobSettings"] == {"RunJobs": True, "RunScheduler": True}


def test_mysql_datasource(site):
    from mmdeploy.registry import settings_model

    s = settings_model().model_validate({"database": {"engine": "mysql"}})
    # The MySQL driver (go-sql-driver/mysql ParseDSN) does not percent-decode: the password
    # is everything between the first ':' and the last '@' before the last '/', as is.
    dsn = mm.datasource(s, "10.0.0.5:3306", "p@ss/w:%41'\"")
    assert dsn == "mmuser:p@ss/w:%41'\"@tcp(10.0.0.5:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"
    slash = dsn.rfind("/")
    at = dsn.rfind("@", 0, slash)
    assert dsn[dsn.index(":") + 1 : at] == "p@ss/w:%41'\""


def test_units_and_first_admin(site):
    # The first admin is a component of its own, after Mattermost runs, on the first app server.
    app1 = mm.Mattermost().steps(site("app1")) + mm.MattermostAdmin().steps(site("app1"))
    names = [s.name for s in app1]
    assert "file /etc/systemd/system/mattermost.service" in names and "service mattermost" in names
    assert "command first admin sysadmin" not in names and "first admin sysadmin" in names
    assert [h.name for h in mm.MattermostAdmin().hosts(site.inv)] == ["app1"]
    job = [s.name for s in mm.Mattermost().steps(site("job1"))]
    assert "service mattermost-jobserver" in job and "service mattermost" not in job
    password = site.secrets.get(ADMIN_PASSWORD)
    for step in app1:
        if isinstance(step, Command):
            assert password not in step.script and password not in (step.unless or "")
    config = next(s for s in app1 if isinstance(s, JsonSettings))
    assert (config.path, config.mode, config.owner) == ("/opt/mattermost/config/config.json", "0600", "mattermost")


def test_the_release_is_unpacked_by_a_component_that_waits_for_no_database(site):
    """mattermost-release (packages, user, the unpacked release) needs no other host, so a
    cold deploy fetches it while the database comes up; the mattermost component, which
    waits for the database, activates it. `--only mattermost` brings it along."""
    from mmdeploy.component import cross_host, ordered
    from mmdeploy.registry import registry

    release = [s.name for s in mm.MattermostRelease().steps(site("job1"))]
    assert release[0] == "packages rsync curl jq" and release[-1].startswith("release mattermost ")
    assert mm.MattermostRelease().hosts(site.inv) == mm.Mattermost().hosts(site.inv)  # app and job servers
    names = [s.name for s in mm.Mattermost().steps(site("app1"))]
    assert not any(n.startswith(("release mattermost", "packages rsync", "user ")) for n in names)
    assert names[0] == "directory /opt/mattermost" and names[1].startswith("activate release")
    order = [c.name for c in ordered(registry().by_name(["mattermost"]))]
    assert order == ["mattermost-release", "mattermost"]
    assert registry().component("mattermost").name == "mattermost"
    waits = cross_host(ordered(registry().by_name(None)))
    assert waits["mattermost-release"] == {"base", "firewall"}
    assert "mattermost-release" in waits["mattermost"] and "postgresql" in waits["mattermost"]


def test_unit_file_follows_mattermost_docs(site):
    text = site("app1").render("mattermost/mattermost.service.j2", command="", env_file="", nofile=49152, nproc=None)
    assert "EnvironmentFile" not in text and "LimitNPROC" not in text
    for line in (
        "Type=notify",
        "TimeoutStartSec=3600",
        "KillMode=mixed",
        "Restart=always",
        "LimitNOFILE=49152",
        "User=mattermost",
        "ExecStart=/opt/mattermost/bin/mattermost\n",
    ):
        assert line in text


def test_config_in_database_off_keeps_config_json(site):
    names = [s.name for s in mm.Mattermost().steps(site("app1"))]
    assert "json /opt/mattermost/config/config.json" in names
    assert not any(mm.ETC in n for n in names)
    assert list(mm.Mattermost().handlers(site("app1"))) == ["license", "restart", "restart chrony"]


DB_CONFIG = ["mattermost.config_in_database=true"]


@pytest.mark.parametrize("site", [DB_CONFIG], indirect=True)
def test_config_in_database(site):
    password = site.secrets.get(DB_PASSWORD)
    app1, job1 = mm.Mattermost().steps(site("app1")), mm.Mattermost().steps(site("job1"))
    assert not any(isinstance(s, JsonSettings) for s in app1 + job1)  # the database holds it
    env = next(s for s in app1 if isinstance(s, File) and s.path == mm.ENV_FILE)
    assert isinstance(env, SecretFile) and (env.owner, env.mode) == ("root", "0600") and env.notify == ("restart",)
    dsn = mm.datasource(site.inv.settings, "10.0.0.5:5432", password)
    assert env.content.decode().splitlines() == [
        f'MM_CONFIG="{dsn}"',
        f'MM_SQLSETTINGS_DATASOURCE="{dsn}"',
        'MM_SERVICESETTINGS_ENABLELOCALMODE="true"',
        'MM_JOBSETTINGS_RUNJOBS="false"',
        'MM_JOBSETTINGS_RUNSCHEDULER="false"',
        'MM_CLUSTERSETTINGS_ADVERTISEADDRESS="10.0.0.2"',
        'MM_SERVICESETTINGS_LISTENADDRESS="10.0.0.2:8065"',
        'MM_METRICSSETTINGS_LISTENADDRESS="10.0.0.2:8067"',
    ]
    # Per host in the environment: the shared database config cannot say who runs jobs.
    job_env = next(s for s in job1 if isinstance(s, File) and s.path == mm.ENV_FILE).content.decode()
    assert 'MM_JOBSETTINGS_RUNJOBS="true"' in job_env
    patch = next(s for s in app1 if isinstance(s, File) and s.path == mm.CONFIG_PATCH)
    assert isinstance(patch, SecretFile) and patch.mode == "0600" and patch.notify == ("patch-config",)
    keys = __import__("json").loads(patch.content)
    assert keys["SqlSettings"]["DataSource"] == dsn and "JobSettings" not in keys
    # The shared config names no host: each gossips at its own address from the environment.
    assert "AdvertiseAddress" not in keys["ClusterSettings"] and keys["ClusterSettings"]["Enable"] is True
    assert "ListenAddress" not in keys["ServiceSettings"] and "ListenAddress" not in keys["MetricsSettings"]
    assert keys["ServiceSettings"]["EnableCustomEmoji"] is True
    assert not any(isinstance(s, File) and s.path == mm.CONFIG_PATCH for s in job1)  # no local socket there
    units = [s for s in app1 + job1 if isinstance(s, File) and s.path.startswith("/etc/systemd/system/")]
    assert len(units) == 2 and all(f"EnvironmentFile={mm.ENV_FILE}\n" in u.content.decode() for u in units)
    handler = mm.Mattermost().handlers(site("app1"))["patch-config"]
    patch_at = handler.script.index(f"mmctl --local config patch {mm.CONFIG_PATCH}; then break; fi\n")
    assert handler.script.index("systemctl start mattermost", patch_at) > patch_at  # restarted after the patch
    assert "patch-config" not in mm.Mattermost().handlers(site("job1"))
    # The DSN holds the password: only in the 0600 files, never on a command line.
    for step in app1 + job1 + [handler]:
        if isinstance(step, Command):
            assert password not in step.script and password not in (step.unless or "")


@pytest.mark.parametrize("site", [DB_CONFIG], indirect=True)
def test_a_dedicated_job_server_restarts_after_the_app_servers_stored_a_changed_patch(site):
    """The app servers patch the stored config in the mattermost component's handlers; the
    job server restarts for it in a component after that one: its marker is the patch's
    hash, so a changed patch (or a first deploy) restarts it once the patch is stored."""
    jobs = mm.MattermostJobServerConfig()
    assert [h.name for h in jobs.hosts(site.inv)] == ["job1"] and "mattermost" in jobs.after
    (marker,) = jobs.steps(site("job1"))
    assert marker.path == mm.PATCHED_MARKER and marker.notify == ("restart",) and marker.mode == "0600"
    app_patch = next(
        s for s in mm.Mattermost().steps(site("app1")) if isinstance(s, File) and s.path == mm.CONFIG_PATCH
    )
    import hashlib
    import json

    stored = json.loads(app_patch.content)
    assert marker.content.decode() == hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest() + "\n"
    assert "systemctl start mattermost" in jobs.handlers(site("job1"))["restart"].script
    assert mm.Mattermost().steps(site("job1"))  # the job server's own steps are unchanged by it


def test_without_the_config_in_the_database_no_job_server_restart_after_a_patch(site):
    assert mm.MattermostJobServerConfig().hosts(site.inv) == []


@pytest.mark.parametrize("site", [DB_CONFIG + ["database.engine=mysql", "mattermost.version=10.11.23"]], indirect=True)
def test_config_in_database_mysql_dsn_scheme(site):
    env = next(s for s in mm.Mattermost().steps(site("app1")) if isinstance(s, File) and s.path == mm.ENV_FILE)
    assert env.content.decode().startswith('MM_CONFIG="mysql://mmuser:')


# --- cluster mode and the multi pattern's services ------------------------------------------


def test_cluster_settings_per_host(site):
    app1 = mm.config(site("app1"), site.inv.host("db1"), [])
    app2 = mm.config(site("app2"), site.inv.host("db1"), [])
    job = mm.config(site("job1"), site.inv.host("db1"), [])
    # The same name on every node (derived from the site), each gossiping at its private address.
    for cfg in (app1, app2, job):
        assert cfg["ClusterSettings"]["ClusterName"] == "mmdeploy-chat.example.com"
        assert cfg["ClusterSettings"]["GossipPort"] == 8074 and cfg["ClusterSettings"]["Enable"] is True
    assert app1["ClusterSettings"]["AdvertiseAddress"] == "10.0.0.2"
    assert app2["ClusterSettings"]["AdvertiseAddress"] == "10.0.0.3"
    assert job["ClusterSettings"]["AdvertiseAddress"] == "192.0.2.4"  # no private address: its address
    # Without storage, search or push hosts nothing of them is configured.
    assert app1["FileSettings"]["DriverName"] == "local" and "ElasticsearchSettings" not in app1
    assert "PushNotificationServer" not in app1["EmailSettings"]


@pytest.mark.parametrize("site", [["mattermost.cluster_name=blue"]], indirect=True)
def test_cluster_name_setting(site):
    assert mm.config(site("app2"), site.inv.host("db1"), [])["ClusterSettings"]["ClusterName"] == "blue"


def test_ha_ephemeral_range_leaves_the_servers_ports_out():
    """A listening port inside the ephemeral range can be taken by an outgoing connection,
    and the server restarted then cannot bind it: the range starts above the default ports
    of every server that may share a host with an app or job server."""
    from mmdeploy.components import alerting, grafana, node_exporter, prometheus
    from mmdeploy.components.storage import common, seaweedfs

    low, high = map(int, mm.HA_SYSCTL["net.ipv4.ip_local_port_range"].split())
    servers = [seaweedfs.MASTER_PORT, seaweedfs.VOLUME_PORT, seaweedfs.FILER_PORT, common.SEAWEEDFS_PORT]
    ports = [
        *servers,
        *(p + 10000 for p in servers),  # SeaweedFS's gRPC ports
        *seaweedfs.METRICS.values(),
        common.MINIO_PORT,
        node_exporter.PORT,
        prometheus.PORT,
        alerting.PORT,
        alerting.CLUSTER_PORT,
        grafana.PORT,
        mm.GOSSIP_PORT,
        8065,
        8067,
    ]
    assert max(ports) < low < high


def test_cluster_steps_sysctl_limits_and_chrony(site):
    steps = {s.name: s for s in mm.Mattermost().steps(site("app1"))}
    sysctl = {name for name in steps if name.startswith("sysctl ")}
    assert sysctl == {f"sysctl {k}" for k in mm.HA_SYSCTL}
    assert steps["sysctl net.ipv4.ip_local_reserved_ports"].value == "8065,8067,8074"
    unit = steps["file /etc/systemd/system/mattermost.service"].content.decode()
    assert "LimitNOFILE=65536\nLimitNPROC=8192\n" in unit
    assert "packages chrony" in steps and "service chrony" in steps
    # A host whose clock cannot be set (a container): chrony installed, never started.
    in_container = [s.name for s in mm.Mattermost().steps(site("app1", FakeFacts(ok=False)))]
    assert "service chrony" not in in_container
    # NTP servers of the site's own replace Debian's pool.
    assert not any(n.startswith("file /etc/chrony") for n in steps)


@pytest.mark.parametrize("site", [["time.servers=[ntp1.example.com]"]], indirect=True)
def test_time_servers(site):
    steps = {s.name: s for s in mm.Mattermost().steps(site("app1"))}
    conf = steps["file /etc/chrony/chrony.conf"].content.decode()
    assert "server ntp1.example.com iburst\n" in conf and "\npool " not in conf
    assert steps["file /etc/chrony/chrony.conf"].notify == ("restart chrony",)


def test_one_app_server_is_no_cluster(write_inventory, tmp_path):
    one = SITE.replace("  - {{name: app2, address: 192.0.2.3, private_address: 10.0.0.3, roles: [app]}}\n", "")
    inv = inventory.load(write_inventory(one.format(sha="a" * 64)))
    db1 = inv.host("db1")
    ctx = Context(
        inv,
        inv.host("app1"),
        Secrets(tmp_path / "s.yml", Redactor()),
        FakeFacts(),
        mm.DBView(Topology([db1], {"db1": NodeState(db1, True, True, "primary", True)}, db1, "w")),
    )
    assert mm.config(ctx, db1, [])["ClusterSettings"]["Enable"] is False
    names = [s.name for s in mm.Mattermost().steps(ctx)]
    assert not any(n.startswith("sysctl") or "chrony" in n for n in names)
    unit = next(s for s in mm.Mattermost().steps(ctx) if s.name.endswith("mattermost.service")).content.decode()
    assert "LimitNOFILE=49152\n\n[Install]" in unit and "LimitNPROC" not in unit  # as before this change


def test_license_installed_before_start_and_uploaded_when_changed(site, tmp_path, write_inventory):
    lic = tmp_path / "site.mattermost-license"
    lic.write_text("TEST-LICENSE")
    inv_path = write_inventory(SITE.format(sha="a" * 64), "lic.yml")
    inv = inventory.load(inv_path, [f"mattermost.license_file={lic}"])
    db1 = inv.host("db1")
    view = mm.DBView(Topology([db1], {"db1": NodeState(db1, True, True, "primary", True)}, db1, "w"))

    def ctx(name):
        return Context(inv, inv.host(name), Secrets(tmp_path / "s.yml", Redactor()), FakeFacts(), view)

    app = mm.Mattermost().steps(ctx("app1"))
    names = [s.name for s in app]
    license_step = app[names.index(f"file {mm.LICENSE}")]
    # The file is in place before the service starts (the first start stores it in the database).
    assert names.index(f"file {mm.LICENSE}") < names.index("service mattermost")
    assert license_step.mode == "0600" and license_step.notify == ("license", "restart")
    handlers = mm.Mattermost().handlers(ctx("app1"))
    assert list(handlers)[:2] == ["license", "restart"]  # the upload, then the restart that applies it
    assert f"mmctl --local license upload {mm.LICENSE}" in handlers["license"].script
    assert mm.config(ctx("app1"), db1, [])["ServiceSettings"]["LicenseFileLocation"] == mm.LICENSE
    # The job server has no local socket: it gets the file, and reads the database's license.
    job = mm.Mattermost().steps(ctx("job1"))
    assert next(s for s in job if s.name == f"file {mm.LICENSE}").notify == ("restart",)
    assert "license" not in mm.Mattermost().handlers(ctx("job1"))


def test_missing_license_file_is_refused_before_any_host(write_inventory):
    from mmdeploy.errors import InventoryError

    path = write_inventory(
        SITE.format(sha="a" * 64).replace(
            "  mattermost:\n", "  mattermost:\n    license_file: /nonexistent/site.mattermost-license\n"
        )
    )
    with pytest.raises(InventoryError) as e:
        inventory.load(path)
    (line,) = [p for p in e.value.problems if "license_file" in p]
    assert line.startswith(f"{path}:5: settings.mattermost.license_file: no such file")


def test_failover_repoint_skips_the_cluster_extras(site):
    """A re-point after a DB failover only rewrites the config and restarts: no packages,
    no sysctl, no license upload (it must stay fast and not wait on the database)."""
    ctx = site("app1")
    ctx.shared = mm.DBView(ctx.shared.topology, failover=True)
    names = [s.name for s in mm.Mattermost().steps(ctx)]
    assert not any(n.startswith("sysctl") or "chrony" in n for n in names)
    assert "json /opt/mattermost/config/config.json" in names
    other = site("app2")
    other.shared = mm.DBView(other.shared.topology, failover=True)
    assert not any(s.name.startswith("first start after") for s in mm.Mattermost().steps(other))
    assert mm.Mattermost().handlers(ctx)["restart"].script.startswith("set -e\nif ! timeout 1 systemctl stop")


MULTI = """\
pattern: multi
settings:
  domain: chat.example.com
  mattermost: {{sha256: "{sha}"}}
hosts:
  - {{name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}}
  - {{name: proxy2, address: 192.0.2.2, private_address: 10.0.0.2, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.3, private_address: 10.0.0.3, roles: [app]}}
  - {{name: app2, address: 192.0.2.4, private_address: 10.0.0.4, roles: [app]}}
  - {{name: job1, address: 192.0.2.5, private_address: 10.0.0.5, roles: [jobserver, monitoring]}}
  - {{name: db1, address: 192.0.2.6, private_address: 10.0.0.6, roles: [db]}}
  - {{name: db2, address: 192.0.2.7, private_address: 10.0.0.7, roles: [db]}}
  - {{name: db3, address: 192.0.2.8, private_address: 10.0.0.8, roles: [db]}}
  - {{name: search1, address: 192.0.2.9, private_address: 10.0.0.9, roles: [search]}}
  - {{name: search2, address: 192.0.2.10, private_address: 10.0.0.10, roles: [search]}}
  - {{name: storage1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [storage]}}
  - {{name: storage2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [storage]}}
  - {{name: push1, address: 192.0.2.13, private_address: 10.0.0.13, roles: [pushproxy]}}
  - {{name: push2, address: 192.0.2.14, private_address: 10.0.0.14, roles: [pushproxy]}}
"""
# What the proxies' balancer serves (balancer.endpoint): the storage and search components
# are other branches', so their layers are given here as they will declare them.
LAYERS = {"storage": ("10.0.0.1", 8333), "search": ("10.0.0.1", 9200), "pushproxy": ("10.0.0.1", 8066)}


@pytest.fixture
def multi(write_inventory, tmp_path, monkeypatch):
    monkeypatch.setattr(mm.balancer, "endpoint", lambda inv, layer: LAYERS.get(layer))
    inv = inventory.load(write_inventory(MULTI.format(sha="a" * 64), "multi.yml"))
    db = [inv.host(f"db{i}") for i in (1, 2, 3)]
    states = {h.name: NodeState(h, True, True, "primary" if h is db[0] else "replica", h is db[0]) for h in db}
    secrets = Secrets(tmp_path / "s.yml", Redactor())

    def ctx(name):
        return Context(inv, inv.host(name), secrets, FakeFacts(), mm.DBView(Topology(db, states, db[0], "w")))

    ctx.inv, ctx.secrets, ctx.db = inv, secrets, db
    return ctx


def test_multi_pattern_keeps_the_config_in_the_database(multi):
    assert multi.inv.settings.mattermost.config_in_database is True  # the pattern's default
    names = [s.name for s in mm.Mattermost().steps(multi("app1"))]
    assert f"file {mm.CONFIG_PATCH}" in names and "json /opt/mattermost/config/config.json" not in names


def test_multi_services_at_the_balancer(multi):
    cfg = mm.config(multi("app1"), multi.db[0], multi.db[1:])
    files = cfg["FileSettings"]
    assert files["DriverName"] == "amazons3" and files["AmazonS3Endpoint"] == "10.0.0.1:8333"
    assert (files["AmazonS3SSL"], files["AmazonS3SignV2"], files["AmazonS3Bucket"]) == (False, False, "mattermost")
    assert files["AmazonS3AccessKeyId"] == multi.secrets.get(mm.STORAGE_ACCESS_KEY)
    assert files["AmazonS3SecretAccessKey"] == multi.secrets.get(mm.STORAGE_SECRET_KEY)
    search = cfg["ElasticsearchSettings"]
    assert search["ConnectionURL"] == "http://10.0.0.1:9200" and search["Backend"] == "opensearch"
    assert search["EnableIndexing"] and search["EnableSearching"] and search["EnableAutocomplete"]
    # As many index replicas as the search tier keeps (components/search.py: 1 on two nodes).
    assert (search["PostIndexReplicas"], search["ChannelIndexReplicas"], search["UserIndexReplicas"]) == (1, 1, 1)
    email = cfg["EmailSettings"]
    assert email["SendPushNotifications"] is True and email["PushNotificationServer"] == "http://10.0.0.1:8066"
    assert email["SMTPServer"] == ""  # the push keys join the mail keys, they do not replace them
    assert len(cfg["SqlSettings"]["DataSourceReplicas"]) == 2
    assert cfg["ClusterSettings"]["Enable"] is True


def test_multi_storage_from_the_storage_component(write_inventory, tmp_path):
    """The storage component (components/storage) declares the layer: Mattermost's S3
    endpoint is the balancer's address on its port, the bucket and region its settings'."""
    inv = inventory.load(
        write_inventory(MULTI.format(sha="a" * 64), "multi.yml"),
        ["storage.bucket=chat-files", "storage.region=eu-west-1"],
    )
    db = [inv.host(f"db{i}") for i in (1, 2, 3)]
    states = {h.name: NodeState(h, True, True, "primary" if h is db[0] else "replica", h is db[0]) for h in db}
    ctx = Context(
        inv,
        inv.host("app2"),
        Secrets(tmp_path / "s.yml", Redactor()),
        FakeFacts(),
        mm.DBView(Topology(db, states, db[0], "w")),
    )
    files = mm.config(ctx, db[0], db[1:])["FileSettings"]
    assert (files["AmazonS3Endpoint"], files["AmazonS3Bucket"], files["AmazonS3Region"]) == (
        "10.0.0.1:8333",
        "chat-files",
        "eu-west-1",
    )


def test_multi_config_is_valid_for_mattermost(multi, tmp_path):
    """The rendered keys pass Mattermost's own model validation (SetDefaults + IsValid of the
    Apache-2.0 model package, tests/standin/configcheck), as the server checks at start."""
    import json
    import subprocess

    from tests.standin import release

    release.build()  # also builds dist/configcheck
    cfg = mm.config(multi("app1"), multi.db[0], multi.db[1:])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(release.DIST / "configcheck"), str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_search_index_job_once_on_the_first_app_server(multi):
    component = mm.MattermostSearchIndex()
    assert [h.name for h in component.hosts(multi.inv)] == ["app1"]
    (step,) = component.steps(multi("app1"))
    assert '"type": "elasticsearch_post_indexing"' in step.script and "/api/v4/jobs" in step.script
    # Skipped once a job of that type is pending, running or done.
    assert "/api/v4/jobs/type/elasticsearch_post_indexing" in step.unless and "success" in step.unless


def test_release_warnings_once_per_version(site, write_inventory):
    from datetime import date

    old = inventory.load(write_inventory(SITE.format(sha="a" * 64), "old.yml"), ["mattermost.version=10.5.1"])
    found = mm.Mattermost().warnings(old, date(2026, 11, 29))
    assert len(found) == 2  # a known-bad patch, out of support: said once though 4 hosts run it
    assert all(w.startswith("Mattermost 10.5.1") for w in found)
    assert mm.Mattermost().warnings(site.inv, date(2026, 11, 29)) == []  # the default is supported


def test_the_other_servers_start_after_the_first(site):
    """On a fresh database the first app server starts alone (it creates the schema and the
    database config); the others wait, bounded, until it answers, then start."""
    first = [s.name for s in mm.Mattermost().steps(site("app1"))]
    assert not any(n.startswith("first start after") for n in first)
    for name, unit in (("app2", "mattermost"), ("job1", "mattermost-jobserver")):
        steps = mm.Mattermost().steps(site(name))
        names = [s.name for s in steps]
        wait = steps[names.index("first start after app1")]
        assert names.index("first start after app1") == names.index(f"service {unit}") - 1
        assert "http://10.0.0.2:8065/api/v4/system/ping" in wait.script and "seq 150" in wait.script
        assert wait.unless == f"systemctl is-active {unit} >/dev/null" and wait.timeout == 420


def test_every_server_gets_the_first_app_servers_generated_key_and_salt(site):
    """With several servers and the config in files, AtRestEncryptKey and PublicLinkSalt
    (which a server generates on its first start when empty) are the first app server's on
    every server, or the secrets' on a fresh site; never a second one per server."""

    class FirstServer:  # app1's config.json as its fact answers
        def __init__(self, out):
            self.out = out

        def facts(self, host, commands):
            assert host.name == "app1"
            return {c: Fact(0, self.out) for c in commands}

    existing = mm.read_generated(site.inv, FirstServer('{"SqlSettings": "k" , "FileSettings": "s"}'))
    assert existing == {"SqlSettings": "k", "FileSettings": "s"}
    fresh = mm.read_generated(site.inv, FirstServer('{"SqlSettings": "", "FileSettings": null}'))
    assert fresh == {}

    def config_of(name, generated):
        ctx = site(name)
        ctx = dataclasses.replace(ctx, shared=dataclasses.replace(ctx.shared, generated=generated))
        step = next(s for s in mm.Mattermost().steps(ctx) if isinstance(s, JsonSettings))
        return step.wanted

    for name in ("app1", "app2", "job1"):
        cfg = config_of(name, existing)
        assert (cfg["SqlSettings"]["AtRestEncryptKey"], cfg["FileSettings"]["PublicLinkSalt"]) == ("k", "s")
        cfg = config_of(name, fresh)
        assert cfg["SqlSettings"]["AtRestEncryptKey"] == site.secrets.get(mm.AT_REST_KEY)
        assert cfg["FileSettings"]["PublicLinkSalt"] == site.secrets.get(mm.PUBLIC_LINK_SALT)
    assert "AtRestEncryptKey" not in config_of("app1", None)["SqlSettings"]  # nothing to share: the server's own


def test_the_shared_config_patch_is_asked_again_when_a_concurrent_save_refused_it(tmp_path):
    """PATCH_SHARED_CONFIG run with a fake mmctl: a first refusal (another server's save
    won the race) is asked again and succeeds; a config refused every time fails."""
    import subprocess

    def run(refusals: int) -> tuple[int, int]:
        count = tmp_path / f"calls{refusals}"
        fake = tmp_path / f"mmctl{refusals}"
        fake.write_text(
            f"#!/bin/bash\nn=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}\n"
            f"[ $n -gt {refusals} ] || {{ echo 'Error: failed to record new configuration' >&2; exit 1; }}\n"
        )
        fake.chmod(0o755)
        script = mm.PATCH_SHARED_CONFIG.replace(mm.MMCTL, str(fake)).replace("sleep $((1 + RANDOM % 3))", "true")
        rc = subprocess.run(["bash", "-c", f"set -e\n{script}echo patched"], capture_output=True).returncode
        return rc, int(count.read_text())

    assert run(1) == (0, 2)
    assert run(9) == (1, 4)


def test_app_servers_restart_one_at_a_time_except_after_a_failover(multi):
    """Growing multi into cluster changes every app server's DataSource: restarted all at
    once, the site refused posts for 33 s on the bed. Each waits for the one before, and
    NGINX's fail_timeout, so that NGINX has a server to send requests to; after a failover
    every server points at a dead primary, and all restart at once."""
    handlers = mm.Mattermost().handlers(multi("app1"))
    for name in ("restart", "patch-config"):
        assert isinstance(handlers[name], OneAtATime), name
        assert handlers[name].script.endswith(f"sleep {mm.NGINX_FAIL_TIMEOUT}\n")
        # A server this run started (a first deploy) restarts at once: no lock, no wait.
        assert handlers[name].fresh == started_since("mattermost", 1700000000)
        assert "-ge 1700000000 ]" in handlers[name].fresh
    assert handlers["restart"].key == mm.Mattermost().handlers(multi("app2"))["restart"].key
    assert not isinstance(mm.Mattermost().handlers(multi("job1"))["restart"], OneAtATime)
    inv, db = multi.inv, multi.db
    states = {h.name: NodeState(h, True, True, "primary" if h is db[0] else "replica", h is db[0]) for h in db}
    failover = Context(
        inv, inv.host("app1"), multi.secrets, FakeFacts(), mm.DBView(Topology(db, states, db[0], "w"), failover=True)
    )
    assert not isinstance(mm.Mattermost().handlers(failover)["restart"], OneAtATime)


def test_a_server_this_run_started_restarts_at_once_another_waits_its_turn(multi):
    """A first deploy's restart after the first start goes ahead without the lock and the
    wait (the server served nobody); a serving server's restart takes the lock and waits
    for NGINX's fail_timeout before it passes on."""
    from mmdeploy.remote import Result
    from mmdeploy.step import Change

    handler = mm.Mattermost().handlers(multi("app1"))["restart"]

    class Remote:
        def __init__(self, fresh):
            self.fresh, self.scripts = fresh, []

        def run(self, script, **kw):
            self.scripts.append(script)
            return Result(0 if (script != handler.fresh or self.fresh) else 1, "", "")

    first = Remote(fresh=True)
    handler.apply(first, Change("run"))
    assert first.scripts[0] == handler.fresh and f"sleep {mm.NGINX_FAIL_TIMEOUT}" not in first.scripts[1]
    serving = Remote(fresh=False)
    handler.apply(serving, Change("run"))
    assert serving.scripts[1].endswith(f"sleep {mm.NGINX_FAIL_TIMEOUT}\n")
