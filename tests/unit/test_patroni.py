"""Automatic PostgreSQL failover (database.ha: patroni): validation with file, line and key;
Patroni's and etcd's rendered configuration; HAProxy's leader and replica routes; the
engine reading Patroni's view (probe outputs recorded on the bed); the clients' routes;
failover-db and db.rejoin asking Patroni, and their refusals, with a fake tier."""

import re

import pytest
import yaml

from mmdeploy import dbtier, inventory
from mmdeploy.component import Context
from mmdeploy.components import etcd
from mmdeploy.components.haproxy import expected_up, layer_problems, layers
from mmdeploy.components.haproxy import render as render_haproxy
from mmdeploy.components.mattermost import datasource
from mmdeploy.components.postgresql import PatroniEngine, patroni
from mmdeploy.components.postgresql.patroni_engine import patroni_probe
from mmdeploy.components.postgresql.probe import probe
from mmdeploy.components.postgresql.config import Paths
from mmdeploy.dbtier import NodeState, decide
from mmdeploy.dbtier.component import DB_REPLICATION_PASSWORD
from mmdeploy.errors import InventoryError, MMDeployError
from mmdeploy.facts import Fact
from mmdeploy.secrets import Redactor, Secrets

SITE = """\
pattern: cluster
settings:
  domain: chat.example.com
  proxy:
    vip: [10.0.0.100/24, 10.0.0.101/24]
hosts:
  - {name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: lb2, address: 192.0.2.2, private_address: 10.0.0.2, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [app]}
  - {name: app3, address: 192.0.2.13, private_address: 10.0.0.13, roles: [app]}
  - {name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, private_address: 10.0.0.32, roles: [db]}
  - {name: db3, address: 192.0.2.33, private_address: 10.0.0.33, roles: [db]}
  - {name: s1, address: 192.0.2.41, private_address: 10.0.0.41, roles: [search, storage, pushproxy]}
  - {name: s2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [search, storage, pushproxy]}
  - {name: s3, address: 192.0.2.43, private_address: 10.0.0.43, roles: [search, storage]}
  - {name: s4, address: 192.0.2.44, private_address: 10.0.0.44, roles: [storage]}
"""

# A small site that opts in: pattern single, one proxy, three DB hosts.
SMALL = """\
pattern: single
settings:
  database: {ha: patroni}
hosts:
  - {name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, private_address: 10.0.0.32, roles: [db]}
  - {name: db3, address: 192.0.2.33, private_address: 10.0.0.33, roles: [db]}
"""


def problems(write_inventory, text):
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text))
    return e.value.problems


@pytest.fixture
def site(write_inventory):
    def make(text=SITE, host="db1"):
        inv = inventory.load(write_inventory(text))
        secrets = Secrets(inv.secrets_path, Redactor())
        return Context(inv, inv.host(host), secrets, facts=None)

    return make


# --- validation ---------------------------------------------------------------------------


def test_cluster_pattern_defaults_to_patroni_and_multi_does_not(site, write_inventory):
    assert site().inventory.settings.database.ha == "patroni"
    single = inventory.load(write_inventory(SMALL.replace("  database: {ha: patroni}\n", "  domain: a.example\n")))
    assert single.settings.database.ha == "none"


def test_mysql_family_with_the_cluster_pattern_is_refused_with_a_reason(write_inventory):
    text = SITE.replace(
        "  domain: chat.example.com\n",
        "  domain: chat.example.com\n  database: {engine: mysql}\n  mattermost: {version: 10.11.23}\n",
    )  # a version that runs on MySQL
    found = problems(write_inventory, text)
    assert len(found) == 1
    assert re.match(
        r".*site\.yml:4: settings\.database\.engine: the cluster pattern fails over the database "
        r"automatically, which here only PostgreSQL has \(Patroni\); the MySQL family has no packaged "
        r"automatic failover, and Mattermost v11 requires PostgreSQL",
        found[0],
    )


def test_patroni_needs_postgresql_a_proxy_and_proxies_apart_from_the_db(write_inventory):
    mysql = problems(
        write_inventory,
        SMALL.replace("{ha: patroni}", "{ha: patroni, engine: mysql}\n  mattermost: {version: 10.11.23}"),
    )
    assert any("settings.database.ha: patroni manages PostgreSQL only" in p for p in mysql)
    shared = problems(
        write_inventory,
        SMALL.replace("private_address: 10.0.0.33, roles: [db]", "private_address: 10.0.0.33, roles: [db, proxy]"),
    )
    assert any("hosts[5].roles: db3 is a proxy and a DB host" in p for p in shared)


