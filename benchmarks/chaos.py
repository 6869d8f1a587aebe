#!/usr/bin/env python3
"""Chaos benchmark of the cluster pattern (issue 9): one of everything killed in turn.

    MMDEPLOY_BED=36 python3 benchmarks/chaos.py [--skip-deploy] [--keep] [--no-alerts]

On a fresh test bed, `inv up --pattern cluster` is run and timed, then the no-op re-run,
then a rolling upgrade and its rollback while clients post and hold websockets through both
floating addresses (tests/e2e/multi_site.upgrade; asserted on three app servers behind one
proxy by tests/e2e/test_upgrade.py), then the chaos round of tests/e2e/chaos.py (the DB leader, an etcd member, a proxy, an app
server, a search, a storage and a push node, the job server, each killed while clients
post through both floating addresses, with no command run), then one deploy to heal and
a second one that must change nothing. Prints the per-fault table (the longest gap between
acknowledged posts, when posting worked again through both addresses, files, search,
`inv verify` run while the node was down, the alert Alertmanager showed) and the lost posts; asserts nothing. --skip-deploy reuses a
bed this script (or `inv up --pattern cluster`) deployed; --keep leaves it up.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MMDEPLOY_BED", "36")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402
from tests.e2e import chaos, multi_site  # noqa: E402
from tests.e2e.multi_site import Site, quiet, say, seconds, totals  # noqa: E402

TARGETS = {"DB leader": 8.0, "proxy": 3.0}


def cold_up(figures: dict) -> Path:
    t0 = time.monotonic()
    run = multi_site.cli("up", "--pattern", "cluster", timeout=3600)
    figures["cold"] = time.monotonic() - t0
    counted = totals(run.stdout)
    failing = [line for line in run.stdout.splitlines() if line.startswith("FAIL ")]
    say(
        f"cold `inv up --pattern cluster` (18 fresh hosts: bed, deploy, verify): {figures['cold']:.1f} s, exit "
        f"{run.returncode}, {counted[0] if counted else '?'} changes, {len(failing)} failing checks"
    )
    if run.returncode != 0:
        raise SystemExit("\n".join((run.stdout + run.stderr).strip().splitlines()[-30:]))
    return testbed.path_for(ROOT, "cluster")


def rolling(site: Site) -> None:
    """A rolling upgrade to the next patch release of the running series, then the rollback."""
    found: dict = {}
    multi_site.upgrade(site, found, multi_site.next_patch(site.inv.settings.mattermost.version), multi_site.cli)
    for action in ("upgrade", "rollback"):
        got = found[action]
        say(
            f"rolling {action}: ok={got['ok']} in {got['seconds']:.1f} s, per node {got['per node (s)']}; "
            f"{got['posts acknowledged']} posts, {len(got['failed requests'])} failed, "
            f"{got['posts not readable']} not readable, slowest {got['slowest acknowledged post (s)']} s; "
            f"websocket reconnects {got['websocket reconnects']}, failures {len(got['websocket failures'])}"
        )
    say(f"deploy after the rollback: {found['deploy after the rollback']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-deploy", action="store_true", help="reuse the deployed cluster bed")
    ap.add_argument("--keep", action="store_true", help="leave the bed up at the end")
    ap.add_argument("--no-alerts", action="store_true", help="do not wait for each fault's alert")
    ap.add_argument("--no-upgrade", action="store_true", help="skip the rolling upgrade and rollback")
    args = ap.parse_args()
    figures: dict = {}
    say(f"bed {testbed.BED} ({testbed.NETWORK}), started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    try:
        path = testbed.path_for(ROOT, "cluster") if args.skip_deploy else cold_up(figures)
        site = Site(path, mmdeploy.load(path))
        t0 = time.monotonic()
        report = mmdeploy.deploy(site.inv, out=io.StringIO())
        say(f"no-op re-run (in-process): {time.monotonic() - t0:.2f} s, {report.changed} changes")
        if not args.no_upgrade:
            rolling(site)
        t0 = time.monotonic()
        faults, counted = chaos.round_(site, alerts=not args.no_alerts)
        say(f"chaos round: {time.monotonic() - t0:.0f} s")
        say(
            f"{'fault':<14} {'host':<10} {'gap':>8} {'posting again':>14} {'files':>6} {'search':>8} {'verify':>12}  alert"
        )
        for f in faults:
            target = TARGETS.get(f.kind)
            mark = "" if target is None or f.gap is None else (" (met)" if f.gap <= target else " (NOT met)")
            say(
                f"{f.kind:<14} {f.host:<10} {seconds(f.gap):>8} {seconds(f.back_after):>14} "
                f"{f.files_failed:>6} {seconds(f.found_after, 1):>8} "
                f"{('ok' if f.verify_ok else 'FAIL') + ' ' + seconds(f.verify_seconds, 1):>12}  {f.alert or '-'}{mark}"
            )
            for failing in f.verify_failing:
                say(f"    verify FAIL {failing}")
        say(", ".join(f"{k}: {v}" for k, v in counted.items()))
        for n in (1, 2):
            t0 = time.monotonic()
            healed = mmdeploy.deploy(site.inv, out=io.StringIO())
            say(
                f"deploy {n} after the round: {time.monotonic() - t0:.1f} s, {healed.changed} changes, failed={healed.failed}"
            )
        say(f"alerts still firing: {chaos.still_firing(site) or 'none'}")
    finally:
        if not args.keep:
            testbed.down(log=quiet)
            say("bed torn down")


if __name__ == "__main__":
    main()
