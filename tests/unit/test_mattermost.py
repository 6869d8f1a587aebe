"""The Mattermost component's logic with fake facts: release URL, config.json keys, units,
job server placement, first admin without a secret on any command line."""

import pytest

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components import mattermost as mm
from mmdeploy.errors import MMDeployError
from mmdeploy.ops import Command, File, JsonSettings
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


@pytest.fixture
def site(write_inventory, tmp_path, request):
    inv = inventory.load(write_inventory(SITE.format(sha="a" * 64)), getattr(request, "param", ()))
    secrets = Secrets(tmp_path / "s.yml", Redactor())

    db1, db2 = inv.host("db1"), inv.host("db2")
    states = {"db1": NodeState(db1, True, True, "primary", True), "db2": NodeState(db2, True, True, "replica", False)}

    def ctx(name):
        return Context(inv, inv.host(name), secrets, facts=None,
                       shared=mm.DBView(Topology([db1, db2], states, db1, "writable")))

    ctx.inv, ctx.secrets = inv, secrets
    return ctx


def test_release_url_is_the_official_pattern():
    assert mm.release_url("10.11.4", "enterprise") == \
        "https://releases.mattermost.com/10.11.4/mattermost-10.11.4-linux-amd64.tar.gz"
    assert mm.release_url("11.1.0", "team") == \
        "https://releases.mattermost.com/11.1.0/mattermost-team-11.1.0-linux-amd64.tar.gz"


def test_artifact_needs_a_checksum(site, write_inventory):
    assert mm.artifact(site.inv.settings).url == mm.release_url("10.11.4", "enterprise")
    bare = inventory.load(write_inventory(SITE.replace('    sha256: "{sha}"\n', "").format(), "bare.yml"))
    with pytest.raises(MMDeployError, match="settings.mattermost.sha256 is required"):
        mm.artifact(bare.settings)


def test_config_keys(site):
    cfg = mm.config(site("app1"), f"{site.inv.host('db1').private_address}:5432",
                    [f"{site.inv.host('db2').private_address}:5432"])
    password = site.secrets.get(DB_PASSWORD)
    assert cfg["SqlSettings"]["DriverName"] == "postgres"
    assert cfg["SqlSettings"]["DataSource"] == (
        f"postgres://mmuser:{password}@10.0.0.5:5432/mattermost?sslmode=disable&connect_timeout=10&binary_parameters=yes")
    assert cfg["SqlSettings"]["DataSourceReplicas"] == [cfg["SqlSettings"]["DataSource"].replace("10.0.0.5", "10.0.0.6")]
    assert cfg["ServiceSettings"]["SiteURL"] == "https://chat.example.com"
    assert cfg["ServiceSettings"]["EnableCustomEmoji"] is True  # mattermost.config merged in
    assert cfg["TeamSettings"] == {"RestrictCreationToDomains": "", "MaxUsersPerTeam": 500}
    assert cfg["MetricsSettings"] == {"Enable": True, "ListenAddress": ":8067"}
    assert cfg["EmailSettings"]["SMTPServer"] == "smtp.example.com" and cfg["EmailSettings"]["EnableSMTPAuth"]
    assert cfg["ClusterSettings"]["Enable"] is True  # two app servers
    # A dedicated job server runs the jobs; the app servers do not.
    assert cfg["JobSettings"] == {"RunJobs": False, "RunScheduler": False}
    job = mm.config(site("job1"), f"{site.inv.host('db1').private_address}:5432", [])
    assert job["JobSettings"] == {"RunJobs": True, "RunScheduler": True}


def test_mysql_datasource(site):
    from mmdeploy.registry import settings_model

    s = settings_model().model_validate({"database": {"engine": "mysql"}})
    assert mm.datasource(s, "10.0.0.5:3306", "p@ss/w") == \
        "mmuser:p%40ss%2Fw@tcp(10.0.0.5:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"


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


def test_unit_file_follows_mattermost_docs(site):
    text = site("app1").render("mattermost/mattermost.service.j2", command="", env_file="")
    assert "EnvironmentFile" not in text
    for line in ("Type=notify", "TimeoutStartSec=3600", "KillMode=mixed", "Restart=always",
                 "LimitNOFILE=49152", "User=mattermost", "ExecStart=/opt/mattermost/bin/mattermost\n"):
        assert line in text


def test_config_in_database_off_keeps_config_json(site):
    names = [s.name for s in mm.Mattermost().steps(site("app1"))]
    assert "json /opt/mattermost/config/config.json" in names
    assert not any(mm.ETC in n for n in names)
    assert list(mm.Mattermost().handlers(site("app1"))) == ["restart"]


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
        f'MM_CONFIG="{dsn}"', f'MM_SQLSETTINGS_DATASOURCE="{dsn}"', 'MM_SERVICESETTINGS_ENABLELOCALMODE="true"',
        'MM_JOBSETTINGS_RUNJOBS="false"', 'MM_JOBSETTINGS_RUNSCHEDULER="false"']
    # Per host in the environment: the shared database config cannot say who runs jobs.
    job_env = next(s for s in job1 if isinstance(s, File) and s.path == mm.ENV_FILE).content.decode()
    assert 'MM_JOBSETTINGS_RUNJOBS="true"' in job_env
    patch = next(s for s in app1 if isinstance(s, File) and s.path == mm.CONFIG_PATCH)
    assert isinstance(patch, SecretFile) and patch.mode == "0600" and patch.notify == ("patch-config",)
    keys = __import__("json").loads(patch.content)
    assert keys["SqlSettings"]["DataSource"] == dsn and "JobSettings" not in keys
    assert keys["ServiceSettings"]["EnableCustomEmoji"] is True
    assert not any(isinstance(s, File) and s.path == mm.CONFIG_PATCH for s in job1)  # no local socket there
    units = [s for s in app1 + job1 if isinstance(s, File) and s.path.startswith("/etc/systemd/system/")]
    assert len(units) == 2 and all(f"EnvironmentFile={mm.ENV_FILE}\n" in u.content.decode() for u in units)
    handler = mm.Mattermost().handlers(site("app1"))["patch-config"]
    patch_at = handler.script.index(f"mmctl --local config patch {mm.CONFIG_PATCH}\n")
    assert handler.script.index("systemctl start mattermost", patch_at) > patch_at  # restarted after the patch
    assert "patch-config" not in mm.Mattermost().handlers(site("job1"))
    # The DSN holds the password: only in the 0600 files, never on a command line.
    for step in app1 + job1 + [handler]:
        if isinstance(step, Command):
            assert password not in step.script and password not in (step.unless or "")


@pytest.mark.parametrize("site", [DB_CONFIG + ["database.engine=mysql"]], indirect=True)
def test_config_in_database_mysql_dsn_scheme(site):
    env = next(s for s in mm.Mattermost().steps(site("app1")) if isinstance(s, File) and s.path == mm.ENV_FILE)
    assert env.content.decode().startswith('MM_CONFIG="mysql://mmuser:')