def test_the_cluster_pattern_refuses_a_human_in_the_loop(write_inventory):
    text = SITE.replace("  domain: chat.example.com\n", "  domain: chat.example.com\n  database: {ha: none}\n")
    assert any(
        "settings.database.ha: the cluster pattern has no human in the failover loop" in p
        for p in problems(write_inventory, text)
    )


def test_patronis_timing_rule_and_etcds_odd_quorum(write_inventory):
    rule = problems(
        write_inventory, SMALL.replace("{ha: patroni}", "{ha: patroni}\n  patroni: {ttl: 4, retry_timeout: 2}")
    )
    assert any(
        "settings.patroni.ttl: Patroni's rule loop_wait + 2 * retry_timeout <= ttl does not hold: 1 + 2 * 2 > 4" in p
        for p in rule
    )
    two = SMALL.replace("  - {name: db3, address: 192.0.2.33, private_address: 10.0.0.33, roles: [db]}\n", "")
    assert any("needs an odd number of at least 3 of them" in p for p in problems(write_inventory, two))


# --- Patroni's and etcd's configuration -------------------------------------------------------


def test_patroni_configuration(site):
    ctx = site()
    doc = yaml.safe_load(patroni.config(ctx, Paths("15"), 4096))
    password = ctx.secrets.get(DB_REPLICATION_PASSWORD)
    assert (doc["scope"], doc["namespace"], doc["name"]) == ("mattermost", "/mmdeploy/", "db1")
    # Its own etcd member first, then the others; REST API on the private address only.
    assert doc["etcd3"]["hosts"] == ["10.0.0.31:2379", "10.0.0.32:2379", "10.0.0.33:2379"]
    assert doc["restapi"]["listen"] == "10.0.0.31:8008"
    assert doc["restapi"]["authentication"]["username"] == "mmdeploy"
    assert doc["restapi"]["allowlist"] == ["127.0.0.1", "10.0.0.31", "10.0.0.32", "10.0.0.33"]
    dcs = doc["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (5, 1, 2)
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["max_connections"] == 500  # 4 GB: Mattermost's sizing
    pg = doc["postgresql"]
    assert pg["listen"] == "127.0.0.1,10.0.0.31:5432" and pg["config_dir"] == "/etc/postgresql/15/main"
    # The superuser over the local socket (no password key: Patroni's initdb would write one).
    assert pg["authentication"]["superuser"] == {"username": "postgres"}
    assert pg["authentication"]["replication"] == {"username": "replicator", "password": password}
    assert pg["authentication"]["rewind"] == pg["authentication"]["replication"]
    hba = "\n".join(pg["pg_hba"])
    for source in ("10.0.0.1/32", "10.0.0.2/32", "10.0.0.11/32", "10.0.0.21/32"):  # proxies, apps, job
        assert re.search(rf"^host\s+mattermost\s+mmuser\s+{re.escape(source)}\s+scram-sha-256$", hba, re.M)
    assert re.search(r"^host\s+replication\s+replicator\s+10\.0\.0\.32/32\s+scram-sha-256$", hba, re.M)
    assert re.search(r"^host\s+replication\s+replicator\s+127\.0\.0\.1/32\s+scram-sha-256$", hba, re.M)
    assert not re.search(r"^host\s+replication\s+replicator\s+10\.0\.0\.31/32", hba, re.M)  # itself


def test_the_rule_holds_for_the_defaults_and_the_step_order(site):
    ctx = site()
    assert patroni.Patroni().validate(ctx.inventory.settings) == []
    first = patroni.start_script(ctx.host, Paths("15"), wait_for_init=False)
    other = patroni.start_script(ctx.inventory.host("db2"), Paths("15"), wait_for_init=True)
    assert "initialize" not in first and "systemctl start patroni@15-main" in first
    assert "get --print-value-only /mmdeploy/mattermost/initialize" in other
    assert other.index("initialize") < other.index("systemctl start")


def test_dynamic_configuration_differences():
    wanted = {"ttl": 5, "postgresql": {"parameters": {"max_connections": 500, "wal_level": "replica"}}}
    current = {
        "ttl": 5,
        "postgresql": {"parameters": {"max_connections": "500", "wal_level": "replica"}, "use_slots": True},
    }
    assert patroni.config_differences(current, wanted) == []
    current["ttl"] = 30
    current["postgresql"]["parameters"]["max_connections"] = 100
    assert patroni.config_differences(current, wanted) == ["ttl=5", "postgresql.parameters.max_connections=500"]
    assert patroni.config_differences({}, {"synchronous_mode": True}) == ["synchronous_mode=True"]


def test_etcd_environment(site):
    ctx = site(host="db2")
    env = dict(
        line.split("=", 1)
        for line in etcd.environment(ctx.inventory, ctx.host).splitlines()
        if line and not line.startswith("#")
    )
    assert env["ETCD_NAME"] == "db2" and env["ETCD_DATA_DIR"] == etcd.DATA_DIR
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "db1=http://10.0.0.31:2380,db2=http://10.0.0.32:2380,db3=http://10.0.0.33:2380"
    )
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://10.0.0.32:2379,http://127.0.0.1:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://10.0.0.32:2380"
    assert env["ETCD_ENABLE_V2"] == "false" and env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_PRE_VOTE"] == "true"  # a member coming back does not unseat the leader
    # Masked before its package is installed; the restart handler takes one member at a time.
    steps = etcd.Etcd().steps(ctx)
    assert steps[0].script == "systemctl mask etcd" and steps[1].name.startswith("packages etcd-server")


