"""Day-2 operations, the parts that need no host: the NGINX drain edit (run for real on a
rendered config), node health decisions of upgrades, pgBackRest and mariabackup
configuration, backup results and restore times, the migration's checksum program (run
for real on both engines' output formats) and load file, and drift's comparison."""

import hashlib
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components.nginx import render, upstream_state_script, drained_servers_script
from mmdeploy.errors import InventoryError
from mmdeploy.secrets import Redactor, Secrets

from .localremote import LocalRemote

SITE = """\
pattern: single
settings:
  domain: chat.example.com
  backup: {enabled: true}
hosts:
  - {name: lb1, address: 192.0.2.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [app]}
  - {name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, private_address: 10.0.0.32, roles: [db]}
"""


@pytest.fixture
def site(write_inventory):
    def load(*overrides):
        return inventory.load(write_inventory(SITE), overrides)

    return load


# --- the drain ---------------------------------------------------------------------------


def _local(script: str, conf) -> str:
    """The drain script against a file of our own, with nginx's test and reload left out."""
    script = script.replace("/etc/nginx/nginx.conf", str(conf)).replace("/etc/nginx/.mmdeploy", f"{conf}.mmdeploy")
    return "\n".join(line for line in script.splitlines() if not line.startswith(("nginx -t", "systemctl reload")))


def test_drain_marks_one_server_down_and_back(site, tmp_path):
    inv = site()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(Context(inv, inv.host("lb1"), Secrets(tmp_path / "s.yml", Redactor()), None)))
    original = conf.read_text()
    remote = LocalRemote(inv.host("lb1"))
    r = remote.run(_local(upstream_state_script("10.0.0.11", 8065, down=True), conf))
    assert r.ok and r.stdout.strip() == "changed", r.stderr
    text = conf.read_text()
    # Several app servers: the proxies branch's passive failure detection stays on the line.
    assert re.search(r"server 10\.0\.0\.11:8065( max_fails=\S+ fail_timeout=\S+)? down;", text), text
    assert re.search(r"server 10\.0\.0\.12:8065( max_fails=\S+ fail_timeout=\S+)?;", text), text
    assert remote.run(_local(drained_servers_script(), conf)).stdout.split() == ["10.0.0.11:8065"]
    # Draining twice changes nothing; putting it back restores the rendered file exactly.
    assert remote.run(_local(upstream_state_script("10.0.0.11", 8065, down=True), conf)).stdout.strip() == "unchanged"
    assert remote.run(_local(upstream_state_script("10.0.0.11", 8065, down=False), conf)).stdout.strip() == "changed"
    assert conf.read_text() == original


def test_drain_refuses_a_server_not_in_the_upstream(site, tmp_path):
    inv = site()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(Context(inv, inv.host("lb1"), Secrets(tmp_path / "s.yml", Redactor()), None)))
    r = LocalRemote(inv.host("lb1")).run(_local(upstream_state_script("10.0.0.99", 8065, down=True), conf))
    assert r.rc == 3 and "not an upstream server" in r.stderr


def test_drain_keeps_other_server_parameters(tmp_path, site):
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "http {\n    upstream backend {\n        server 10.0.0.11:8065 max_fails=2 fail_timeout=10s;\n"
        "        keepalive 32;\n    }\n}\n"
    )
    remote = LocalRemote(site().host("lb1"))
    remote.run(_local(upstream_state_script("10.0.0.11", 8065, down=True), conf))
    assert "server 10.0.0.11:8065 max_fails=2 fail_timeout=10s down;" in conf.read_text()


# --- upgrades ------------------------------------------------------------------------------


def test_node_health_needs_the_version_the_database_and_metrics(site):
    from mmdeploy.upgrades import probe_problem

    app = site().host("app1")
    ok = {
        "unit": "active",
        "live": "10.11.5",
        "code": "200",
        "version": "10.11.5.10.11.5.abc.false",
        "body": '{"status": "OK", "database_status": "OK"}',
        "metrics": "200",
    }
    assert probe_problem(ok, app, "10.11.5", need_metrics=True) is None
    assert "is failed" in probe_problem({**ok, "unit": "failed"}, app, "10.11.5", True)
    assert "HTTP 500" in probe_problem({**ok, "code": "500", "body": "{}"}, app, "10.11.5", True)
    assert "database status" in probe_problem(
        {**ok, "body": '{"status": "OK", "database_status": "UNHEALTHY"}'}, app, "10.11.5", True
    )
    assert "not 10.11.5" in probe_problem({**ok, "version": "10.11.4.x"}, app, "10.11.5", True)
    assert "metrics" in probe_problem({**ok, "metrics": "000"}, app, "10.11.5", True)
    assert probe_problem({**ok, "metrics": "000"}, app, "10.11.5", need_metrics=False) is None
    job = site().host("job1")  # a job server serves no API: its unit, release and metrics
    assert probe_problem({"unit": "active", "live": "10.11.5", "metrics": "200"}, job, "10.11.5", True) is None


