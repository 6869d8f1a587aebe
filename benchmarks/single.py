#!/usr/bin/env python3
"""Single-pattern benchmark: cold deploy of the whole single pattern (5 fresh test-bed hosts,
the stand-in Mattermost release), then the no-op re-run, with SSH round trips per host.

    python3 benchmarks/single.py [--keep]

Prints figures; asserts nothing (a measurement, not a test). The apt cache (apt-cacher-ng)
is warm after the first run on a machine; the first ever run also downloads packages.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402
from tests.standin import release  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", default="single")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    testbed.down(log=lambda *_: None)
    path = testbed.up(ROOT, pattern=args.pattern, log=lambda *_: None)
    inv = mmdeploy.load(path, release.overrides() + ["monitoring.grafana=false"])
    t0 = time.monotonic()
    cold = mmdeploy.deploy(inv, out=io.StringIO())
    cold_s = time.monotonic() - t0
    print(
        f"{args.pattern} pattern, {len(inv.hosts)} hosts: cold deploy {cold_s:.1f}s wall, "
        f"{cold.changed} changes, failed={cold.failed}, SSH round trips "
        f"{sum(cold.round_trips.values())} ({', '.join(f'{h} {n}' for h, n in cold.round_trips.items())})"
    )
    times, report = [], None
    for _ in range(args.repeat):
        t0 = time.monotonic()
        report = mmdeploy.deploy(inv, out=io.StringIO())
        times.append(time.monotonic() - t0)
    print(
        f"no-op re-run: {statistics.median(times):.2f}s wall (median of {args.repeat}; min {min(times):.2f}s), "
        f"changed={report.changed}, SSH round trips {sum(report.round_trips.values())} "
        f"({', '.join(f'{h} {n}' for h, n in report.round_trips.items())})"
    )
    t0 = time.monotonic()
    failures = mmdeploy.verify(inv, out=io.StringIO())
    print(f"verify: {time.monotonic() - t0:.1f}s, {len(failures)} failing checks")


if __name__ == "__main__":
    main()