def test_etcd_status_parsing(site):
    inv = site().inventory
    out = (
        '[{"Endpoint":"http://10.0.0.31:2379","Status":{"header":{"member_id":11},"leader":22}},'
        '{"Endpoint":"http://10.0.0.32:2379","Status":{"header":{"member_id":22},"leader":22}}]'
    )
    statuses, leader = etcd.parse_status(inv, out)
    assert sorted(statuses) == ["db1", "db2"] and leader == "db2"


# --- HAProxy's routes ---------------------------------------------------------------------------


def test_haproxy_routes_follow_patronis_rest_api(site):
    ctx = site(host="lb1")
    found = {layer.name: layer for layer in layers(ctx.inventory, ctx.host)}
    primary, replicas = found["postgresql"], found["postgresql-replicas"]
    assert primary.mode == "tcp" and primary.long_sessions
    assert primary.binds == ("10.0.0.100:5432", "10.0.0.101:5432")
    assert replicas.binds == ("10.0.0.100:5433", "10.0.0.101:5433")
    assert [(s.address, s.check_port) for s in primary.servers] == [
        ("10.0.0.31:5432", 8008),
        ("10.0.0.32:5432", 8008),
        ("10.0.0.33:5432", 8008),
    ]
    assert [s.address for s in replicas.servers] == ["10.0.0.31:5432", "10.0.0.32:5432", "10.0.0.33:5432"]
    conf = render_haproxy(ctx)
    backend = conf[conf.index("backend postgresql\n") : conf.index("frontend postgresql-replicas")]
    assert "option httpchk OPTIONS /primary" in backend and "timeout server 30m" in backend
    assert "default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions" in backend
    assert "    server db1 10.0.0.31:5432 check port 8008\n" in backend
    frontend = conf[conf.index("frontend postgresql\n") : conf.index("backend postgresql\n")]
    assert "mode tcp" in frontend and "timeout client 30m" in frontend
    assert re.search(
        r"tcp-request connection reject unless \{ src 10\.0\.0\.11 10\.0\.0\.12 10\.0\.0\.13 "
        r"10\.0\.0\.21 \}",
        frontend,
    )
    assert expected_up(ctx.inventory, ctx.host)["postgresql"] == "one"


def test_layer_problems_one_any_all():
    states = {
        ("postgresql", "db1"): True,
        ("postgresql", "db2"): False,
        ("postgresql", "db3"): False,
        ("postgresql-replicas", "db1"): False,
        ("postgresql-replicas", "db2"): True,
        ("postgresql-replicas", "db3"): False,
        ("search", "s1"): True,
        ("search", "s2"): False,
    }
    assert layer_problems(states, {"postgresql": "one", "postgresql-replicas": "any"}) is None
    assert layer_problems(states, {"search": "all"}) == "down: search/s2"
    states[("postgresql", "db2")] = True
    assert layer_problems(states, {"postgresql": "one"}) == "postgresql: 2 servers up (db1, db2), expected exactly one"
    assert layer_problems({}, {"postgresql": "one"}) == "no servers reported for postgresql"


# --- the engine: Patroni's view ---------------------------------------------------------------------

