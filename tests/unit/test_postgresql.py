"""The PostgreSQL component with fake facts: probe parsing, the live-role decision (fresh
install, promoted node, split brain), seeding rules, and the rendered pg_hba.conf,
postgresql.conf settings and topology file."""

import pytest

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components import postgresql as pg
from mmdeploy.dbtier import NodeState, Topology, decide
from mmdeploy.dbtier.component import DB_MONITORING_PASSWORD, DB_PASSWORD
from mmdeploy.errors import MMDeployError
from mmdeploy.facts import Fact
from mmdeploy.ops import SQL, Command, File
from mmdeploy.secrets import Redactor, Secrets

SITE = """\
pattern: single
ssh:
  user: root
hosts:
  - name: proxy1
    address: 192.0.2.11
    roles: [proxy]
  - name: app1
    address: 192.0.2.12
    private_address: 10.0.0.12
    roles: [app]
  - name: job1
    address: 192.0.2.13
    private_address: 10.0.0.13
    roles: [jobserver, monitoring]
  - name: db1
    address: 192.0.2.14
    private_address: 10.0.0.14
    roles: [db]
  - name: db2
    address: 192.0.2.15
    private_address: 10.0.0.15
    roles: [db]
"""

PRIMARY = """\
installed=1
data=1
standby_signal=0
fenced=0
unit=enabled/active
sysid=7712655356570835384
cluster_state=in production
conf_primary=db1
recovery=false
read_only=off
sync_names=ANY 1 (db2)
sync_commit=on
lsn=0/3045D50
timeline=1
received=
replayed=
replay_age=
replica=db2,10.0.0.15,streaming,quorum,0/3045D50
slot=db2,t
"""

REPLICA = """\
installed=1
data=1
standby_signal=1
fenced=0
unit=enabled/active
sysid=7712655356570835384
cluster_state=in archive recovery
conf_primary=db1
conf_upstream=10.0.0.14
recovery=true
read_only=off
sync_names=
sync_commit=on
lsn=
timeline=1
received=0/3045D50
replayed=0/3045C00
replay_age=0.4
receiver=10.0.0.14,streaming
"""

STUB = "installed=1\ndata=1\nstandby_signal=0\nfenced=0\nunit=enabled/inactive\nsysid=111\ncluster_state=shut down\n"
FRESH = "installed=0\ndata=0\nstandby_signal=0\nfenced=0\nunit=/inactive\n"


@pytest.fixture
def site(write_inventory):
    inv = inventory.load(write_inventory(SITE))
    return inv, {h.name: h for h in inv.hosts}


def state(host, out: str) -> NodeState:
    return pg.parse_probe(host, Fact(0, out))


def test_lsn_orders_like_postgres():
    assert pg.lsn("0/3045D50") < pg.lsn("0/3045D51") < pg.lsn("1/0")
    assert pg.lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert pg.lsn("") is None


def test_probe_of_a_primary(site):
    _, h = site
    s = state(h["db1"], PRIMARY)
    assert (s.role, s.running, s.writable, s.fenced) == ("primary", True, True, False)
    assert s.received == pg.lsn("0/3045D50")
    assert s.replicas == ["db2(10.0.0.15) streaming quorum"]
    assert "ANY 1 (db2)" in s.sync
    assert s.extra["streaming"] == ["db2"]


def test_probe_of_a_replica(site):
    _, h = site
    s = state(h["db2"], REPLICA)
    assert (s.role, s.running, s.writable) == ("replica", True, False)
    assert s.upstream == "10.0.0.14"
    assert s.received == pg.lsn("0/3045D50") and s.applied == pg.lsn("0/3045C00")
    assert s.lag_seconds == 0.4
    assert "streaming from 10.0.0.14" in s.sync


def test_probe_of_stopped_fresh_and_fenced_nodes(site):
    _, h = site
    assert state(h["db2"], STUB).role == "primary" and not state(h["db2"], STUB).running
    assert state(h["db2"], FRESH).role == "unknown"
    fenced = state(h["db1"], REPLICA.replace("fenced=0", "fenced=1"))
    assert fenced.fenced and "FENCED" in fenced.detail


