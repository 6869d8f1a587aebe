"""The PostgreSQL tier on the test bed: deploy (db1 primary, db2 synchronous replica),
idempotence, and the reliability scenarios of issue 3. A writer inserts numbered rows from
the control machine and records every acknowledged commit; after every failover no
acknowledged row may be missing and exactly one node may take writes.

The tests run in order and share the bed: each leaves one writable primary and a streaming
replica behind (which node is which changes)."""

import re
import subprocess
import time

import pytest

import mmdeploy
from mmdeploy import dbtier, testbed
from mmdeploy.dbtier.component import DB_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import inv, metric
from .dbwriter import PostgresClient, Writer

pytestmark = pytest.mark.e2e
# The control machine (the bed's gateway) may connect as the Mattermost user, for the writer;
# the DB sizes itself for 1 GB since the bed's containers share this machine's memory.
SETTINGS = ("--set", "database.memory_mb=1024", "--set", f"database.extra_clients=[{testbed.GATEWAY}]")
ONLY = ("--only", "base,postgresql,postgresql-replication")  # this module tests the DB tier alone


@pytest.fixture(scope="module")
def site(bed):
    path = str(bed("single", fresh=True))
    t0 = time.monotonic()
    first = inv("deploy", "--inventory", path, *ONLY, *SETTINGS, "--yes")
    seconds = time.monotonic() - t0
    print(f"\nfirst deploy of the PostgreSQL tier: {seconds:.1f} s")
    inventory = mmdeploy.load(path)
    client = PostgresClient("mmuser", Secrets(inventory.secrets_path, Redactor()).get(DB_PASSWORD), "mattermost")
    return {
        "path": path,
        "inv": inventory,
        "first": first,
        "client": client,
        "addr": {h.name: h.private_address for h in inventory.with_role("db")},
    }


def changed(output: str) -> int:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    assert total[1] == "0", output
    return int(total[0])


def states(site) -> dict:
    return {s.host.name: s for s in dbtier.status(site["inv"])}


def primary(site) -> str:
    writable = [n for n, s in states(site).items() if s.writable]
    assert len(writable) == 1, writable
    return writable[0]