LEADER_PG = """\
installed=1
data=1
standby_signal=0
fenced=0
unit=disabled/inactive
sysid=7713678793093513357
cluster_state=in production
recovery=false
read_only=off
sync_names=db3
sync_commit=on
lsn=0/6125498
timeline=7
received=0/6119A10
replayed=0/6119A10
replay_age=38.128688
replica=db3,10.0.0.33,streaming,sync,0/6125498
replica=db2,10.0.0.32,streaming,async,0/6125498
slot=db2,true
slot=db3,true
"""
REPLICA_PG = """\
installed=1
data=1
standby_signal=1
fenced=0
unit=disabled/inactive
sysid=7713678793093513357
cluster_state=in archive recovery
recovery=true
read_only=off
sync_names=
sync_commit=on
lsn=
timeline=5
received=0/6125498
replayed=0/6125498
replay_age=11.259406
receiver=10.0.0.31,streaming
"""
CLUSTER = (
    '{"members": [{"name": "db1", "role": "leader", "state": "running", "host": "10.0.0.31", '
    '"timeline": 7}, {"name": "db2", "role": "replica", "state": "running", "host": "10.0.0.32", '
    '"timeline": 7, "lag": 0}, {"name": "db3", "role": "sync_standby", "state": "running", '
    '"host": "10.0.0.33", "timeline": 7, "lag": 0}]}'
)


def facts(host, pg_out, own, cluster=CLUSTER, unit="active"):
    return {
        probe(host): Fact(0, pg_out),
        patroni_probe(host): Fact(0, f"unit={unit}\npatroni={own}\ncluster={cluster}\n"),
    }


def test_engine_state_from_postgresql_and_patroni(site):
    inv = site().inventory
    h = {x.name: x for x in inv.with_role("db")}
    engine = PatroniEngine()
    leader = engine.state(h["db1"], facts(h["db1"], LEADER_PG, '{"role": "master", "state": "running"}'))
    sync = engine.state(h["db3"], facts(h["db3"], REPLICA_PG, '{"role": "replica", "state": "running"}'))
    other = engine.state(
        h["db2"], facts(h["db2"], REPLICA_PG, '{"role": "replica", "state": "running", "pending_restart": true}')
    )
    assert leader.writable and leader.named_primary == "db1" and not leader.fenced
    assert leader.sync == "leader; synchronous standby: db3"
    assert sync.upstream == "10.0.0.31" and sync.streaming and sync.extra["patroni_role"] == "sync_standby"
    assert sync.detail.startswith("patroni active: sync_standby running, lag 0 bytes") and "timeline 7" in sync.detail
    assert "unit disabled" not in sync.detail  # postgresql@V-main says nothing under Patroni
    assert "PENDING RESTART" in other.detail
    topo = decide(inv.with_role("db"), {"db1": leader, "db2": other, "db3": sync})
    assert topo.primary.name == "db1" and topo.reason == "writable"
    # The synchronous standby is the one to promote, even when another received as much.
    assert engine.most_advanced([other, sync]) is sync


def test_engine_state_when_patroni_does_not_answer(site):
    inv = site().inventory
    h = inv.host("db2")
    node = PatroniEngine().state(h, facts(h, REPLICA_PG, "", cluster="", unit="inactive"))
    assert node.named_primary is None and node.extra["patroni_role"] == "-"
    assert node.detail.startswith("patroni inactive: - (not answering)")


def test_the_engine_refuses_the_streaming_moves(site):
    with pytest.raises(MMDeployError, match="managed by Patroni"):
        PatroniEngine().promote(None, None)


def test_client_endpoints_streaming_and_patroni(site, write_inventory):
    ctx = site()
    # The routes follow whichever node leads: no topology is needed, even with no primary.
    hosts = ctx.inventory.with_role("db")
    down = {h.name: NodeState(host=h, reachable=False, running=False, role="unknown", writable=False) for h in hosts}
    primary, replicas = dbtier.client_endpoints(ctx.inventory, decide(hosts, down))
    assert (primary, replicas) == ("10.0.0.100:5432", ["10.0.0.100:5433"])
    assert datasource(ctx.inventory.settings, primary, "p:w").startswith("postgres://mmuser:p%3Aw@10.0.0.100:5432/")
    streaming = inventory.load(write_inventory(SMALL.replace("{ha: patroni}", "{ha: none}")))
    hosts = streaming.with_role("db")
    states = {
        h.name: NodeState(
            host=h,
            reachable=True,
            running=True,
            role="primary" if h.name == "db2" else "replica",
            writable=h.name == "db2",
        )
        for h in hosts
    }
    topo = decide(hosts, states)
    assert dbtier.client_endpoints(streaming, topo) == ("10.0.0.32:5432", ["10.0.0.31:5432", "10.0.0.33:5432"])


