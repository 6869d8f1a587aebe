#!/usr/bin/env python3
"""No-op re-run benchmark: deploy the demo component with S steps to N test-bed hosts, then
time a second deploy that has nothing to change, and count SSH round trips per host.

    python3 benchmarks/noop.py --hosts 1,5,10 --steps 20      (or: inv bench.noop)

Prints figures; asserts nothing about time (it is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402

DEMO_BASE_STEPS = 8  # the demo component's own steps; the rest are extra files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,5,10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    overrides = ["demo.enabled=true", f"demo.extra_files={args.steps - DEMO_BASE_STEPS}"]
    counts = [int(n) for n in args.hosts.split(",")]
    testbed.down(log=lambda *_: None)
    path = testbed.up(ROOT, hosts=max(counts), log=lambda *_: None)
    full = mmdeploy.load(path, overrides)
    print(f"test bed: {max(counts)} hosts; demo component with {args.steps} steps per host")
    t0 = time.monotonic()
    cold = mmdeploy.deploy(full, only=["base", "demo"], out=io.StringIO())
    print(
        f"cold deploy (base + demo) onto {max(counts)} hosts: {time.monotonic() - t0:.1f}s, "
        f"{cold.changed} changes, failed={cold.failed}"
    )
    for n in counts:
        limit = [f"host{i}" for i in range(1, n + 1)]
        times, report = [], None
        for _ in range(args.repeat):
            t0 = time.monotonic()
            report = mmdeploy.deploy(full, limit=limit, only=["demo"], out=io.StringIO())
            times.append(time.monotonic() - t0)
        trips = sorted(set(report.round_trips.values()))
        print(
            f"{n:>3} hosts x {args.steps} steps: no-op re-run {statistics.median(times):.2f}s wall "
            f"(median of {args.repeat}; min {min(times):.2f}s), changed={report.changed}, "
            f"SSH round trips per host={'/'.join(map(str, trips))} (one to connect and read host facts, "
            f"one for all {args.steps} checks)"
        )
    # The whole CLI process, as an operator runs it: interpreter start, imports, inventory, run.
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "deploy",
            "--inventory",
            str(path),
            "--yes",
            "--only",
            "demo",
            *sum((["--set", o] for o in overrides), []),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    print(f"{max(counts):>3} hosts via `inv deploy --only demo` (whole process): {time.monotonic() - t0:.2f}s wall")
    t0 = time.monotonic()
    report = mmdeploy.deploy(full, only=["base", "demo"], out=io.StringIO())
    print(
        f"{max(counts):>3} hosts, base + demo components, no-op: {time.monotonic() - t0:.2f}s wall, "
        f"changed={report.changed}"
    )


if __name__ == "__main__":
    main()