def writer(site) -> Writer:
    w = Writer(site["client"], list(site["addr"].values()))
    w.start()
    time.sleep(1.5)
    return w


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def wait_for_ssh(site, host: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if states(site)[host].reachable:
            return
        time.sleep(1)
    raise AssertionError(f"{host} did not come back")


def assert_healthy(site, w: Writer, new: str) -> None:
    """Nothing acknowledged is missing on the new primary; one writable node; every other
    reachable node streams from it."""
    missing = w.acked_ids() - w.rows_on(site["addr"][new])
    assert not missing, f"{len(missing)} acknowledged rows missing on {new}: {sorted(missing)[:10]}"
    now = states(site)
    assert [n for n, s in now.items() if s.writable] == [new]
    for name, s in now.items():
        if name != new and s.reachable and not s.fenced:
            assert s.role == "replica" and s.upstream == site["addr"][new], (name, s)


def test_deploy_replicates_synchronously_and_redeploy_changes_nothing(site):
    assert changed(site["first"].stdout) > 20
    t0 = time.monotonic()
    again = inv("deploy", "--inventory", site["path"], *ONLY, *SETTINGS, "--yes")
    print(f"second deploy: {time.monotonic() - t0:.1f} s")
    assert changed(again.stdout) == 0
    now = states(site)
    assert now["db1"].writable and now["db1"].role == "primary"
    assert now["db2"].role == "replica" and not now["db2"].writable
    assert "ANY 1 (db2)" in now["db1"].sync and any("streaming quorum" in r for r in now["db1"].replicas)
    w = writer(site)
    w.stop()
    assert w.acked and w.acked_ids() <= w.rows_on(site["addr"]["db2"])  # synchronous: already there
    status = inv("db.status", "--inventory", site["path"])
    assert re.search(r"^db1\s+primary\s+writable", status.stdout, re.M), status.stdout


def test_exporter_logs_in_on_primary_and_replica(site):
    # The monitoring role is made on the primary and reaches the replica by replication.
    inv(
        "deploy",
        "--inventory",
        site["path"],
        "--only",
        "base,postgresql,postgresql-replication,node-exporter",
        "--limit",
        "db1,db2",
        *SETTINGS,
        "--yes",
    )
    for name, address in site["addr"].items():
        assert metric(address, 9187, "pg_up 1"), f"{name}: the postgres exporter does not report pg_up 1"


def test_bad_to_is_refused_and_nothing_changes(site):
    before = {n: (s.role, s.writable, s.detail) for n, s in states(site).items()}
    for target, message in (
        ("db9", "is not a DB host"),
        ("app1", "is not a DB host"),
        ("db1", "is not a running replica (it is the primary)"),
    ):
        run = inv("failover-db", "--inventory", site["path"], "--to", target, check=False)
        assert run.returncode == 2 and message in run.stderr, run
    assert {n: (s.role, s.writable, s.detail) for n, s in states(site).items()} == before


def test_planned_switchover_loses_nothing(site):
    old = primary(site)
    w = writer(site)
    t0 = time.monotonic()
    inv("failover-db", "--inventory", site["path"])
    time.sleep(2)
    w.stop()
    new = primary(site)
    assert new != old
    last, first, gap = w.gap(t0)
    print(
        f"switchover {old} -> {new}: writes paused {gap:.2f} s (from {last:.2f} s to {first:.2f} s "
        f"after the command started), {len(w.acked)} acked"
    )
    assert_healthy(site, w, new)
    assert states(site)[old].upstream == site["addr"][new]  # the old primary follows at once


def kill_and_fail_over(site) -> tuple[str, str, Writer]:
    old = primary(site)
    w = writer(site)
    docker("kill", testbed.container_name(old))
    refused = inv("failover-db", "--inventory", site["path"], check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr, refused
    t0 = time.monotonic()
    inv("failover-db", "--inventory", site["path"], "--force")
    time.sleep(2)
    new = next(n for n in site["addr"] if n != old)
    assert w.count_since(t0) > 0, "no write acknowledged after the failover"
    last, first, gap = w.gap(t0)
    print(
        f"kill {old} + failover --force -> {new}: writes paused {gap:.2f} s; first write acknowledged "
        f"{first:.2f} s after the command started"
    )
    return old, new, w


def bring_back(site, old: str, new: str) -> None:
    docker("start", testbed.container_name(old))
    wait_for_ssh(site, old)
    time.sleep(3)
    back = states(site)[old]
    assert not back.writable, "the old primary came back as a writer"
    inv("db.rejoin", old, "--inventory", site["path"])
    now = states(site)
    assert now[old].role == "replica" and now[old].upstream == site["addr"][new]
    assert f"ANY 1 ({old})" in now[new].sync


def test_kill_primary_then_failover_and_rejoin(site):
    old, new, w = kill_and_fail_over(site)
    w.stop()
    assert_healthy(site, w, new)
    bring_back(site, old, new)
    w2 = writer(site)  # the rejoined node receives new writes synchronously
    w2.stop()
    assert w2.acked_ids() <= w2.rows_on(site["addr"][old])


def test_deploy_after_failover_keeps_the_new_topology(site):
    before = primary(site)
    run = inv("deploy", "--inventory", site["path"], *ONLY, *SETTINGS, "--yes")
    assert changed(run.stdout) == 0
    assert primary(site) == before


def test_three_failovers_in_a_row_alternate(site):
    seen = []
    for _ in range(3):
        old, new, w = kill_and_fail_over(site)
        w.stop()
        assert_healthy(site, w, new)
        bring_back(site, old, new)
        seen.append((old, new))
    assert [n for _, n in seen] == [seen[0][1], seen[0][0], seen[0][1]]


def test_partitioned_primary_accepts_no_write_after_fencing(site):
    old = primary(site)
    new = next(n for n in site["addr"] if n != old)
    w = writer(site)
    docker("network", "disconnect", testbed.NETWORK, testbed.container_name(old))
    t0 = time.monotonic()
    try:
        inv("failover-db", "--inventory", site["path"], "--force")
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    finally:
        docker("network", "connect", "--ip", site["addr"][old], testbed.NETWORK, testbed.container_name(old))
    time.sleep(8)  # the healed node sees the newer timeline and fences itself
    w.stop()
    assert_healthy(site, w, new)
    healed = states(site)[old]
    assert healed.reachable and not healed.writable and healed.fenced, healed
    probe = site["client"]
    try:
        conn = probe.connect(site["addr"][old])
    except Exception:
        conn = None  # not even accepting connections: no write either
    if conn is not None:
        with pytest.raises(Exception, match="read-only"):
            probe.insert(conn, w.table, 10**9)
        conn.close()
    inv("db.rejoin", old, "--inventory", site["path"])
    assert_healthy(site, w, new)