def test_verify_reads_patronis_view():
    view = {
        "members": [
            {"name": "db1", "role": "leader", "state": "running"},
            {"name": "db2", "role": "sync_standby", "state": "streaming"},
        ]
    }
    assert patroni.view_problem(view, ["db1", "db2", "db3"], True) == "not in the cluster: db3"
    view["members"].append({"name": "db3", "role": "replica", "state": "running"})
    assert patroni.view_problem(view, ["db1", "db2", "db3"], True) is None
    view["members"][1]["role"] = "replica"
    assert patroni.view_problem(view, ["db1", "db2", "db3"], True) == "no synchronous standby: commits wait for none"
    view["members"][1]["role"] = "leader"
    assert patroni.view_problem(view, ["db1", "db2", "db3"], True) == "2 leaders in Patroni's view, expected one"


def test_verify_counts_the_members_left_while_one_is_down():
    """db1 (the old leader) is dead: Patroni still lists it until its key expires; verify
    found it down, so the view counts db2 (leader) and db3 (sync standby), with a warning."""
    from mmdeploy.component import Warn

    view = {
        "members": [
            {"name": "db1", "role": "leader", "state": "running"},
            {"name": "db2", "role": "leader", "state": "running"},
            {"name": "db3", "role": "sync_standby", "state": "streaming"},
        ]
    }
    names = ["db1", "db2", "db3"]
    assert patroni.view_problem(view, names, True) == "2 leaders in Patroni's view, expected one"
    found = patroni.view_problem(view, names, True, frozenset({"db1"}))
    assert isinstance(found, Warn) and found == "db2 leads, db1 down"
    # Down or not, a cluster without a leader among the living fails.
    view["members"][1]["role"] = "replica"
    assert patroni.view_problem(view, names, True, frozenset({"db1"})) == "0 leaders in Patroni's view, expected one"


# --- failover-db and db.rejoin ask Patroni ---------------------------------------------------------


class FakeManaged:
    manages_failover = True
    label = "PostgreSQL"

    def __init__(self, tier):
        self.tier, self.calls = tier, []

    def most_advanced(self, replicas):
        return PatroniEngine().most_advanced(replicas)

    def switchover(self, remote, leader, candidate):
        self.calls.append(("switchover", remote, leader.name, candidate.name))
        self.tier.promote(candidate.name)

    def failover_to(self, remote, candidate):
        self.calls.append(("failover", remote, candidate.name))
        self.tier.promote(candidate.name)

    def start_member(self, remote):
        self.calls.append(("start", remote))
        self.tier.nodes[remote] = state(self.tier.by_name[remote], "replica", streaming=True)

    def reinitialize(self, remote, member):
        self.calls.append(("reinit", member.name))


class FakeTier:
    def __init__(self, inv, nodes):
        self.hosts = inv.with_role("db")
        self.by_name = {h.name: h for h in self.hosts}
        self.nodes, self.engine = nodes, FakeManaged(self)
        self.remotes = {h.name: h.name for h in self.hosts}
        self.started, self.lines = 0.0, []

    def promote(self, name):
        for n, s in list(self.nodes.items()):
            if s.reachable:
                self.nodes[n] = state(
                    self.by_name[n],
                    "primary" if n == name else "replica",
                    streaming=n != name,
                    role_tag="leader" if n == name else "replica",
                )

    def host(self, name):
        return self.by_name[name]

    def say(self, message):
        self.lines.append(message)

    def states(self, hosts=None):
        return {h.name: self.nodes[h.name] for h in (hosts or self.hosts)}


def state(host, role, reachable=True, streaming=False, role_tag=None, received=100, patroni="active"):
    s = NodeState(
        host=host,
        reachable=reachable,
        running=reachable,
        role=role if reachable else "unknown",
        writable=role == "primary" and reachable,
        received=received,
        streaming=streaming,
    )
    s.extra = {"patroni_role": role_tag or ("leader" if role == "primary" else "replica"), "patroni_unit": patroni}
    return s


@pytest.fixture
def tier(site):
    def make(db1="up"):
        inv = site().inventory
        h = {x.name: x for x in inv.with_role("db")}
        return FakeTier(
            inv,
            {
                "db1": state(h["db1"], "primary") if db1 == "up" else state(h["db1"], "unknown", reachable=False),
                "db2": state(h["db2"], "replica", streaming=True, role_tag="sync_standby"),
                "db3": state(h["db3"], "replica", streaming=True, received=120),
            },
        )

    return make