def test_fresh_install_makes_the_first_db_host_primary(site):
    inv, h = site
    states = {n: state(h[n], FRESH) for n in ("db1", "db2")}
    assert decide(pg.COMPONENTS[0].hosts(inv), states, "PostgreSQL").primary.name == "db1"


def test_a_promoted_node_stays_primary(site):
    inv, h = site
    states = {
        "db1": state(
            h["db1"], REPLICA.replace("10.0.0.14", "10.0.0.15").replace("conf_primary=db1", "conf_primary=db2")
        ),
        "db2": state(h["db2"], PRIMARY.replace("conf_primary=db1", "conf_primary=db2")),
    }
    topo = decide(pg.COMPONENTS[0].hosts(inv), states, "PostgreSQL")
    assert topo.primary.name == "db2"
    assert not pg.needs_seed(topo, h["db1"])  # a healthy replica is never re-seeded


def test_two_writable_nodes_are_refused(site):
    inv, h = site
    states = {"db1": state(h["db1"], PRIMARY), "db2": state(h["db2"], PRIMARY)}
    with pytest.raises(MMDeployError, match="two writable PostgreSQL nodes"):
        decide(pg.COMPONENTS[0].hosts(inv), states, "PostgreSQL")


def test_a_fenced_writer_is_not_a_primary_and_not_in_the_sync_set(site):
    inv, h = site
    states = {
        "db1": state(h["db1"], PRIMARY.replace("fenced=0", "fenced=1")),
        "db2": state(h["db2"], PRIMARY.replace("replica=db2", "replica=db1")),
    }
    topo = decide(pg.COMPONENTS[0].hosts(inv), states, "PostgreSQL")
    assert topo.primary.name == "db2"
    assert topo.replicas == []


def test_without_a_writer_the_primary_the_topology_files_name_wins(site):
    inv, h = site
    down = STUB.replace("sysid=111", "sysid=7712655356570835384") + "conf_primary=db2\n"
    states = {
        "db1": state(h["db1"], REPLICA.replace("conf_primary=db1", "conf_primary=db2")),
        "db2": state(h["db2"], down),
    }
    assert decide(pg.COMPONENTS[0].hosts(inv), states, "PostgreSQL").primary.name == "db2"


def test_seeding_rules(site):
    inv, h = site
    primary = state(h["db1"], PRIMARY)
    topo = Topology([h["db1"], h["db2"]], {"db1": primary, "db2": state(h["db2"], STUB)}, h["db1"], "writable")
    assert pg.needs_seed(topo, h["db2"])  # a stub from pg_createcluster: other system identifier
    topo.states["db2"] = state(h["db2"], FRESH)
    assert pg.needs_seed(topo, h["db2"])
    former = STUB.replace("sysid=111", "sysid=7712655356570835384")
    topo.states["db2"] = state(h["db2"], former)
    with pytest.raises(MMDeployError, match="db.rejoin db2"):
        pg.needs_seed(topo, h["db2"])


@pytest.mark.parametrize(
    "memory_mb, connections, shared, cache, work",
    [
        (1024, 200, 204, 665, 4),
        (8192, 500, 1638, 5324, 8),
        (32768, 1024, 8192, 21299, 16),
    ],
)
def test_sizing_follows_host_memory(memory_mb, connections, shared, cache, work):
    size = pg.sizing(memory_mb)
    assert (
        size["max_connections"],
        size["shared_buffers_mb"],
        size["effective_cache_size_mb"],
        size["work_mem_mb"],
    ) == (connections, shared, cache, work)


def test_topology_file(site):
    _, h = site
    primary = pg.topology_conf(h["db1"], h["db1"], [h["db2"]])
    assert "synchronous_standby_names = 'ANY 1 (db2)'" in primary and "primary_conninfo" not in primary
    assert "# mmdeploy-primary: db1" in primary
    replica = pg.topology_conf(h["db2"], h["db1"], [])
    assert "primary_conninfo = 'host=10.0.0.14 port=5432 user=replicator" in replica
    assert "application_name=db2" in replica and "primary_slot_name = 'db2'" in replica
    assert "password" not in replica  # the password is in ~postgres/.pgpass
    assert "synchronous_standby_names = ''" in pg.topology_conf(h["db1"], h["db1"], [])