def test_order_and_canary(site):
    from mmdeploy.upgrades import _limited, mattermost_nodes

    nodes = mattermost_nodes(site())
    assert [h.name for h in nodes] == ["job1", "app1", "app2"]
    assert [h.name for h in _limited(nodes, ["app2"])] == ["app2"]
    with pytest.raises(InventoryError, match="db1"):
        _limited(nodes, ["db1"])


# --- backups --------------------------------------------------------------------------------


def test_pgbackrest_configs(site):
    from mmdeploy.components.backup import backup_host
    from mmdeploy.components.postgresql import backup as pgb
    from mmdeploy.components.postgresql.config import Paths

    inv = site()
    repo = backup_host(inv)
    assert repo.name == "job1"  # no backup role: the first monitoring host
    dbs = inv.with_role("db")
    conf = pgb.repo_conf(repo, dbs, inv.settings, versions={db.name: "15" for db in dbs})
    assert "repo1-path=/var/backups/mattermost/pgbackrest" in conf
    assert "repo1-retention-full=2" in conf and "repo1-retention-diff=6" in conf
    assert "pg1-host=10.0.0.31" in conf and "pg2-host=10.0.0.32" in conf
    assert "pg2-path=/var/lib/postgresql/15/main" in conf
    db = pgb.db_conf(dbs[0], repo, Paths("15"))
    assert "repo1-host=10.0.0.21" in db and "repo1-host-user=pgbackrest" in db
    assert "archive_command = 'pgbackrest --stanza=mattermost archive-push %p'" in pgb.archive_conf()
    s3 = site("backup.repository=s3", "backup.s3={endpoint: 'storage.internal:8333', bucket: mm-backup}")
    conf = pgb.repo_conf(repo, dbs, s3.settings, ("AK", "SK"), versions={db.name: "15" for db in dbs})
    assert "repo1-type=s3" in conf and "repo1-s3-bucket=mm-backup" in conf
    assert "repo1-s3-endpoint=storage.internal" in conf and "repo1-storage-port=8333" in conf
    assert "repo1-s3-key=AK" in conf and "repo1-path" in conf and "/var/backups" not in conf


def test_backup_settings_refused_before_any_host(site):
    with pytest.raises(InventoryError, match="backup.s3"):
        site("backup.repository=s3")
    with pytest.raises(InventoryError, match="repository"):
        site(
            "backup.repository=s3",
            "backup.s3={endpoint: s3.internal, bucket: mm-backup}",
            "database.engine=mysql",
            "mattermost.version=10.11.4",
        )
    with pytest.raises(InventoryError, match="backup.max_age"):
        site("backup.max_age=1 week")


# The single pattern's hosts with two storage hosts (the site's own S3 storage) and a
# dedicated backup host, which no storage client role names.
OWN_STORAGE = (
    SITE.replace("backup: {enabled: true}", "backup: {enabled: true, repository: s3}")
    + """\
  - {name: st1, address: 192.0.2.41, private_address: 10.0.0.41, roles: [storage]}
  - {name: st2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [storage]}
  - {name: bk1, address: 192.0.2.51, private_address: 10.0.0.51, roles: [backup]}
"""
)


@pytest.fixture
def own(write_inventory):
    def load(*overrides, text=OWN_STORAGE):
        return inventory.load(write_inventory(text, "own.yml"), overrides)

    return load


def test_an_s3_repository_without_backup_s3_is_the_sites_own_storage(own, tmp_path):
    from mmdeploy.components import backup
    from mmdeploy.components.postgresql import backup as pgb
    from mmdeploy.components.storage import common

    inv = own()
    assert common.backup_bucket(inv) == "mattermost-backup"
    target = backup.repository_s3(inv)
    assert (target.endpoint, target.bucket, target.uri_style) == ("localhost:18433", "mattermost-backup", "path")
    repo, dbs = backup.backup_host(inv), inv.with_role("db")
    assert repo.name == "bk1"
    conf = pgb.repo_conf(
        repo, dbs, inv.settings, ("AK", "SK"), versions={db.name: "15" for db in dbs}, s3=target, ca_file="/ca.pem"
    )
    assert "repo1-s3-bucket=mattermost-backup" in conf and "repo1-s3-endpoint=localhost" in conf
    assert "repo1-storage-port=18433" in conf and "repo1-storage-ca-file=/ca.pem" in conf
    assert "repo1-storage-verify-tls=y" in conf and "repo1-s3-key=AK" in conf
    # The TLS hop forwards to the storage layer where Mattermost reaches it: the balancer (lb1).
    steps = backup._tls_hop(Context(inv, repo, Secrets(tmp_path / "s.yml", Redactor()), None))
    conf_file = next(s for s in steps if getattr(s, "path", "") == backup.TLS_CONF)
    text = conf_file.content.decode()
    assert "accept = 127.0.0.1:18433" in text and "connect = 192.0.2.1:8333" in text
    # Another bucket name; an explicit backup.s3 is an external repository, as before.
    assert common.backup_bucket(own("backup.storage_bucket=pg-archive")) == "pg-archive"
    external = own("backup.s3={endpoint: 's3.example.net', bucket: mm-backup}")
    assert common.backup_bucket(external) is None and backup.repository_s3(external).endpoint == "s3.example.net"
    assert common.backup_bucket(own("backup.repository=host")) is None
    assert common.backup_bucket(own("backup.enabled=false")) is None


