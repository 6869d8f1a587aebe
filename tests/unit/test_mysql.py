"""The MySQL-family component with fake facts: both flavors' SQL (Oracle MySQL's pinned:
it cannot run here), my.cnf, probe parsing, the live-role decision, the most advanced
replica (errant transactions refused) and the Mattermost user scoped per app host."""

import pytest

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components import mysql as my
from mmdeploy.dbtier import Topology, decide
from mmdeploy.errors import MMDeployError
from mmdeploy.facts import Fact
from mmdeploy.ops import SQL
from mmdeploy.secrets import Redactor, Secrets
from mmdeploy.dbtier.component import DB_MONITORING_PASSWORD, DB_PASSWORD

SITE = """\
pattern: single
ssh:
  user: root
settings:
  mattermost: {{version: 10.11.4}}
  database: {{engine: mysql, flavor: {flavor}, memory_mb: 2048}}
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
fenced=0
unit=enabled/active
read_only=0
user_schemas=1
replica_client=10.0.0.15
Rpl_semi_sync_master_clients=1
Rpl_semi_sync_master_status=ON
Rpl_semi_sync_slave_status=OFF
gtid_current_pos=0-236-15
gtid_binlog_state=0-236-15
gtid_slave_pos=
[replication]
"""

REPLICA = """\
fenced=0
unit=enabled/active
read_only=1
user_schemas=1
Rpl_semi_sync_master_clients=0
Rpl_semi_sync_master_status=OFF
Rpl_semi_sync_slave_status=ON
gtid_current_pos=0-236-14
gtid_binlog_state=0-236-14
gtid_slave_pos=0-236-14
[replication]
*************************** 1. row ***************************
                Slave_IO_State: Waiting for master to send event
                   Master_Host: 10.0.0.14
              Slave_IO_Running: Yes
             Slave_SQL_Running: Yes
                Last_SQL_Error: 
         Seconds_Behind_Master: 0
                   Gtid_IO_Pos: 0-236-15
"""

ORACLE_REPLICA = """\
fenced=0
unit=enabled/active
read_only=1
user_schemas=1
super_read_only=1
gtid_executed=aaaaaaaa-0000-0000-0000-000000000001:1-100
[replication]
*************************** 1. row ***************************
             Replica_IO_State: Waiting for source to send event
                  Source_Host: 10.0.0.14
           Replica_IO_Running: Yes
          Replica_SQL_Running: Yes
        Seconds_Behind_Source: 3
           Retrieved_Gtid_Set: aaaaaaaa-0000-0000-0000-000000000001:90-110,
bbbbbbbb-0000-0000-0000-000000000002:1-5
            Executed_Gtid_Set: aaaaaaaa-0000-0000-0000-000000000001:1-100,
bbbbbbbb-0000-0000-0000-000000000002:1-5
"""


def load(write_inventory, flavor="mariadb"):
    return inventory.load(write_inventory(SITE.format(flavor=flavor)))


def state(inv, name, text, flavor=my.MARIADB, rc=0):
    return my.parse_probe(flavor, inv.host(name), Fact(rc, text))


class FakeFacts:
    def host(self, name):
        return {"os": "debian 12 bookworm", "mem_kb": "4000000", "cpus": "2"}[name]


def context(inv, name, tmp_path, shared):
    return Context(inv, inv.host(name), Secrets(tmp_path / "s.yml", Redactor()), FakeFacts(), shared)


# --- generated SQL -------------------------------------------------------------------------


# A promotion records the next epoch (mmdeploy-mysql-fence compares them), same SQL in both flavors.
EPOCH = (
    "CREATE DATABASE IF NOT EXISTS `mmdeploy`;\n"
    "CREATE TABLE IF NOT EXISTS `mmdeploy`.`promotions` (epoch INT UNSIGNED PRIMARY KEY, host VARCHAR(255) NOT NULL, "
    "at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);\n"
    "INSERT INTO `mmdeploy`.`promotions` (epoch, host) SELECT COALESCE(MAX(epoch), 0) + 1, @@global.report_host "
    "FROM `mmdeploy`.`promotions`;\n"
)


