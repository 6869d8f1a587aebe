#!/usr/bin/env python3
"""Failover benchmark: write unavailability and lost acknowledged writes, per DB engine.

    MMDEPLOY_BED=1 python3 benchmarks/failover.py --engine postgresql --rounds 3

On a fresh `single` test bed (db1 primary, db2 replica) a writer inserts numbered rows from
the control machine and records every acknowledged commit. Two scenarios, each `--rounds`
times, alternating direction:
  kill        `docker kill` the primary, then failover-db --force at once
  switchover  failover-db with the primary alive (planned)
Figures: the longest pause between acknowledged writes (last acknowledged write before it,
first after it), the first acknowledged write after the outage counted from the start of
the command, and acknowledged rows missing on the new primary. Prints figures; asserts nothing about time.

An engine plugs in with an ENGINES entry (components to deploy, settings, a writer client).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import dbtier, testbed  # noqa: E402
from mmdeploy.dbtier.component import DB_PASSWORD  # noqa: E402
from mmdeploy.secrets import Redactor, Secrets  # noqa: E402
from tests.e2e.dbwriter import PostgresClient, Writer  # noqa: E402
from tests.e2e.mysqlclient import MySQLClient  # noqa: E402

ENGINES = {
    "postgresql": {
        "only": "base,postgresql,postgresql-replication",
        "set": ["database.engine=postgresql", "database.memory_mb=1024"],
        "client": lambda password: PostgresClient("mmuser", password, "mattermost"),
    },
    "mysql": {  # MariaDB 10.11, the MySQL-family flavor that runs here
        "only": "base,mysql,mysql-replication",
        "set": ["database.engine=mysql", "database.flavor=mariadb", "mattermost.version=10.11.4",
                "database.memory_mb=1024"],
        "client": lambda password: MySQLClient("mmuser", password, "mattermost"),
    },
}


def quiet(*_):
    pass


def deploy(path: Path, engine: dict) -> float:
    sets = [*engine["set"], f"database.extra_clients=[{testbed.GATEWAY}]"]
    inv = mmdeploy.load(path, sets)
    t0 = time.monotonic()
    report = mmdeploy.deploy(inv, only=engine["only"].split(","), out=open("/dev/null", "w"))
    if report.failed:
        raise SystemExit(f"deploy failed; see {report.log_dir}")
    return time.monotonic() - t0


def primary(inv) -> str:
    writable = [s.host.name for s in dbtier.status(inv) if s.writable]
    if len(writable) != 1:
        raise SystemExit(f"expected one writable node, found {writable}")
    return writable[0]


def round_(inv, client, scenario: str) -> dict:
    old = primary(inv)
    addresses = [h.private_address for h in inv.with_role("db")]
    w = Writer(client, addresses)
    w.start()
    time.sleep(2)
    if scenario == "kill":
        subprocess.run(["docker", "kill", testbed.container_name(old)], check=True, capture_output=True)
    event = time.monotonic()
    result = dbtier.failover(inv, force=scenario == "kill", out=quiet)
    done = time.monotonic()
    time.sleep(2)
    w.stop()
    new = result.new
    lost = len(w.acked_ids() - w.rows_on(inv.host(new).private_address))
    last_before, first_after, gap = w.gap(event)
    if scenario == "kill":  # bring the old primary back as a replica for the next round
        subprocess.run(["docker", "start", testbed.container_name(old)], check=True, capture_output=True)
        for _ in range(60):
            if next(s for s in dbtier.status(inv) if s.host.name == old).reachable:
                break
            time.sleep(1)
        dbtier.rejoin(inv, old, out=quiet)
    return {"old": old, "new": new, "gap": gap, "from_command": first_after, "command": done - event,
            "lost": lost, "acked": len(w.acked)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=sorted(ENGINES), default="postgresql")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = ENGINES[args.engine]
    testbed.down(log=quiet)
    path = testbed.up(ROOT, pattern="single", log=quiet)
    first = deploy(path, engine)
    again = deploy(path, engine)
    inv = mmdeploy.load(path, engine["set"])
    client = engine["client"](Secrets(inv.secrets_path, Redactor()).get(DB_PASSWORD))
    print(f"engine {args.engine}: first deploy {first:.1f} s, second (no-op) deploy {again:.1f} s")
    print(f"{'scenario':<11} {'from':<4} {'to':<4} {'gap s':>6} {'from cmd s':>10} {'cmd s':>6} {'lost':>5} {'acked':>6}")
    results: dict[str, list[dict]] = {"kill": [], "switchover": []}
    for scenario in ("kill", "switchover"):
        for _ in range(args.rounds):
            r = round_(inv, client, scenario)
            results[scenario].append(r)
            print(f"{scenario:<11} {r['old']:<4} {r['new']:<4} {r['gap']:>6.2f} {r['from_command']:>10.2f} "
                  f"{r['command']:>6.2f} {r['lost']:>5} {r['acked']:>6}", flush=True)
    for scenario, rows in results.items():
        print(f"{scenario}: write unavailability median {statistics.median(r['gap'] for r in rows):.2f} s "
              f"(max {max(r['gap'] for r in rows):.2f} s; first write after the command started: median "
              f"{statistics.median(r['from_command'] for r in rows):.2f} s), lost acknowledged writes "
              f"{sum(r['lost'] for r in rows)}")


if __name__ == "__main__":
    main()