def test_the_backup_keys_are_a_second_identity_on_their_bucket_only(own, tmp_path):
    import json

    from mmdeploy.components.storage import seaweedfs
    from mmdeploy.registry import registry

    def identities(inv):
        secrets = Secrets(tmp_path / "s.yml", Redactor(), registry().secrets.values())
        ctx = Context(inv, inv.host("st1"), secrets, None)
        return {i["name"]: i for i in json.loads(seaweedfs.s3_config(ctx))["identities"]}, secrets

    found, secrets = identities(own())
    assert found["mattermost"]["actions"] == [
        f"{a}:mattermost" for a in ("Admin", "Read", "Write", "List", "Tagging")
    ]  # nothing on any other bucket
    backup = found["mattermost-backup"]
    assert backup["actions"] == [f"{a}:mattermost-backup" for a in ("Admin", "Read", "Write", "List", "Tagging")]
    # Generated, and different from Mattermost's.
    key = backup["credentials"][0]["accessKey"]
    assert key == secrets.existing(secrets.declared["backup_storage_access_key"])
    assert key != found["mattermost"]["credentials"][0]["accessKey"]
    # Without the repository there, Mattermost's identity alone.
    assert list(identities(own("backup.repository=host"))[0]) == ["mattermost"]
    # The first gateway loads a changed s3.json before the backup bucket is made with its
    # identity (the owner), after Mattermost's.
    inv = own()
    from mmdeploy.facts import Fact

    class Facts:
        def get(self, commands):
            return {c: Fact(0, "65536") for c in commands}

    ctx = Context(inv, inv.host("st1"), Secrets(tmp_path / "s.yml", Redactor(), registry().secrets.values()), Facts())
    steps = registry().component("seaweedfs-s3").steps(ctx)
    names = [s.name for s in steps]
    at = names.index("bucket mattermost-backup")
    assert names.index("restart seaweedfs-s3") < names.index("bucket mattermost") < at
    assert (
        steps[at]
        .script.rstrip()
        .split("\n")[0]
        .endswith("/etc/seaweedfs/s3.json mattermost-backup && exit 0; sleep 2; done")
    )


def test_the_bucket_helper_reads_the_identity_asked_for(tmp_path):
    import json

    from mmdeploy.components.storage import s3

    config = tmp_path / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {"name": "mattermost", "credentials": [{"accessKey": "A1", "secretKey": "S1"}]},
                    {"name": "mattermost-backup", "credentials": [{"accessKey": "A2", "secretKey": "S2"}]},
                ]
            }
        )
    )
    assert s3.read_credentials(str(config)) == ("A1", "S1")
    assert s3.read_credentials(str(config), "mattermost-backup") == ("A2", "S2")
    assert s3.main(["bucket", "check", "127.0.0.1", "1", "us-east-1", "b", str(config), "x", "y"]) == 2  # usage


def test_an_own_storage_repository_refused_before_any_host(own, site):
    with pytest.raises(InventoryError, match=r"settings\.backup\.s3.*storage hosts"):
        site("backup.repository=s3")  # no storage hosts, no backup.s3
    with pytest.raises(InventoryError, match=r"settings\.backup\.repository.*MinIO"):
        own("storage.server=minio", "storage.version=RELEASE.2025-09-07T16-13-09Z")
    with pytest.raises(InventoryError, match=r"settings\.backup\.storage_bucket.*must differ from storage\.bucket"):
        own("backup.storage_bucket=mattermost")
    with pytest.raises(InventoryError, match=r"backup\.storage_bucket"):
        own("backup.storage_bucket=Not_A_Bucket")