def test_oracle_statements_are_pinned():
    o = my.ORACLE
    assert o.read_only() == "SET GLOBAL super_read_only = ON;"
    assert o.writable() == "SET GLOBAL super_read_only = OFF;\nSET GLOBAL read_only = OFF;"
    assert o.change_source("10.0.0.14", "'pw'") == (
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.14', SOURCE_PORT=3306, SOURCE_USER='mmrepl', "
        "SOURCE_PASSWORD='pw', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1;"
    )
    assert o.promote(True) == (
        "STOP REPLICA SQL_THREAD;\nSET GLOBAL rpl_semi_sync_source_enabled = ON;\n"
        "SET GLOBAL super_read_only = OFF;\nSET GLOBAL read_only = OFF;\n" + EPOCH + "STOP REPLICA;\nRESET REPLICA ALL;"
    )
    assert o.follow("10.0.0.15", "'pw'") == (
        "STOP REPLICA;\nSET GLOBAL super_read_only = ON;\nSET GLOBAL rpl_semi_sync_source_enabled = OFF;\n"
        + o.change_source("10.0.0.15", "'pw'")
        + "\nSTART REPLICA;"
    )
    assert o.reset_binlog("8.4") == "RESET BINARY LOGS AND GTIDS;"
    assert o.reset_binlog("8.0") == "RESET MASTER;"
    assert o.grant_replication("10.0.0.15") == (
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'mmrepl'@'10.0.0.15';\n"
        "GRANT SELECT, RELOAD, LOCK TABLES, REPLICATION SLAVE, REPLICATION CLIENT, SHOW VIEW, EVENT, TRIGGER "
        "ON *.* TO 'mmrepl'@'10.0.0.15';"
    )
    assert o.dump_command("/c") == (
        "mysqldump --defaults-extra-file=/c --single-transaction --routines --events --triggers "
        "--source-data=1 --set-gtid-purged=ON --all-databases --flush-privileges"
    )
    assert o.grant_monitoring("mmmonitor") == (
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'mmmonitor'@'localhost';\n"
        "GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'mmmonitor'@'localhost';"
    )
    assert o.create_database() == (
        "CREATE DATABASE IF NOT EXISTS `mattermost` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
    )


def test_mariadb_statements():
    m = my.MARIADB
    assert m.change_source("10.0.0.14", "'pw'") == (
        "CHANGE MASTER TO MASTER_HOST='10.0.0.14', MASTER_PORT=3306, MASTER_USER='mmrepl', MASTER_PASSWORD='pw', "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;"
    )
    assert m.promote(True).splitlines() == [
        "STOP SLAVE SQL_THREAD;",
        "SET GLOBAL rpl_semi_sync_master_enabled = ON;",
        "SET GLOBAL read_only = OFF;",
        *EPOCH.splitlines(),
        "STOP SLAVE;",
        "RESET SLAVE ALL;",
    ]
    # A former primary takes its own executed GTIDs as its position; a replica keeps its own.
    assert "SET GLOBAL gtid_slave_pos = @@global.gtid_current_pos;" in m.follow("h", "'p'")
    assert "gtid_slave_pos" not in m.follow("h", "'p'", keep_position=True)
    assert "--gtid --master-data=1 --system=users --insert-ignore" in m.dump_command("/c")
    # MariaDB's names for REPLICATION CLIENT (BINLOG MONITOR) and what SHOW SLAVE STATUS needs.
    assert m.grant_monitoring("mmmonitor").splitlines()[1] == (
        "GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR, SELECT ON *.* TO 'mmmonitor'@'localhost';"
    )


def test_app_user_has_only_mattermost_privileges_on_its_database():
    grant = my.MARIADB.grant_app("10.0.0.12")
    assert "ON `mattermost`.* TO 'mmuser'@'10.0.0.12'" in grant
    assert "ALL PRIVILEGES ON" not in grant.split("\n")[1] and "GRANT OPTION" not in grant.split("\n")[1]
    assert "SUPER" not in grant and "*.*" not in grant
    guard = my.privileges_guard("mmuser", "10.0.0.12", my.APP_PRIVILEGES, "mattermost")
    assert "grantee = '''mmuser''@''10.0.0.12'''" in guard and f"COUNT(*) = {len(my.APP_PRIVILEGES)}" in guard


def test_literals_are_escaped():
    assert my.MARIADB.create_user("u", "h", "it's\\") == "CREATE USER IF NOT EXISTS 'u'@'h' IDENTIFIED BY 'it''s\\\\';"
    assert my.client_host("10.1.0.0/16") == "10.1.0.0/255.255.0.0"
    assert my.client_host("10.1.2.3/32") == "10.1.2.3"


# --- steps of a deploy ---------------------------------------------------------------------


