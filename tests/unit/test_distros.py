"""The one map of package names and versions per distribution (mmdeploy/distros.py), and
the components that pick from it: PostgreSQL's version, MariaDB's packages, exporters.
Ubuntu is checked here only: no Ubuntu archive is reachable from these machines."""

import subprocess

import pytest

from mmdeploy import distros, inventory
from mmdeploy.component import Context
from mmdeploy.components import postgresql as pg
from mmdeploy.components.mysql import component as mysql_component
from mmdeploy.components.mysql.flavor import FLAVORS
from mmdeploy.components.node_exporter import NodeExporter
from mmdeploy.dbtier import Topology
from mmdeploy.errors import MMDeployError
from mmdeploy.secrets import Redactor, Secrets

OS = {
    "debian 12": "debian 12 bookworm",
    "debian 13": "debian 13 trixie",
    "ubuntu 22.04": "ubuntu 22.04 jammy",
    "ubuntu 24.04": "ubuntu 24.04 noble",
}


@pytest.mark.parametrize(
    "fact, postgresql, mariadb, java",
    [
        (OS["debian 12"], "15", "10.11", "openjdk-17-jre-headless"),
        (OS["debian 13"], "17", "11.8", "openjdk-21-jre-headless"),
        (OS["ubuntu 22.04"], "14", "10.6", "openjdk-17-jre-headless"),
        (OS["ubuntu 24.04"], "16", "10.11", "openjdk-21-jre-headless"),
    ],
)
def test_map(fact, postgresql, mariadb, java):
    d = distros.of(fact)
    assert (d.postgresql, d.mariadb, d.java) == (postgresql, mariadb, java)
    assert d.mariadb_packages == ("mariadb-server", "mariadb-client")
    assert {w: d.exporter(w) for w in ("node", "postgres", "mysqld", "nginx")} == {
        "node": "prometheus-node-exporter",
        "postgres": "prometheus-postgres-exporter",
        "mysqld": "prometheus-mysqld-exporter",
        "nginx": "prometheus-nginx-exporter",
    }
    assert fact.split()[2] == d.codename


def test_unsupported_distribution_is_refused_by_name():
    with pytest.raises(MMDeployError, match=r"debian 11 is not a supported distribution \(supported: debian 12"):
        distros.of("debian 11 bullseye")
    with pytest.raises(MMDeployError, match="cannot tell the distribution"):
        distros.of("")


@pytest.mark.parametrize(
    "os_release, expected",
    [
        ('ID=debian\nVERSION_ID="12"\n', "15"),
        ('ID=debian\nVERSION_ID="13"\n', "17"),
        ('ID=ubuntu\nVERSION_ID="22.04"\n', "14"),
        ('ID=ubuntu\nVERSION_ID="24.04"\n', "16"),
        ('ID=debian\nVERSION_ID="11"\n', ""),
    ],
)
def test_shell_lookup_matches_the_map(tmp_path, os_release, expected):
    """The shell form (for scripts that run before facts are read) gives the same answer."""
    release = tmp_path / "os-release"
    release.write_text(os_release)
    script = "echo " + distros.shell_lookup("postgresql").replace("/etc/os-release", str(release))
    assert subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout.strip() == expected


SITE = """\
pattern: single
settings: {domain: chat.example.com}
hosts:
  - {name: app1, address: 192.0.2.2, private_address: 10.0.0.2, roles: [app, jobserver, monitoring, proxy]}
  - {name: db1, address: 192.0.2.4, private_address: 10.0.0.4, roles: [db]}
  - {name: db2, address: 192.0.2.5, private_address: 10.0.0.5, roles: [db]}
"""


class Facts:
    def __init__(self, os_fact):
        self.os = os_fact

    def host(self, name):
        return {"os": self.os, "mem_kb": "4000000", "cpus": "2"}[name]


def steps(write_inventory, tmp_path, component, os_fact, extra="", host="db1", shared=None):
    inv = inventory.load(write_inventory(SITE + extra))
    h = inv.host(host)
    topo = shared or Topology([inv.host("db1")], {}, inv.host("db1"), "writable")
    ctx = Context(inv, h, Secrets(tmp_path / "s.yml", Redactor()), Facts(os_fact), topo)
    return [s.name for s in component.steps(ctx)]


@pytest.mark.parametrize("os_key, version", [("debian 12", "15"), ("debian 13", "17"), ("ubuntu 24.04", "16")])
def test_postgresql_version_follows_the_distribution(write_inventory, tmp_path, os_key, version):
    names = steps(write_inventory, tmp_path, pg.PostgreSQL(), OS[os_key])
    assert f"packages postgresql-{version}" in names
    assert f"create cluster {version}/main" in names
    assert f"file /etc/postgresql/{version}/main/pg_hba.conf" in names