def test_synchronous_opt_out(write_inventory):
    inv = inventory.load(write_inventory(SITE + "settings:\n  database:\n    synchronous: false\n"))
    db1, db2 = inv.host("db1"), inv.host("db2")
    assert "synchronous_standby_names = ''" in pg.topology_conf(db1, db1, [db2])


class FakeFacts:
    def host(self, name):
        return {"mem_kb": str(8 * 1024 * 1024), "os": "debian 12 bookworm"}[name]


def steps_for(inv, name, tmp_path, primary="db1"):
    host = inv.host(name)
    ctx = Context(
        inv,
        host,
        Secrets(tmp_path / "s.yml", Redactor()),
        FakeFacts(),
        Topology([inv.host(primary)], {}, inv.host(primary), "writable"),
    )
    return {s.name: s for s in pg.PostgreSQL().steps(ctx)}


def test_pg_hba_and_config_rendered(site, tmp_path):
    inv, _ = site
    steps = steps_for(inv, "db1", tmp_path)
    hba = steps["file /etc/postgresql/15/main/pg_hba.conf"].content.decode()
    lines = [line.split() for line in hba.splitlines() if line.startswith("host")]
    assert ["host", "mattermost", "mmuser", "10.0.0.12/32", "scram-sha-256"] in lines
    assert ["host", "mattermost", "mmuser", "10.0.0.13/32", "scram-sha-256"] in lines
    assert ["host", "replication", "replicator", "10.0.0.15/32", "scram-sha-256"] in lines
    assert ["host", "postgres", "mmmonitor", "127.0.0.1/32", "scram-sha-256"] in lines  # the exporter's DSN
    assert {tuple(line[1:4]) for line in lines} == {
        ("mattermost", "mmuser", "10.0.0.12/32"),
        ("mattermost", "mmuser", "10.0.0.13/32"),
        ("replication", "replicator", "10.0.0.15/32"),
        ("postgres", "replicator", "10.0.0.15/32"),
        ("postgres", "mmmonitor", "127.0.0.1/32"),
    }
    assert all(line[-1] == "scram-sha-256" for line in lines)
    conf = steps["file /etc/postgresql/15/main/conf.d/mmdeploy.conf"].content.decode()
    for wanted in (
        "listen_addresses = 'localhost,10.0.0.14'",
        "max_connections = 500",
        "shared_buffers = 1638MB",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "wal_log_hints = on",
        "synchronous_commit = on",
    ):
        assert wanted in conf


def test_users_database_and_slots_only_on_the_primary(site, tmp_path):
    inv, _ = site
    primary = steps_for(inv, "db1", tmp_path)
    replica = steps_for(inv, "db2", tmp_path)
    sql = [s for s in primary.values() if isinstance(s, SQL)]
    assert [s.name for s in sql] == [
        "sql role replicator",
        "sql role mmuser",
        "sql database mattermost",
        "sql role mmmonitor",
        "password of role mmuser",
        "password of role mmmonitor",
        "sql replication slot db2",
    ]
    assert not [s for s in replica.values() if isinstance(s, SQL)]
    password = Secrets(tmp_path / "s.yml", Redactor()).get(DB_PASSWORD)
    mmuser = primary["sql role mmuser"]
    assert password in mmuser.statement and all(password not in f for f in mmuser.facts())
    monitor_password = Secrets(tmp_path / "s.yml", Redactor()).get(DB_MONITORING_PASSWORD)
    monitor = primary["sql role mmmonitor"]
    assert monitor.statement == (
        f"CREATE ROLE mmmonitor WITH LOGIN PASSWORD '{monitor_password}';\nGRANT pg_monitor TO mmmonitor;"
    )
    assert all(monitor_password not in f for f in monitor.facts())
    assert isinstance(primary["create cluster 15/main"], Command)
    pgpass = primary["file /var/lib/postgresql/.pgpass"]
    assert isinstance(pgpass, File) and pgpass.mode == "0600" and pgpass.owner == "postgres"