def test_primary_steps_scope_the_user_per_app_host_and_keep_secrets_off_command_lines(write_inventory, tmp_path):
    inv = load(write_inventory)
    states = {"db1": state(inv, "db1", PRIMARY), "db2": state(inv, "db2", REPLICA)}
    topo = decide(my.db_hosts(inv), states, "MySQL-family")
    ctx = context(inv, "db1", tmp_path, topo)
    steps = my.MySQL().steps(ctx)
    names = [s.name for s in steps]
    assert "sql user mmuser@10.0.0.12" in names and "sql user mmuser@10.0.0.13" in names
    assert not any("192.0.2" in n or "10.0.0.14" in n for n in names if "mmuser" in n)  # only app/job hosts
    assert "sql user mmrepl@10.0.0.14" in names and "sql user mmrepl@10.0.0.15" in names
    password = ctx.secrets.get(DB_PASSWORD)
    for step in steps:
        for probe in step.facts():
            assert password not in probe
    user = next(s for s in steps if s.name == "sql user mmuser@10.0.0.12")
    assert isinstance(user, SQL) and password in user.statement
    # The exporter's account, on the socket only; its secret on stdin only.
    monitor_password = ctx.secrets.get(DB_MONITORING_PASSWORD)
    monitor = next(s for s in steps if s.name == "sql user mmmonitor@localhost")
    assert monitor.statement == f"CREATE USER IF NOT EXISTS 'mmmonitor'@'localhost' IDENTIFIED BY '{monitor_password}';"
    assert "sql grants mmmonitor@localhost" in names
    assert all(monitor_password not in probe for step in steps for probe in step.facts())
    # A replica gets no users (they replicate) and its semi-sync source side is off.
    replica_steps = my.MySQL().steps(context(inv, "db2", tmp_path, topo))
    assert not any("mmuser" in s.name or "mmmonitor" in s.name for s in replica_steps)
    assert replica_steps[-1].name == "sql semi-sync source off on a replica"


def test_config_both_flavors(write_inventory, tmp_path):
    inv = load(write_inventory)
    topo = Topology([inv.host("db1")], {}, inv.host("db1"), "writable")
    conf = my.render_config(context(inv, "db2", tmp_path, topo))
    for line in (
        "bind-address = 10.0.0.15",
        "server_id = 167772175",
        "binlog_format = ROW",
        "sync_binlog = 1",
        "innodb_flush_log_at_trx_commit = 1",
        "gtid_strict_mode = ON",
        "log_slave_updates = ON",
        "read_only = ON",
        "rpl_semi_sync_master_wait_point = AFTER_SYNC",
        "rpl_semi_sync_slave_enabled = ON",
        "innodb_buffer_pool_size = 1024M",
        "max_connections = 650",
        "skip_name_resolve = ON",
    ):
        assert line in conf.splitlines(), line
    oracle = my.render_config(context(load(write_inventory, "mysql"), "db1", tmp_path, topo))
    for line in (
        "gtid_mode = ON",
        "enforce_gtid_consistency = ON",
        "super_read_only = ON",
        "log_replica_updates = ON",
        "rpl_semi_sync_source_wait_point = AFTER_SYNC",
        "rpl_semi_sync_source_wait_for_replica_count = 1",
        "plugin_load_add = semisync_source.so",
    ):
        assert line in oracle.splitlines(), line
    assert "gtid_strict_mode" not in oracle


def test_server_ids_are_unique_and_stable(write_inventory):
    inv = load(write_inventory)
    assert my.server_id(inv.host("db1"), inv) == 167772174  # 10.0.0.14
    assert my.server_id(inv.host("db2"), inv) != my.server_id(inv.host("db1"), inv)


# --- probe parsing and the live roles ------------------------------------------------------


def test_probe_parsing_mariadb(write_inventory):
    inv = load(write_inventory)
    p, r = state(inv, "db1", PRIMARY), state(inv, "db2", REPLICA)
    assert (p.role, p.writable, p.replicas) == ("primary", True, ["10.0.0.15"])
    assert p.sync == "semi-sync on (1 semi-sync replica(s))"
    assert (r.role, r.writable, r.upstream, r.lag_seconds) == ("replica", False, "10.0.0.14", 0.0)
    assert str(r.applied) == "0-236-14" and str(r.received) == "0-236-15"  # received beyond applied
    assert r.sync == "semi-sync replica on"
    down = state(inv, "db2", "fenced=1\nunit=masked/inactive\n[replication]\n", rc=1)
    assert (down.running, down.fenced, down.role) == (False, True, "unknown")