def test_postgresql_version_setting_wins(write_inventory, tmp_path):
    inv = inventory.load(write_inventory(SITE), ["database.postgresql_version='16'"])
    h = inv.host("db1")
    assert pg.paths(h, OS["debian 13"]).conf == "/etc/postgresql/16/main"
    assert pg.paths(h).unit == "postgresql@16-main"  # no facts needed when it is set


def test_postgresql_probe_finds_the_version_itself(write_inventory, tmp_path):
    """The node probe runs before facts are read: it takes the version from os-release."""
    inv = inventory.load(write_inventory(SITE))
    script = pg.probe.probe(inv.host("db1"))
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_ID="13"\n')
    head = "\n".join(script.splitlines()[:2]).replace("/etc/os-release", str(release))
    assert subprocess.run(["bash", "-c", head], capture_output=True, text=True).stdout == "version=17\n"
    assert "/var/lib/postgresql/$PGV/main" in script and "postgresql@$PGV-main" in script


def test_mariadb_and_exporters_from_the_map(write_inventory, tmp_path):
    assert FLAVORS["mariadb"].packages(distros.of(OS["debian 13"])) == ["mariadb-server", "mariadb-client"]
    assert FLAVORS["mysql"].packages(distros.of(OS["debian 13"])) == ["mysql-server", "mysql-client"]
    node = steps(write_inventory, tmp_path, NodeExporter(), OS["ubuntu 22.04"], host="app1")
    assert "packages prometheus-node-exporter" in node
    with pytest.raises(MMDeployError, match="not a supported distribution"):
        steps(write_inventory, tmp_path, NodeExporter(), "debian 11 bullseye", host="app1")
    inv = inventory.load(write_inventory(SITE))
    ctx = Context(inv, inv.host("db1"), Secrets(tmp_path / "s.yml", Redactor()), Facts(OS["ubuntu 24.04"]))
    assert mysql_component.exporter(ctx) == "prometheus-mysqld-exporter"


def test_nginx_exporter_flags_per_series():
    """bookworm's 0.11 takes -flags and retries; trixie's 1.4 refuses -nginx.retries."""
    uri = "http://127.0.0.1:8090/stub_status"
    # Go's flag package in 0.x (one dash), kingpin later; on the private address only.
    assert (
        distros.of(OS["debian 12"]).nginx_exporter_args(uri, "10.0.0.5", 9113)
        == f"-nginx.scrape-uri={uri} -nginx.retries=10 -web.listen-address=10.0.0.5:9113"
    )
    assert (
        distros.of(OS["debian 13"]).nginx_exporter_args(uri, "fd00::5", 9113)
        == f"--nginx.scrape-uri={uri} --web.listen-address=[fd00::5]:9113"
    )


def test_mysqld_exporter_login_per_series(write_inventory, tmp_path):
    """bookworm's 0.14 reads DATA_SOURCE_NAME; trixie's 0.17 only a my.cnf file."""
    mysql = "settings: {domain: chat.example.com, database: {engine: mysql}, mattermost: {version: 10.11.23}}"
    inv = inventory.load(write_inventory(SITE.replace("settings: {domain: chat.example.com}", mysql)))
    topo = Topology([inv.host("db1")], {}, inv.host("db1"), "writable")
    secrets = Secrets(tmp_path / "s.yml", Redactor())

    def exporter_steps(os_key):
        ctx = Context(inv, inv.host("db1"), secrets, Facts(OS[os_key]), topo)
        return {s.name: s for s in mysql_component.MySQLReplication().steps(ctx)}

    old = exporter_steps("debian 12")
    assert b"DATA_SOURCE_NAME=" in old["file /etc/default/prometheus-mysqld-exporter"].content
    new = exporter_steps("debian 13")
    env = new["file /etc/default/prometheus-mysqld-exporter"].content.decode()
    assert "DATA_SOURCE_NAME" not in env
    assert 'ARGS="--config.my-cnf=/etc/mysql/mmdeploy-exporter.cnf --web.listen-address=10.0.0.4:9104"' in env
    cnf = new["file /etc/mysql/mmdeploy-exporter.cnf"]
    assert (cnf.owner, cnf.mode) == ("prometheus", "0640")
    names = list(new)
    assert names.index("file /etc/mysql/mmdeploy-exporter.cnf") < names.index("packages prometheus-mysqld-exporter")