def test_a_backup_host_that_is_a_db_host_is_refused_for_postgresql(write_inventory):
    """pgBackRest's repository host and a DB host each write /etc/pgbackrest.conf."""
    text = SITE.replace("roles: [db]}\n  - {name: db2", "roles: [db, backup]}\n  - {name: db2")
    assert "roles: [db, backup]" in text
    path = write_inventory(text)
    with pytest.raises(
        InventoryError, match=r"site\.yml:10: hosts\[4\]\.roles: db1 would be the backup host.*is a DB host"
    ):
        inventory.load(path, ["backup.enabled=true"])
    inventory.load(path, ["backup.enabled=true", "database.engine=mysql", "mattermost.version=10.11.23"])
    inventory.load(path, ["backup.enabled=false"])  # nothing to refuse


def test_the_backup_host_reaches_the_storage_balancer_and_nothing_more(own):
    from mmdeploy.components import firewall as fw
    from mmdeploy.components.haproxy import layers

    def reached(inv) -> set[tuple[str, int]]:
        """(host, port) that bk1 (10.0.0.51) may reach."""
        return {(h.name, r["port"]) for h in inv.hosts for r in fw.rules(inv, h, []) if "10.0.0.51" in r["v4"]}

    # Exactly one flow more than with the repository on the backup host: the storage
    # balancer on the proxy (not the storage hosts: the balancer reaches them).
    assert reached(own()) - reached(own("backup.repository=host")) == {("lb1", 8333)}
    assert reached(own("backup.repository=host")) - reached(own()) == set()
    (layer,) = [x for x in layers(own(), own().host("lb1")) if x.name == "storage"]
    assert "10.0.0.51" in layer.clients  # HAProxy admits it
    (layer,) = [x for x in layers(own("backup.repository=host"), own().host("lb1")) if x.name == "storage"]
    assert "10.0.0.51" not in layer.clients


def test_backup_results_and_restore_times():
    from mmdeploy.backups import parse_results, pgbackrest_time

    parts = parse_results(
        "noise\nRESULT part=database ok=1 seconds=12 bytes=4096 label=20261129-120000F "
        "detail=pgbackrest full\nRESULT part=files ok=0 seconds=1 bytes=0 label=- detail=no app "
        "server answered\n"
    )
    assert [(p.part, p.ok, p.bytes) for p in parts] == [("database", True, 4096), ("files", False, 0)]
    now = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
    assert pgbackrest_time("2026-11-29 14:03:00", now) == "2026-11-29 14:03:00.000+00"
    assert pgbackrest_time("2026-11-29T15:03:00+01:00", now) == "2026-11-29 14:03:00.000+00"
    assert pgbackrest_time("2026-11-29 14:03:00.250Z", now) == "2026-11-29 14:03:00.250+00"
    with pytest.raises(InventoryError, match="future"):
        pgbackrest_time("2026-11-29 16:00:00", now)
    with pytest.raises(InventoryError, match="expected a time"):
        pgbackrest_time("yesterday", now)