def test_probe_parsing_oracle_multiline_gtid_sets(write_inventory):
    inv = load(write_inventory, "mysql")
    r = state(inv, "db2", ORACLE_REPLICA, my.ORACLE)
    assert (r.role, r.writable, r.upstream, r.lag_seconds) == ("replica", False, "10.0.0.14", 3.0)
    assert str(r.applied) == "aaaaaaaa-0000-0000-0000-000000000001:1-100,bbbbbbbb-0000-0000-0000-000000000002:1-5"
    assert str(r.received) == "aaaaaaaa-0000-0000-0000-000000000001:1-110,bbbbbbbb-0000-0000-0000-000000000002:1-5"


def test_decide_fresh_promoted_and_split_brain(write_inventory):
    inv = load(write_inventory)
    hosts = my.db_hosts(inv)
    fresh = "fenced=0\nunit=/\n[replication]\n"
    assert (
        decide(
            hosts, {"db1": state(inv, "db1", fresh, rc=127), "db2": state(inv, "db2", fresh, rc=127)}, "MySQL-family"
        ).primary.name
        == "db1"
    )
    # After a failover db2 is writable: a deploy keeps it primary.
    promoted = PRIMARY.replace("10.0.0.15", "10.0.0.14")
    old = REPLICA.split("[replication]")[0] + "[replication]\n"
    assert (
        decide(hosts, {"db1": state(inv, "db1", old), "db2": state(inv, "db2", promoted)}, "MySQL-family").primary.name
        == "db2"
    )
    with pytest.raises(MMDeployError, match="two writable"):
        decide(hosts, {"db1": state(inv, "db1", PRIMARY), "db2": state(inv, "db2", promoted)}, "MySQL-family")
    with pytest.raises(MMDeployError, match="not clear"):
        decide(hosts, {"db1": state(inv, "db1", old), "db2": state(inv, "db2", old)}, "MySQL-family")


def test_replica_plans_never_reseed_data(write_inventory):
    inv = load(write_inventory)
    hosts = my.db_hosts(inv)
    primary = state(inv, "db1", PRIMARY)

    def plan(text):
        states = {"db1": primary, "db2": state(inv, "db2", text)}
        return my.plan_replica(decide(hosts, states, "MySQL-family"), inv.host("db2"))

    assert plan(REPLICA) is None  # healthy: nothing
    assert plan(REPLICA.replace("Slave_SQL_Running: Yes", "Slave_SQL_Running: No")) == "start"
    standalone = REPLICA.split("[replication]")[0] + "[replication]\n"
    assert plan(standalone) == "repoint"  # its transactions are all on the primary
    assert plan(standalone.replace("user_schemas=1", "user_schemas=0")) == "seed"
    errant = standalone.replace("gtid_current_pos=0-236-14", "gtid_current_pos=0-237-16")
    with pytest.raises(MMDeployError, match="db.rejoin db2"):
        plan(errant)


# --- the most advanced replica -------------------------------------------------------------


def test_most_advanced_mariadb(write_inventory):
    inv = load(write_inventory)
    e = my.MySQLEngine("mariadb")
    a = state(inv, "db1", REPLICA)  # received 15, applied 14
    b = state(inv, "db2", REPLICA.replace("Gtid_IO_Pos: 0-236-15", "Gtid_IO_Pos: 0-236-14"))
    assert e.most_advanced([b, a]) is a
    c = state(inv, "db2", REPLICA.replace("gtid_current_pos=0-236-14", "gtid_current_pos=0-236-15"))
    assert e.most_advanced([a, c]) is c  # same received: the one that applied more
    assert b.received < a.received and not a.received < b.received  # the orchestration's "behind" test
    diverged = state(inv, "db2", REPLICA.replace("Gtid_IO_Pos: 0-236-15", "Gtid_IO_Pos: 0-999-15"))
    with pytest.raises(MMDeployError, match="diverged"):
        e.most_advanced([a, diverged])


def test_most_advanced_oracle_refuses_errant_transactions(write_inventory):
    inv = load(write_inventory, "mysql")
    e = my.MySQLEngine("mysql")
    a = state(inv, "db1", ORACLE_REPLICA, my.ORACLE)
    behind = state(inv, "db2", ORACLE_REPLICA.replace(":90-110", ":90-105"), my.ORACLE)
    assert e.most_advanced([behind, a]) is a
    errant = state(
        inv,
        "db2",
        ORACLE_REPLICA.replace(
            "1-5\n            Executed", "1-5,cccccccc-0000-0000-0000-000000000003:1\n            Executed"
        ),
        my.ORACLE,
    )
    with pytest.raises(MMDeployError, match="errant transactions.*cccccccc"):
        e.most_advanced(
            [
                errant,
                a.__class__(
                    **{
                        **a.__dict__,
                        "received": a.received.union(my.GtidSet.parse("aaaaaaaa-0000-0000-0000-000000000001:111")),
                    }
                ),
            ]
        )


