"""The MySQL family (MariaDB 10.11) on the test bed: db1 primary, db2 replica, deployed over
SSH; idempotence, replication, semi-sync, read-only replica, the Mattermost user scoped to
the app and job hosts, the mysqld exporter's login; then the reliability scenarios: kill
the primary under a writer, `inv failover-db`, `inv db.rejoin` (once, then three times in a
row alternating direction), a planned switchover back, and a primary partitioned for 30 s
and failed over with --force, which fences itself when healed; no acknowledged write lost.

The DB tasks (failover-db, db.rejoin, db.status) take no --set, so the module writes the
bed's inventory with the engine set into a sibling file and uses it for every command."""

import re
import secrets
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import mmdeploy
from mmdeploy import testbed

from .conftest import inv, metric, on
from .dbwriter import Writer
from .mysqlclient import MySQLClient

pytestmark = pytest.mark.e2e
ONLY = ("--only", "base,mysql,mysql-replication")


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


def sql(host: str, statement: str) -> str:
    return on(host, f"mariadb -NB -e {shlex.quote(statement)}").strip()


@pytest.fixture(scope="module")
def site(bed):
    base = Path(bed("single", fresh=True))
    data = yaml.safe_load(base.read_text())
    # database.engine=mysql, mattermost.version=10.11.4; a small buffer pool on a shared machine.
    data["settings"]["database"] = {"engine": "mysql", "flavor": "mariadb", "memory_mb": 1024}
    data["settings"]["mattermost"] = {"version": "10.11.4"}
    path = base.with_name(base.stem + "-mysql.yml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.with_name(path.stem + ".secrets.yml").unlink(missing_ok=True)
    first = inv("deploy", "--inventory", str(path), *ONLY, "--yes")
    addr = {h.name: h.private_address for h in mmdeploy.load(path).hosts}
    return str(path), first, addr


@pytest.fixture(scope="module")
def writer_account(site):
    """A test-only account for the writer on this machine (mmuser is scoped to app hosts)."""
    path, _, addr = site
    password = secrets.token_hex(12)
    gateway = testbed.GATEWAY
    sql(
        "db1",
        f"CREATE USER 'mmwriter'@'{gateway}' IDENTIFIED BY '{password}'; "
        f"GRANT ALL ON mattermost.* TO 'mmwriter'@'{gateway}';",
    )
    return MySQLClient("mmwriter", password, "mattermost")


def test_deploy_then_nothing_changes(site):
    path, first, _ = site
    assert totals(first.stdout)[0] > 15
    again = inv("deploy", "--inventory", path, *ONLY, "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_row_written_on_primary_appears_on_replica(site):
    sql(
        "db1", "CREATE TABLE IF NOT EXISTS mattermost.e2e (id INT PRIMARY KEY); INSERT INTO mattermost.e2e VALUES (42);"
    )
    for _ in range(50):
        if sql("db2", "SELECT id FROM mattermost.e2e") == "42":
            break
        time.sleep(0.1)
    assert sql("db2", "SELECT id FROM mattermost.e2e") == "42"


def test_semi_sync_on_and_replica_read_only(site):
    _, _, addr = site
    assert sql("db1", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'") == "Rpl_semi_sync_master_status\tON"
    assert sql("db1", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'").endswith("\t1")
    assert sql("db1", "SELECT @@global.rpl_semi_sync_master_wait_point") == "AFTER_SYNC"
    assert sql("db2", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_slave_status'") == "Rpl_semi_sync_slave_status\tON"
    assert sql("db2", "SELECT @@global.read_only, @@global.gtid_strict_mode, @@global.binlog_format") == "1\t1\tROW"
    status = on("db2", "mariadb -e 'SHOW SLAVE STATUS\\G'")
    assert f"Master_Host: {addr['db1']}" in status and "Using_Gtid: Slave_Pos" in status
    assert sql("db1", "SELECT @@global.read_only") == "0"
    assert sql("db1", "SELECT @@global.server_id") != sql("db2", "SELECT @@global.server_id")


def _login_from(host: str, address: str, password: str) -> subprocess.CompletedProcess:
    """Log in as mmuser from inside `host` (PyMySQL copied in: the image has Python only)."""
    import pymysql

    container = testbed.container_name(host)
    subprocess.run(["docker", "cp", str(Path(pymysql.__file__).parent), f"{container}:/tmp/pymysql"], check=True)
    script = (
        "import sys; sys.path.insert(0, '/tmp'); import pymysql\n"
        f"c = pymysql.connect(host='{address}', user='mmuser', password=sys.stdin.read(), "
        "database='mattermost', connect_timeout=5)\n"
        "cur = c.cursor(); cur.execute('SELECT CURRENT_USER()'); print(cur.fetchone()[0])\n"
    )
    return subprocess.run(
        ["docker", "exec", "-i", container, "python3", "-c", script], input=password, capture_output=True, text=True
    )


def test_mmuser_only_from_app_and_job_hosts(site):
    path, _, addr = site
    password = yaml.safe_load(Path(path).with_name(Path(path).stem + ".secrets.yml").read_text())["db_password"]
    ok = _login_from("app1", addr["db1"], password)
    assert ok.returncode == 0 and ok.stdout.strip() == f"mmuser@{addr['app1']}", ok.stderr
    assert _login_from("job1", addr["db1"], password).returncode == 0
    refused = _login_from("proxy1", addr["db1"], password)
    # 1130: no account at all matches proxy1's address
    assert refused.returncode != 0 and "(1130," in refused.stderr, refused.stderr
    grants = sql("db1", f"SHOW GRANTS FOR 'mmuser'@'{addr['app1']}'")
    assert "ON `mattermost`.*" in grants and "ALL PRIVILEGES" not in grants and "SUPER" not in grants


def test_exporter_logs_in_on_primary_and_replica(site):
    # The monitoring account is made on the primary and reaches the replica by replication.
    path, _, addr = site
    inv(
        "deploy",
        "--inventory",
        path,
        "--only",
        "base,mysql,mysql-replication,node-exporter",
        "--limit",
        "db1,db2",
        "--yes",
    )
    for name in ("db1", "db2"):
        assert metric(addr[name], 9104, "mysql_up 1"), f"{name}: the mysqld exporter does not report mysql_up 1"
    # Its privileges cover every collector it runs, the replica's status included.
    assert metric(addr["db2"], 9104, "mysql_exporter_last_scrape_error 0", timeout=10)
    with urllib.request.urlopen(f"http://{addr['db2']}:9104/metrics", timeout=5) as r:
        assert "mysql_slave_status_seconds_behind_master{" in r.read().decode()


def _longest_gap(writer: Writer, since: float) -> float:
    """The longest time between two consecutive acknowledged writes after `since`."""
    times = [t for _, t, _ in writer.acked]
    return max((b - a for a, b in zip(times, times[1:]) if b >= since), default=float("nan"))


def _wait_ssh(host: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (
            subprocess.run(
                ["docker", "exec", testbed.container_name(host), "systemctl", "is-active", "ssh"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            == "active"
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"{host}: ssh did not come back")


def _writable() -> list[str]:
    return [h for h in ("db1", "db2") if sql(h, "SELECT @@global.read_only") == "0"]


def _follows(host: str, primary_address: str) -> bool:
    for _ in range(100):
        status = on(host, "mariadb -e 'SHOW SLAVE STATUS\\G'")
        if (
            f"Master_Host: {primary_address}" in status
            and "Slave_IO_Running: Yes" in status
            and "Slave_SQL_Running: Yes" in status
        ):
            return True
        time.sleep(0.1)
    return False


def _rows_on(writer: Writer, address: str, expected: set[int]) -> set[int]:
    for _ in range(50):  # a replica may still be applying the last rows
        rows = writer.rows_on(address)
        if expected <= rows:
            return rows
        time.sleep(0.1)
    return rows


def _other(host: str) -> str:
    return "db2" if host == "db1" else "db1"


def _kill_failover_rejoin(path: str, addr: dict, client, old: str) -> str:
    """Kill the primary `old` under a writer, fail over with --force, bring it back and
    rejoin it; assert nothing acknowledged is lost, one writable node, the other following.
    Returns the new primary."""
    new = _other(old)
    writer = Writer(client, [addr[old], addr[new]])
    writer.start()
    time.sleep(2)
    subprocess.run(["docker", "kill", testbed.container_name(old)], check=True, capture_output=True)
    killed = time.monotonic()
    failover = inv("failover-db", "--inventory", path, "--force")
    took = time.monotonic() - killed
    time.sleep(2)
    before, after, gap = writer.gap(killed)
    subprocess.run(["docker", "start", testbed.container_name(old)], check=True, capture_output=True)
    _wait_ssh(old)
    on(old, "until mariadb -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done")
    assert _writable() == [new]  # the crashed primary came back read-only
    inv("db.rejoin", "--host", old, "--inventory", path)
    time.sleep(1)
    writer.stop()
    acked = writer.acked_ids()
    lost = acked - _rows_on(writer, addr[new], acked)
    print(
        f"\nkill {old} + failover -> {new}: failover-db took {took:.2f} s; last ack {before:+.2f} s, first ack "
        f"after {after:+.2f} s, unavailable {gap:.2f} s (longest gap {_longest_gap(writer, killed - 1):.2f} s); "
        f"{len(acked)} acked, {len(lost)} lost, {writer.failures} failed inserts"
    )
    assert writer.count_since(killed) > 0, failover.stdout
    assert not lost, f"acknowledged rows lost on the new primary {new}: {sorted(lost)[:10]}"
    assert _writable() == [new]
    assert _follows(old, addr[new])
    assert acked <= _rows_on(writer, addr[old], acked)  # and the rejoined node has them all
    return new


def test_kill_primary_failover_rejoin_loses_no_acknowledged_write(site, writer_account):
    path, _, addr = site
    assert _kill_failover_rejoin(path, addr, writer_account, "db1") == "db2"


def test_planned_switchover_loses_nothing_and_deploy_keeps_it(site, writer_account):
    path, _, addr = site
    writer = Writer(writer_account, [addr["db2"], addr["db1"]])
    writer.start()
    time.sleep(1.5)
    started = time.monotonic()
    inv("failover-db", "--inventory", path, "--to", "db1")
    time.sleep(1.5)
    writer.stop()
    acked = writer.acked_ids()
    print(f"\nswitchover: longest gap between acks {_longest_gap(writer, started):.2f} s; {len(acked)} acked")
    assert writer.count_since(started) > 0
    assert acked <= _rows_on(writer, addr["db1"], acked)
    assert _writable() == ["db1"]
    assert _follows("db2", addr["db1"])
    status = inv("db.status", "--inventory", path)
    assert re.search(r"^db1\s+primary\s+writable", status.stdout, re.M), status.stdout
    again = inv("deploy", "--inventory", path, *ONLY, "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout  # the new topology is kept


def test_failover_to_a_non_replica_is_refused(site):
    path, _, _ = site
    for target, message in (("app1", "is not a DB host"), ("db1", "is not a running replica")):
        refused = inv("failover-db", "--inventory", path, "--to", target, check=False)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr


def test_three_failovers_in_a_row_alternate(site, writer_account):
    path, _, addr = site
    (first,) = _writable()
    seen = [first]
    for _ in range(3):
        seen.append(_kill_failover_rejoin(path, addr, writer_account, seen[-1]))
    assert seen == [first, _other(first), first, _other(first)]


def test_partitioned_primary_accepts_no_write_after_healing_until_rejoined(site, writer_account):
    import pymysql

    path, _, addr = site
    (old,) = _writable()
    new = _other(old)
    container = testbed.container_name(old)
    writer = Writer(writer_account, [addr[old], addr[new]])
    writer.start()
    time.sleep(1.5)
    subprocess.run(["docker", "network", "disconnect", testbed.NETWORK, container], check=True, capture_output=True)
    cut = time.monotonic()
    try:
        inv("failover-db", "--inventory", path, "--force")
        took = time.monotonic() - cut
        # Cut off, it cannot know: it stays writable, but no client reaches it.
        assert sql(old, "SELECT @@global.read_only") == "0"
        time.sleep(max(0.0, 30 - (time.monotonic() - cut)))
    finally:
        subprocess.run(
            ["docker", "network", "connect", "--ip", addr[old], testbed.NETWORK, container],
            check=True,
            capture_output=True,
        )
    healed = time.monotonic()
    while sql(old, "SELECT @@global.read_only") != "1" and time.monotonic() - healed < 30:
        time.sleep(0.1)
    fenced_after = time.monotonic() - healed
    time.sleep(2)
    writer.stop()
    acked = writer.acked_ids()
    lost = acked - _rows_on(writer, addr[new], acked)
    print(
        f"\npartition {old} 30 s + failover --force -> {new}: failover-db took {took:.2f} s; healed node "
        f"read-only {fenced_after:.2f} s after the heal; {len(acked)} acked, {len(lost)} lost"
    )
    assert not lost, f"acknowledged rows lost on the new primary {new}: {sorted(lost)[:10]}"
    assert _writable() == [new]
    assert on(old, "cat /etc/mysql/mmdeploy-fenced").startswith("fenced by mmdeploy-mysql-fence")
    conn = writer_account.connect(addr[old])
    try:
        with pytest.raises(pymysql.err.OperationalError, match="read-only"):
            writer_account.insert(conn, writer.table, 10**9)
    finally:
        conn.close()
    status = inv("db.status", "--inventory", path)
    assert re.search(rf"^{old}\s+FENCED", status.stdout, re.M), status.stdout
    inv("db.rejoin", "--host", old, "--inventory", path)
    assert _writable() == [new]
    assert _follows(old, addr[new])
    assert acked <= _rows_on(writer, addr[old], acked)
