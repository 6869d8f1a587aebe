#!/usr/bin/env python3
"""No-op re-run benchmark: deploy the demo component with S steps to N test-bed hosts, then
time a second deploy that has nothing to change, and count SSH round trips per host.

    python3 benchmarks/noop.py --hosts 1,10,50 --steps 20      (or: inv bench.noop)
    python3 benchmarks/noop.py --reuse --against 7f29186       (before and after, one run)

For each host count: the no-op re-run in-process and as a whole `inv deploy` process, with
that process's peak memory and thread count; and the start-up time (interpreter + imports)
of `inv --list` and of a deploy. Prints figures against issue #14's targets; asserts
nothing about time (it is a measurement, not a test).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402

DEMO_BASE_STEPS = 8  # the demo component's own steps; the rest are extra files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,10,50")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="measure on the bed an earlier run left up and deployed")
    ap.add_argument(
        "--against",
        metavar="REF",
        help="also run the whole `inv deploy` of git REF (a worktree), alternating with this tree's: before and after in one run",
    )
    args = ap.parse_args()
    overrides = ["demo.enabled=true", f"demo.extra_files={args.steps - DEMO_BASE_STEPS}"]
    counts = [int(n) for n in args.hosts.split(",")]
    if args.reuse:  # the bed of an earlier run, already deployed
        path = testbed.path_for(ROOT, str(max(counts)))
        full = mmdeploy.load(path, overrides)
        print(f"test bed: {max(counts)} hosts (running, reused); demo component with {args.steps} steps per host")
    else:
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
    # An installed mmdeploy has its bytecode compiled (pip compiles at install); a checkout
    # compiles on first use, unless PYTHONDONTWRITEBYTECODE is set, and then on every run.
    trees = {"this tree": ROOT}
    if args.against:
        trees[args.against] = worktree(args.against)
    for tree in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", "mmdeploy", "tasks.py"], cwd=tree, check=True)
    print("bytecode of mmdeploy and tasks.py compiled, as an installed copy has it")
    for n in counts:
        # An inventory of exactly n hosts: a run locks and prepares every host of its
        # inventory, so --limit on the big one would measure the big one.
        sub = first_hosts(path, n)
        inv = mmdeploy.load(sub, overrides)
        times, report = [], None
        for _ in range(args.repeat):
            t0 = time.monotonic()
            report = mmdeploy.deploy(inv, only=["demo"], out=io.StringIO())
            times.append(time.monotonic() - t0)
        trips = sorted(set(report.round_trips.values()))
        print(
            f"{n:>3} hosts x {args.steps} steps: no-op re-run {statistics.median(times):.2f}s wall "
            f"(median of {args.repeat}; min {min(times):.2f}s), changed={report.changed}, "
            f"SSH round trips per host={'/'.join(map(str, trips))} (the run lock's, which reads the host "
            f"facts too, and one for all {args.steps} checks)"
        )
        # The whole CLI process, as an operator runs it: interpreter start, imports, inventory,
        # run. Beside its wall time, what it cost: on the bed every host's sshd and commands
        # share this machine's cores with the control process.
        cli = [arg for o in overrides for arg in ("--set", o)]
        meter = testbed.CpuMeter([h.name for h in inv.hosts])
        runs: dict[str, list] = {label: [] for label in trees}
        for _ in range(args.repeat):
            for label, tree in trees.items():  # alternating: the machine's speed drifts
                hosts0 = meter.seconds()
                seconds, cpu, rss_kb, threads = whole_process(
                    ["deploy", "--inventory", str(sub.resolve()), "--yes", "--only", "demo", *cli], tree
                )
                runs[label].append((seconds, cpu, meter.seconds() - hosts0, rss_kb, threads))
        target = {10: 0.8, 50: 2.5}.get(n)
        cores = len(os.sched_getaffinity(0))
        for label, rows in runs.items():
            seconds, cpu, hosts_cpu, rss_kb, threads = sorted(rows)[len(rows) // 2]
            print(
                f"{n:>3} hosts via `inv deploy --only demo`, {label} (whole process, median of {args.repeat}): "
                f"{seconds:.2f}s wall"
                + (f" (target <= {target} s: {'met' if seconds <= target else 'NOT met'})" if target else "")
                + f"; CPU: control process {cpu:.2f}s, the hosts {hosts_cpu:.2f}s ({hosts_cpu / n * 1000:.0f} ms each)"
                # On the bed the hosts run on this machine's cores: no run of this process
                # can be shorter than all that CPU spread over them.
                + f", so at least {(cpu + hosts_cpu) / cores:.2f}s on this machine's {cores} cores"
                + f"; control process peak {rss_kb / 1024:.0f} MiB resident, {threads} threads"
            )
    startup()
    t0 = time.monotonic()
    report = mmdeploy.deploy(full, only=["base", "demo"], out=io.StringIO())
    print(
        f"{max(counts):>3} hosts, base + demo components, no-op: {time.monotonic() - t0:.2f}s wall, "
        f"changed={report.changed}"
    )


def first_hosts(path: Path, n: int) -> Path:
    """A copy of the bed's inventory with its first n hosts, beside it (its relative paths
    hold); the bed's inventory itself when n is all of them."""
    text = path.read_text()
    head, _, hosts = text.partition("\nhosts:\n")
    entries = hosts.split("\n- ")
    if n >= len(entries):
        return path
    sub = path.with_name(f"{path.stem}-first{n}.yml")
    sub.write_text(head + "\nhosts:\n" + "\n- ".join(entries[:n]) + "\n")
    return sub


def worktree(ref: str) -> Path:
    """A checkout of git `ref` beside this tree's git data (build/bench-<ref>), made once."""
    path = ROOT / "build" / f"bench-{ref.replace('/', '-')}"
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True, capture_output=True
        )
    return path


def whole_process(args: list[str], tree: Path = ROOT) -> tuple[float, float, int, int]:
    """Run `inv ARGS` in `tree`; its wall time, CPU seconds, peak resident memory (KiB) and
    peak thread count (sampled from /proc every 5 ms)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args], cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    threads, usage, code = 1, None, 0
    while usage is None:
        pid, code, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            usage = rusage
            break
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            threads = max(threads, int(status.split("Threads:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.005)
    seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(code)
    if proc.returncode:
        raise SystemExit(f"inv {' '.join(args[:1])} failed: {proc.stderr.read().decode()[-800:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, threads


def startup() -> None:
    """Interpreter + imports: `inv --list` (imports the tasks only), and everything a deploy
    imports (tasks, the API, the components, Fabric) before it touches the inventory."""

    def median_of(command: list[str]) -> float:
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            times.append(time.monotonic() - t0)
        return statistics.median(times)

    bare = median_of([sys.executable, "-c", "pass"])
    listing = median_of([sys.executable, "-m", "invoke", "--list"])
    deploy_imports = median_of(
        [sys.executable, "-c", "import tasks, mmdeploy.api, mmdeploy.runner, mmdeploy.registry, fabric"]
    )
    print(
        f"start-up (median of 5): interpreter alone {bare:.2f}s; `inv --list` {listing:.2f}s "
        f"(target < 0.3 s: {'met' if listing < 0.3 else 'NOT met'}); interpreter + a deploy's imports "
        f"{deploy_imports:.2f}s"
    )


if __name__ == "__main__":
    main()