def test_gtid_set_arithmetic():
    s = my.GtidSet.parse("A:1-10:12,B:5")
    assert str(s) == "a:1-10:12,b:5"
    assert str(s - my.GtidSet.parse("a:3-4,b:5")) == "a:1-2:5-10:12"
    assert my.GtidSet.parse("a:1-5").issubset(s) and not s.issubset(my.GtidSet.parse("a:1-12"))
    assert str(my.GtidSet.parse("a:1-3").union(my.GtidSet.parse("a:4-6"))) == "a:1-6"
    assert my.maria_missing(my.MariaPos.parse("0-1-10"), my.maria_state_map("0-1-9,0-2-20")) == ["0-1-10"]
    assert my.maria_missing(my.MariaPos.parse("0-1-9"), my.maria_state_map("0-1-9,0-2-20")) == []


def test_self_fence_watches_the_peers_and_fences_like_failover(write_inventory, tmp_path):
    import subprocess

    inv = load(write_inventory)
    ctx = context(inv, "db1", tmp_path, Topology([inv.host("db1")], {}, inv.host("db1"), "writable"))
    script = my.render_fence(ctx)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert 'PEERS="10.0.0.15"' in script and "--defaults-extra-file=/etc/mysql/mmdeploy-replication.cnf" in script
    assert my.fence_script(my.MARIADB, "mmdeploy-mysql-fence: $why") in script
    assert "SET GLOBAL read_only = ON;" in script and "FROM `mmdeploy`.`promotions`" in script
    # On every DB node, fenced or not (it does nothing while the node is read-only or fenced).
    topo = decide(
        my.db_hosts(inv),
        {"db1": state(inv, "db1", PRIMARY.replace("fenced=0", "fenced=1")), "db2": state(inv, "db2", REPLICA)},
    )
    for name in ("db1", "db2"):
        names = [s.name for s in my.MySQL().steps(context(inv, name, tmp_path, topo))]
        assert "file /usr/local/sbin/mmdeploy-mysql-fence" in names, names


def test_self_fence_marks_no_node_that_rejoin_made_a_replica_meanwhile(write_inventory, tmp_path):
    """The watcher found a read-only node replicating from nobody whose peer holds a newer
    epoch (a former primary back after a failover); by the time it would mark it fenced,
    `inv db.rejoin` has set up replication (and removed any mark): it marks nothing. Run
    with a fake `mysql` answering from files and a `sleep` that ends the loop."""
    import subprocess

    from mmdeploy.components.mysql.flavor import FENCED

    inv = load(write_inventory)
    ctx = context(inv, "db1", tmp_path, Topology([inv.host("db1")], {}, inv.host("db2"), "writable"))
    fenced = tmp_path / "fenced"
    script = my.render_fence(ctx).replace(FENCED, str(fenced))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Replica status: empty at the watcher's first look, set up by the rejoin at its second.
    (bin_dir / "mysql").write_text(
        "#!/bin/bash\n"
        f'case "$*" in\n'
        f"  *read_only*) echo 1;;\n"
        f'  *promotions*) case "$*" in *--host=*) echo 5;; *) echo 3;; esac;;\n'
        f"  *) n=$(cat {tmp_path}/status-calls 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/status-calls\n"
        f'     [ "$n" -ge 1 ] && echo "Master_Host: 10.0.0.15";;\n'
        "esac\n"
    )
    (bin_dir / "sleep").write_text(f"#!/bin/bash\n[ ! -e {tmp_path}/slept ] && touch {tmp_path}/slept\n")
    for tool in ("mysql", "sleep"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    run = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert (tmp_path / "status-calls").read_text().strip() == "2", run.stdout + run.stderr
    assert not fenced.exists(), fenced.read_text()
    # Without the rejoin (still replicating from nobody), the same look marks it.
    (tmp_path / "status-calls").write_text("-5\n")
    (tmp_path / "slept").unlink()
    subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert fenced.read_text().startswith("fenced by mmdeploy-mysql-fence: 10.0.0.15 holds promotion epoch 5")
