#!/usr/bin/env python3
"""Failover benchmark: what users see, next to the database's own figures, per DB engine.

    python3 benchmarks/failover.py --engine postgresql --rounds 3     (bed: MMDEPLOY_BED, default 1)

The whole single pattern is deployed on a fresh test bed (proxy, app, job + monitoring, DB
primary and replica, the stand-in Mattermost). During each round two clients run at once:
  - a Mattermost client posting through NGINX every 100 ms, recording every post the API
    acknowledged (what users see);
  - a database writer inserting rows straight into whichever DB node takes writes,
    recording every acknowledged commit (the database's own availability).
Scenarios, each `--rounds` times, alternating direction:
  kill        `docker kill` the primary, then `failover-db --force` at once (mmdeploy.failover_db)
  switchover  `failover-db` with the primary alive (planned)
Figures per round: the first acknowledged post through NGINX after the command started, the
longest pause between acknowledged posts, the same two for the DB writer, the command's
own time, and acknowledged posts and rows missing afterwards. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MMDEPLOY_BED", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402
from mmdeploy.components.mattermost import ADMIN_PASSWORD  # noqa: E402
from mmdeploy.dbtier.component import DB_PASSWORD  # noqa: E402
from tests.e2e.dbwriter import PostgresClient, Writer  # noqa: E402
from tests.e2e.mysqlclient import MySQLClient  # noqa: E402
from tests.e2e.poster import Poster  # noqa: E402
from tests.standin import release  # noqa: E402

ENGINES = {
    "postgresql": {
        "set": ["database.engine=postgresql"],
        "version": release.VERSION,
        "client": lambda password: PostgresClient("mmuser", password, "mattermost"),
    },
    "mysql": {  # MariaDB 10.11, the MySQL-family flavor that runs here; Mattermost up to 10.11
        "set": ["database.engine=mysql", "database.flavor=mariadb"],
        "version": "10.11.4",
        "client": lambda password: MySQLClient("mmuser", password, "mattermost"),
    },
}


def quiet(*_):
    pass


def primary(inv) -> str:
    writable = [s.host.name for s in mmdeploy.db_status(inv) if s.writable]
    if len(writable) != 1:
        raise SystemExit(f"expected one writable node, found {writable}")
    return writable[0]


def round_(inv, client, poster_args, scenario: str) -> dict:
    old = primary(inv)
    addresses = [h.private_address for h in inv.with_role("db")]
    writer = Writer(client, addresses)
    poster = Poster(*poster_args)
    writer.start()
    poster.start()
    time.sleep(2)
    if scenario == "kill":
        subprocess.run(["docker", "kill", testbed.container_name(old)], check=True, capture_output=True)
    started = time.monotonic()
    report = mmdeploy.failover_db(inv, force=scenario == "kill", out=io.StringIO())
    command = time.monotonic() - started
    deadline = time.monotonic() + 20
    while poster.first_after(started + command) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    writer.stop()
    poster.stop()
    new = report.db.new
    row_gap = writer.gap(started)
    result = {
        "old": old,
        "new": new,
        "command": command,
        "post_first": poster.first_after(started),
        "post_gap": poster.longest_gap(started),
        "db_first": row_gap[1],
        "db_gap": row_gap[2],
        "lost_posts": len(poster.missing()),
        "posts": len(poster.acked),
        "lost_rows": len(writer.acked_ids() - writer.rows_on(inv.host(new).private_address)),
        "clients_ok": report.clients.ok,
    }
    if scenario == "kill":  # the old primary back as a replica for the next round
        subprocess.run(["docker", "start", testbed.container_name(old)], check=True, capture_output=True)
        for _ in range(60):
            if next(s for s in mmdeploy.db_status(inv) if s.host.name == old).reachable:
                break
            time.sleep(1)
        mmdeploy.rejoin(inv, old, out=io.StringIO())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=sorted(ENGINES), default="postgresql")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = ENGINES[args.engine]
    testbed.down(log=quiet)
    bed_settings = release.settings(engine["version"])
    path = testbed.up(ROOT, pattern="single", log=quiet, owner="benchmark", settings=bed_settings)
    # The writer connects from this machine (the bed's gateway) as the Mattermost user.
    sets = [*engine["set"], "database.memory_mb=1024", f"database.extra_clients=[{testbed.GATEWAY}]"]
    inv = mmdeploy.load(path, sets)
    t0 = time.monotonic()
    if mmdeploy.deploy(inv, out=io.StringIO()).failed:
        raise SystemExit("deploy failed; see .mmdeploy/runs")
    print(f"engine {args.engine}: single pattern deployed in {time.monotonic() - t0:.1f} s")
    _, secrets = mmdeploy.session(inv)
    client = engine["client"](secrets.get(DB_PASSWORD))
    proxy = inv.with_role("proxy")[0]
    poster_args = (
        f"https://{proxy.address}",
        inv.settings.domain,
        inv.settings.mattermost.admin_username,
        secrets.existing(ADMIN_PASSWORD),
    )
    head = (
        f"{'scenario':<11} {'from':<4} {'to':<4} {'cmd s':>6} {'post 1st s':>10} {'post gap s':>10} "
        f"{'db 1st s':>8} {'db gap s':>8} {'lost posts':>10} {'lost rows':>9} {'posts':>6}"
    )
    print(head)
    results: dict[str, list[dict]] = {"kill": [], "switchover": []}
    for scenario in ("kill", "switchover"):
        for _ in range(args.rounds):
            r = round_(inv, client, poster_args, scenario)
            results[scenario].append(r)
            print(
                f"{scenario:<11} {r['old']:<4} {r['new']:<4} {r['command']:>6.2f} {r['post_first']:>10.2f} "
                f"{r['post_gap']:>10.2f} {r['db_first']:>8.2f} {r['db_gap']:>8.2f} {r['lost_posts']:>10} "
                f"{r['lost_rows']:>9} {r['posts']:>6}" + ("" if r["clients_ok"] else "  (a client not re-pointed)"),
                flush=True,
            )
    for scenario, rows in results.items():
        print(
            f"{scenario}: first acknowledged post through NGINX after failover-db started: median "
            f"{statistics.median(r['post_first'] for r in rows):.2f} s (max {max(r['post_first'] for r in rows):.2f}"
            f" s; target <= 10 s); DB writes: median {statistics.median(r['db_first'] for r in rows):.2f} s; "
            f"lost posts {sum(r['lost_posts'] for r in rows)}, lost rows {sum(r['lost_rows'] for r in rows)}"
        )
    testbed.down(log=quiet)


if __name__ == "__main__":
    main()