def test_mariadb_forced_command_allows_four_commands_only():
    from mmdeploy.components.mysql import backup as myb
    from mmdeploy.components.mysql.flavor import MARIADB

    script = myb.forced_command(MARIADB)
    for command in ("role)", "backup)", "binlogs)", "receive)"):
        assert command in script
    r = subprocess.run(
        ["bash", "-c", script],
        env={"SSH_ORIGINAL_COMMAND": "rm -rf /", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "not allowed" in r.stderr


def test_tagged_lines_keep_other_lines(site, tmp_path):
    from mmdeploy.facts import Fact
    from mmdeploy.ops.lines import TaggedLines

    path = tmp_path / "ssh" / "authorized_keys"
    path.parent.mkdir()
    path.write_text("ssh-ed25519 AAAAoperator operator@laptop\nssh-ed25519 AAAAold mmdeploy-backup\n")
    owner = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    step = TaggedLines(
        str(path),
        ['restrict,from="10.0.0.21" ssh-ed25519 AAAAnew mmdeploy-backup'],
        "mmdeploy-backup",
        owner=owner,
        group=group,
    )
    remote = LocalRemote(site().host("db1"))

    def facts():
        r = remote.run(step.facts()[0])
        return {step.facts()[0]: Fact(r.rc, r.stdout)}

    change = step.check(facts())
    assert change is not None
    step.apply(remote, change)
    assert path.read_text().splitlines() == [
        "ssh-ed25519 AAAAoperator operator@laptop",
        'restrict,from="10.0.0.21" ssh-ed25519 AAAAnew mmdeploy-backup',
    ]
    assert step.check(facts()) is None


# --- the migration -----------------------------------------------------------------------


def _tablesum(fmt: str, types: str, text: str) -> tuple[str, str]:
    from mmdeploy.migrate import TABLESUM

    r = subprocess.run([sys.executable, "-c", TABLESUM, fmt, types], input=text.encode(), capture_output=True)
    assert r.returncode == 0, r.stderr
    count, total = r.stdout.decode().split()
    return count, total


def test_the_same_rows_have_the_same_checksum_on_both_engines():
    # MySQL's batch format (tinyint booleans, NULL, \t \n \\ escapes), rows in one order ...
    mysql = 'a1\t1\tline one\\nline two\t{"b": 1, "a": [1, 2]}\tNULL\na2\t0\ttab\\there \\\\ back\tNULL\t3.5\n'
    # ... PostgreSQL's COPY text (booleans t/f, \N, jsonb spacing), in another order.
    pg = 'a2\tf\ttab\\there \\\\ back\t\\N\t3.5\na1\tt\tline one\\nline two\t{"a": [1, 2], "b": 1}\t\\N\n'
    assert _tablesum("mysql", "s,b,s,j,f", mysql) == _tablesum("pg", "s,b,s,j,f", pg)
    assert _tablesum("mysql", "s,b,s,j,f", mysql)[0] == "2"
    changed = pg.replace("line two", "line 2")
    assert _tablesum("mysql", "s,b,s,j,f", mysql) != _tablesum("pg", "s,b,s,j,f", changed)
    missing = pg.split("\n", 1)[1]
    assert _tablesum("pg", "s,b,s,j,f", missing)[0] == "1"


def test_load_file_follows_the_guide():
    from mmdeploy.components.mysql import migrate as my
    from mmdeploy.components.postgresql import migrate as pg

    load = pg.load_file(
        "10.0.0.31", "s3cret", [("Channels", "Type", "channel_type")], my.EXCLUDED, my.EXCLUDED_PREFIXES
    )
    assert "FROM mysql://mmuser:s3cret@10.0.0.31:3306/mattermost" in load
    assert "INTO pgsql://postgres@unix:/var/run/postgresql:5432/mattermost" in load
    assert "WITH data only, truncate," in load and "create no tables, create no indexes" in load
    assert 'column Channels.Type to "channel_type" drop typemod' in load
    assert "type tinyint when (<= precision 4) to boolean using tinyint-to-boolean" in load
    assert "~<IR_>" in load and "'db_migrations'" in load and "'Configurations'" in load
    assert "ALTER SCHEMA public RENAME TO mattermost" in load and "ALTER SCHEMA mattermost RENAME TO public" in load
    script = pg.write_load_file(load)
    assert "s3cret" not in script  # base64 on standard input, never readable in a command line
    # An '@' in the password is doubled (pgloader's grammar), the rest taken as is: a single
    # one made pgloader read "h:c ..." as host and port (DIGIT-CHAR-P expected).
    hostile = pg.load_file("10.0.0.31", "d\"q'b %41@h:c #$(id);ü@", [], (), ())
    assert "FROM mysql://mmuser:d\"q'b %41@@h:c #$(id);ü@@@10.0.0.31:3306/mattermost" in hostile


def test_schema_differences_become_problems():
    from mmdeploy.components.mysql import migrate as my
    from mmdeploy.migrate import MigrationReport, _plan_tables

    src = {
        "Posts": [("id", "varchar"), ("message", "mediumtext"), ("legacycol", "text")],
        "schema_migrations": [("version", "bigint")],
        "Old": [("id", "varchar")],
    }
    dst = {"posts": [("id", "character varying", "varchar"), ("message", "text", "text"), ("newcol", "text", "text")]}
    report = MigrationReport(False, True, "db1", "db1", "10.11.4")
    tables = _plan_tables(src, dst, report, my)
    assert tables == [("Posts", ["id", "message"])]
    assert any("legacycol" in p for p in report.problems)
    assert any("newcol" in w for w in report.warnings) and any("Old" in w for w in report.warnings)


# --- drift ---------------------------------------------------------------------------------


def test_drift_names_the_minority_and_every_node_without_one():
    from mmdeploy.driftcheck import compare

    out = []
    compare("app", "release", {"app1": "10.11.5", "app2": "10.11.5", "app3": "10.11.4"}, out)
    assert [(d.host, d.value, d.expected) for d in out] == [("app3", "10.11.4", "10.11.5")]
    out = []
    compare("app", "config", {"app1": "aaa", "app2": "bbb"}, out)
    assert sorted(d.host for d in out) == ["app1", "app2"]
    out = []
    compare("app", "config", {"app1": "aaa"}, out)
    assert out == []


def test_drift_hashes_leave_out_what_differs_per_node_by_design(tmp_path):
    """Each app server listens on and advertises its own address (config.json, or the
    units' environment with the config in the database): drift's hashes of two nodes that
    differ only there are equal, and a shared key still tells them apart."""
    import json
    import shutil

    from mmdeploy import driftcheck

    from pathlib import Path

    inv = inventory.load(Path(__file__).resolve().parents[2] / "hosts" / "multi.yml")

    def hashes(host, config: dict, env: str) -> dict:
        (tmp_path / "config.json").write_text(json.dumps(config))
        (tmp_path / "mattermost.env").write_text(env)
        lines = [
            line.replace(driftcheck.CONFIG, str(tmp_path / "config.json")).replace(
                driftcheck.ENV_FILE, str(tmp_path / "mattermost.env")
            )
            for line in driftcheck._mattermost_script(host).splitlines()
            if "config=$(" in line and (shutil.which("jq") or "dbconfig" in line)
        ]
        out = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, check=True).stdout
        return dict(line.split("=", 1) for line in out.split())

    def node(address: str, emoji: bool = True) -> tuple[dict, str]:
        config = {
            "ServiceSettings": {"ListenAddress": f"{address}:8065", "EnableCustomEmoji": emoji},
            "MetricsSettings": {"Enable": True, "ListenAddress": f"{address}:8067"},
            "ClusterSettings": {"Enable": True, "AdvertiseAddress": address},
        }
        env = (
            f'MM_CONFIG="postgres://x"\nMM_JOBSETTINGS_RUNJOBS="false"\nMM_CLUSTERSETTINGS_ADVERTISEADDRESS="{address}"\n'
            f'MM_SERVICESETTINGS_LISTENADDRESS="{address}:8065"\nMM_METRICSSETTINGS_LISTENADDRESS="{address}:8067"\n'
        )
        return config, env

    app1, app2 = inv.host("app1"), inv.host("app2")
    first, second = hashes(app1, *node("10.0.0.22")), hashes(app2, *node("10.0.0.23"))
    assert first == second and first["dbconfig"]
    config, env = node("10.0.0.23", emoji=False)
    other = hashes(app2, config, env.replace("postgres://x", "postgres://y"))
    assert other["dbconfig"] != first["dbconfig"]
    if "config" in first:  # jq here (the hosts have it: the deploy installs it)
        assert other["config"] != first["config"]


def test_backup_alert_rules_render(site, tmp_path):
    from mmdeploy.component import render as render_template

    text = render_template(site(), "backup/rules.yml.j2", max_age="26h", max_age_seconds=93600, backup_host="job1")
    import yaml

    rules = {r["alert"]: r for r in yaml.safe_load(text)["groups"][0]["rules"]}
    assert rules["MattermostBackupTooOld"]["expr"].endswith("> 93600")
    assert "{{ $labels.part }}" in rules["MattermostBackupFailed"]["annotations"]["summary"]
    assert rules["MattermostBackupMissing"]["for"] == "26h"
    assert hashlib.sha256(text.encode()).hexdigest()


def test_restore_starts_from_a_backup_on_the_sites_timeline():
    """After a point-in-time restore branched timeline 2 off timeline 1 at 0/6000868, a
    backup taken later on timeline 1 belongs to an abandoned history: a restore to a later
    moment must start from a backup before the branch (or one on timeline 2)."""
    import json as _json

    from mmdeploy.components.postgresql.backup import choose_backup

    info = _json.dumps(
        [
            {
                "archive": [{"id": "15-1", "min": "000000010000000000000003", "max": "000000020000000000000009"}],
                "backup": [
                    {
                        "label": "F",
                        "archive": {"start": "000000010000000000000005"},
                        "lsn": {"start": "0/5000028"},
                        "timestamp": {"stop": 100},
                    },
                    {
                        "label": "D1",
                        "archive": {"start": "000000010000000000000007"},
                        "lsn": {"start": "0/7000028"},
                        "timestamp": {"stop": 200},
                    },
                    {
                        "label": "D2",
                        "archive": {"start": "000000020000000000000008"},
                        "lsn": {"start": "0/8000028"},
                        "timestamp": {"stop": 400},
                    },
                ],
            }
        ]
    )
    history = "== 2\n1\t0/6000868\tbefore 2026-11-29 19:42:19+00\n"
    assert choose_backup(info, history, 300)[0] == "F"
    assert "not D1" in choose_backup(info, history, 300)[1]
    assert choose_backup(info, history, 500)[0] == "D2"
    assert choose_backup(info, history, None)[0] == "D2"
    assert choose_backup(info, history, 50)[0] is None
    # One timeline only: the newest backup before the target.
    single = info.replace("000000020000000000000009", "000000010000000000000009")
    assert choose_backup(single, "", 300)[0] == "D1"


def test_the_restore_point_is_the_db_primarys_next_whole_second(site, monkeypatch):
    """After every server stopped: the DB primary's clock rounded up to a whole second
    and waited for (the real script, run by the local bash); no answer, no point."""
    import time

    from mmdeploy import dbtier, upgrades
    from mmdeploy.dbtier import NodeState
    from mmdeploy.errors import MMDeployError

    inv = site()
    db1 = inv.host("db1")

    class Fleet:
        def remote(self, host):
            assert host is db1
            return LocalRemote(host)

    monkeypatch.setattr(
        dbtier,
        "status",
        lambda _inv: [NodeState(host=db1, reachable=True, running=True, role="primary", writable=True)],
    )
    before = time.time()
    point = upgrades._quiet_point(Fleet(), inv)
    assert point and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00", point)
    epoch = datetime.strptime(point, "%Y-%m-%d %H:%M:%S+00").replace(tzinfo=timezone.utc).timestamp()
    assert before < epoch <= before + 2 and time.time() >= epoch  # after every earlier write, and passed

    def unreachable(_inv):
        raise MMDeployError("db1 unreachable")

    monkeypatch.setattr(dbtier, "status", unreachable)
    assert upgrades._quiet_point(Fleet(), inv) is None  # the upgrade goes on with the start time


# --- disaster recovery: the repository holds another cluster's backups ---------------------

OLD_ID, NEW_ID = 7442105983344381234, 7443290716537896960  # the new one made later (its initdb)


def _info(*ids: int, backups: int = 1) -> str:
    import json as _json

    return _json.dumps(
        [
            {
                "name": "mattermost",
                "status": {"code": 0 if backups else 2},
                "db": [{"id": i + 1, "repo-key": 1, "system-id": sid, "version": "15"} for i, sid in enumerate(ids)],
                "backup": [{"label": f"B{n}"} for n in range(backups)],
            }
        ]
    )


def test_whose_backups_the_repository_holds():
    from mmdeploy.components.postgresql.stanza import initdb_time, owner

    same = owner(_info(OLD_ID), {"db1": f"{OLD_ID}\n", "db2": f"{OLD_ID}\n"})
    assert same.kind == "ours" and not same.other and same.message == ""
    fresh = owner(_info(OLD_ID), {"db1": f"{NEW_ID}\n", "db2": ""}, "the backup repository on job1")
    assert fresh.other and (fresh.repository, fresh.cluster) == (OLD_ID, NEW_ID)
    assert "the backup repository on job1 holds the backups of another PostgreSQL cluster" in fresh.message
    assert f"system identifier {OLD_ID}" in fresh.message and "`inv restore`" in fresh.message
    # After a stanza-upgrade the newest db entry is the current one.
    assert owner(_info(NEW_ID - 5, OLD_ID), {"db1": str(OLD_ID)}).kind == "ours"
    # No stanza yet, pgBackRest unreadable, or no DB host answering: nothing to say.
    assert owner("[]", {"db1": str(NEW_ID)}).kind == "none"
    assert owner("not json", {"db1": str(NEW_ID)}).kind == "none"
    assert owner(_info(OLD_ID), {"db1": "", "db2": "psql: error"}).kind == "none"
    assert initdb_time(NEW_ID) == NEW_ID >> 32 and 1.7e9 < initdb_time(NEW_ID) < 1.8e9


def test_a_disaster_recovery_reads_the_timeline_histories_from_the_repository():
    """The fresh DB host's archive-get refuses (another cluster): the backup host lists
    and reads the history files, printed as choose_backup reads them."""
    import json as _json

    from mmdeploy.components.postgresql.stanza import archive_id, histories_script

    info = _json.loads(_info(OLD_ID))
    info[0]["archive"] = [{"id": "15-1", "min": "000000010000000000000003", "max": "00000003000000000000000A"}]
    assert archive_id(_json.dumps(info)) == "15-1" and archive_id("[]") is None and archive_id("{") is None
    script = histories_script("15-1")
    assert "repo-ls archive/mattermost/15-1 --filter='[.]history$'" in script
    assert 'repo-get archive/mattermost/15-1/"$h"' in script and "runuser -u pgbackrest" in script
    fake = 'pgbackrest() { case $2 in repo-ls) echo 00000002.history; echo 0000000A.history;; repo-get) echo "$3";; esac; }\n'
    local = script.replace("cd /tmp && runuser -u pgbackrest -- pgbackrest", "pgbackrest")
    out = subprocess.run(["bash", "-c", fake + local], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "== 2",
        "archive/mattermost/15-1/00000002.history",
        "== 10",
        "archive/mattermost/15-1/0000000A.history",
    ]


class _View:
    """Facts as the hosts would answer: host name -> {command -> output}; no entry: fails."""

    def __init__(self, answers):
        self.answers = answers

    def facts(self, host, commands):
        from mmdeploy.facts import Fact

        got = self.answers.get(host.name, {})
        return {c: Fact(0, got[c]) if c in got else Fact(1, "") for c in commands}


def test_a_fresh_deploy_leaves_another_clusters_stanza_alone_and_says_to_restore(site, tmp_path):
    from mmdeploy.components import backup as bc
    from mmdeploy.components import mattermost as mm
    from mmdeploy.components.postgresql import backup as pgb
    from mmdeploy.components.postgresql.stanza import SYSTEM_ID
    from mmdeploy.facts import FactCache

    inv = site()
    repository = bc.BackupRepository()

    def answers(cluster):
        return {"job1": {pgb.info_command(): _info(OLD_ID)}, "db1": {SYSTEM_ID: cluster}, "db2": {SYSTEM_ID: cluster}}

    def steps(prepared):
        secrets = Secrets(tmp_path / "s.yml", Redactor())
        return repository.steps(Context(inv, inv.host("job1"), secrets, FactCache(None), prepared))

    other = repository.prepare(inv, _View(answers(str(NEW_ID))))
    assert other.other and repository.found_warnings(other) == [other.message]
    assert steps(other) == []  # never stanza-create (or upgrade) onto another cluster's
    ours = repository.prepare(inv, _View(answers(str(OLD_ID))))
    assert repository.found_warnings(ours) == [] and [s.name for s in steps(ours)] == [
        "pgBackRest stanza mattermost (and the archiving check)"
    ]
    # The DB hosts do not answer (a plan before they exist): no verdict, the usual steps.
    unknown = repository.prepare(inv, _View({"job1": {pgb.info_command(): _info(OLD_ID)}}))
    assert unknown.kind == "none" and len(steps(unknown)) == 1
    # Nor a first admin and team in the database the restore replaces.
    admin = mm.MattermostAdmin()
    assert admin.prepare(inv, _View(answers(str(NEW_ID)))) is True
    assert admin.prepare(inv, _View(answers(str(OLD_ID)))) is False
    ctx = Context(inv, inv.host("app1"), Secrets(tmp_path / "s.yml", Redactor()), FactCache(None), True)
    assert admin.steps(ctx) == []
    mysql = site("database.engine=mysql", "mattermost.version=10.11.4")
    assert bc.repository_owner(mysql, lambda h, c: pytest.fail("nothing to read")).kind == "none"


def test_the_backup_host_trusts_the_host_keys_the_deploy_read(site):
    """A replaced machine keeps its address and gets new host keys: the backup host's
    known_hosts are the keys read now, not the first ones it met."""
    from mmdeploy.components import backup as bc

    inv = site()
    keys = {
        f"host keys {name}": f"ssh-ed25519 AAAA{name} root@{name}\necdsa-sha2-nistp256 BBBB{name} root@{name}\n"
        for name in ("db1", "db2", "app1", "app2")
    }
    (step,) = bc.Backup._known_hosts("/x/known_hosts", bc._pulled(inv), keys)
    assert step.content.decode().splitlines() == [
        f"10.0.0.{n} {kind} {blob}{name}"
        for name, n in (("db1", 31), ("db2", 32), ("app1", 11), ("app2", 12))
        for kind, blob in (("ssh-ed25519", "AAAA"), ("ecdsa-sha2-nistp256", "BBBB"))
    ]
    del keys["host keys db2"]  # it did not answer: its old keys stay as they were
    assert bc.Backup._known_hosts("/x/known_hosts", bc._pulled(inv), keys) == []


def test_the_backup_timers_pause_while_the_repository_is_another_clusters(site, tmp_path):
    from mmdeploy.components import backup as bc
    from mmdeploy.facts import FactCache

    inv = site()
    keys = {"root": "ssh-ed25519 AAAAr", bc.pgb.REPO_USER: "ssh-ed25519 AAAAp"}
    keys |= {f"postgres@{db}": f"ssh-ed25519 AAAA{db}" for db in ("db1", "db2")}
    keys |= {f"pg paths {db}": "15" for db in ("db1", "db2")}

    def timers(prepared):
        ctx = Context(inv, inv.host("job1"), Secrets(tmp_path / "s.yml", Redactor()), FactCache(None), prepared)
        return {s.unit: s.running for s in bc.Backup().steps(ctx) if s.name.startswith("service mmdeploy-backup")}

    assert timers(keys) == {t: True for t in bc.TIMERS}
    assert timers({**keys, bc.PAUSED: "1"}) == {t: False for t in bc.TIMERS}


def test_restored_files_are_from_before_the_fresh_cluster():
    """The copies the backup timers took on the new, empty site (after the fresh cluster was
    made) are not the site's files."""
    from mmdeploy.backups import files_cutoff

    made = datetime(2026, 12, 1, 14, 0, 0, tzinfo=timezone.utc).timestamp()
    assert files_cutoff(None, None) is None
    assert files_cutoff(None, made) == "20261201T135959Z"
    assert files_cutoff("2026-12-01 13:00:00.000+00", made) == "20261201T130000Z"
    assert files_cutoff("2026-12-01 15:00:00.000+00", made) == "20261201T135959Z"