def test_planned_switchover_goes_to_the_synchronous_standby(tier):
    t = tier()
    result = dbtier._failover(t, None, False)
    assert t.engine.calls == [("switchover", "db2", "db1", "db2")]
    assert (result.old, result.new, result.rejoined) == ("db1", "db2", "db1")


def test_to_another_than_the_synchronous_standby_is_refused(tier):
    t = tier()
    with pytest.raises(InventoryError, match="db3 is not the synchronous standby \\(db2\\)"):
        dbtier._failover(t, "db3", False)
    assert t.engine.calls == []


def test_no_leader_without_force_is_refused_and_force_fails_over(tier):
    t = tier(db1="dead")
    with pytest.raises(MMDeployError, match="Patroni fails over by itself"):
        dbtier._failover(t, None, False)
    assert t.engine.calls == []
    result = dbtier._failover(t, None, True)
    assert t.engine.calls == [("failover", "db2", "db2")] and result.new == "db2"


def test_a_patroni_refusal_is_read_from_patronictls_output():
    from mmdeploy.components.postgresql.patroni_engine import answered
    from mmdeploy.errors import Refused

    ok = '2026-11-30 04:00:01.12 Successfully switched over to "db2"\n+ Cluster: main ----+'
    assert answered(ok, "switchover") == ok
    # patronictl exits 0 on these: the answer is all there is.
    for line, reason in [
        (
            "2026-11-30 04:00:01.12 Switchover failed, details: 412, candidate name does not match with sync_standby",
            "Switchover failed, details: 412, candidate name does not match with sync_standby",
        ),
        ("2026-11-30 04:00:01.12 Switchover failed, details: 503, Switchover failed", "503, Switchover failed"),
    ]:
        with pytest.raises(Refused, match=re.escape(reason)):
            answered(line + "\n+ Cluster: main ----+", "Patroni switchover db1 -> db2")
    # Taken, its result not seen yet: the caller waits for the leader (asking again could
    # move it twice).
    unknown = "2026-11-30 04:00:01.12 Switchover failed, details: 503, Switchover status unknown"
    assert answered(unknown, "switchover") == unknown


def test_a_switchover_patroni_refuses_is_chosen_again_from_a_fresh_view(tier, monkeypatch):
    """The synchronous standby Patroni had named changed before it was asked: the choice
    is made again (now db3) and asked again; a refusal that lasts is reported."""
    from mmdeploy.dbtier import orchestrate
    from mmdeploy.errors import Refused

    monkeypatch.setattr(orchestrate, "MANAGER_RETRY", 0.0)
    t = tier()
    real = t.engine.switchover

    def refuse_once(remote, leader, candidate):
        if not t.engine.calls:
            t.engine.calls.append(("refused", candidate.name))
            t.nodes["db2"].extra["patroni_role"], t.nodes["db3"].extra["patroni_role"] = "replica", "sync_standby"
            raise Refused("Patroni switchover db1 -> db2: Patroni refused (412, candidate name does not match)")
        real(remote, leader, candidate)

    t.engine.switchover = refuse_once
    result = dbtier._failover(t, None, False)
    assert t.engine.calls == [("refused", "db2"), ("switchover", "db3", "db1", "db3")] and result.new == "db3"
    assert any("asking again" in line for line in t.lines)

    t = tier()
    monkeypatch.setattr(orchestrate, "MANAGER_SETTLE", 0.0)

    def refuse(remote, leader, candidate):
        raise Refused("Patroni switchover db1 -> db2: Patroni refused (503, Switchover failed)")

    t.engine.switchover = refuse
    with pytest.raises(MMDeployError, match=r"Patroni refused \(503, Switchover failed\); nothing was changed"):
        dbtier._failover(t, None, False)


def test_rejoin_starts_patroni_where_it_stopped(tier, monkeypatch):
    from mmdeploy.dbtier import orchestrate

    t = tier()
    t.nodes["db3"] = state(t.by_name["db3"], "replica", streaming=False, patroni="inactive")
    orchestrate._managed_rejoin(t, "db3")
    assert t.engine.calls == [("start", "db3")]
    assert any("db3 replicates from db1" in line for line in t.lines)
    with pytest.raises(InventoryError, match="db1 is the primary"):
        orchestrate._managed_rejoin(t, "db1")
