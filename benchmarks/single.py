#!/usr/bin/env python3
"""Single-pattern benchmark: cold deploys of the whole single pattern (5 fresh test-bed hosts,
the stand-in Mattermost release), under a barrier between components and pipelined per host,
each with the ratio of its wall time to the slowest host's own work (issue #14's target:
<= 1.15); then the no-op re-run, with SSH round trips per host.

    python3 benchmarks/single.py [--pattern P] [--schedules barrier,pipelined] [--repeat N]
                                 [--mirror-rate MB/s]

--mirror-rate puts a slow mirror between the hosts and the bed's apt cache: each host's
downloads get that many MB/s (a throttling proxy on the bed's gateway, below), to see
what fetching packages ahead (ops.apt) saves where downloads take time.

Prints figures; asserts nothing (a measurement, not a test). The apt cache (apt-cacher-ng)
is warm after the first run on a machine; the first ever run also downloads packages.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mmdeploy  # noqa: E402
from mmdeploy import testbed  # noqa: E402
from mmdeploy.testbed.network import ACNG_PORT  # noqa: E402
from tests.standin import release  # noqa: E402


_mirror = ""  # the slow mirror's URL, once started


def slow_mirror(rate: float, port: int = 3143) -> str:
    """Serve the bed's apt cache (apt-cacher-ng) on the gateway's `port`, each host's
    downloads at most `rate` MB/s over all its connections (its link to the mirror); return
    the proxy URL for settings.apt_proxy."""
    free_at: dict[str, float] = {}  # host address -> when its link is free again

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str = "") -> None:
        loop = asyncio.get_running_loop()
        try:
            while chunk := await reader.read(65536):
                if host:  # to the host: wait for its link, as the chunk would take on it
                    at = max(free_at.get(host, 0.0), loop.time()) + len(chunk) / (rate * 1e6)
                    free_at[host] = at
                    await asyncio.sleep(at - loop.time())
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host = client_w.get_extra_info("peername")[0]
        cache_r, cache_w = await asyncio.open_connection(testbed.GATEWAY, ACNG_PORT)
        await asyncio.gather(pipe(client_r, cache_w), pipe(cache_r, client_w, host))

    async def serve() -> None:
        server = await asyncio.start_server(handle, testbed.GATEWAY, port)
        async with server:
            await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    time.sleep(0.5)
    return f"http://{testbed.GATEWAY}:{port}"


def cold(pattern: str, barrier: bool, mirror_rate: float = 0.0) -> tuple[mmdeploy.RunReport, float, object, float]:
    """A cold deploy on fresh bed hosts: (report, wall seconds, inventory, CPU seconds of
    the bed's containers)."""
    global _mirror
    testbed.down(log=lambda *_: None)
    path = testbed.up(ROOT, pattern=pattern, log=lambda *_: None)
    if mirror_rate and not _mirror:
        _mirror = slow_mirror(mirror_rate)
    extra = [f"apt_proxy={_mirror}"] if _mirror else []
    inv = mmdeploy.load(path, release.overrides() + ["monitoring.grafana=false", *extra])
    meter = testbed.CpuMeter([h.name for h in inv.hosts])
    t0, cpu0 = time.monotonic(), meter.seconds()
    report = mmdeploy.deploy(inv, out=io.StringIO(), barrier=barrier)
    return report, time.monotonic() - t0, inv, meter.seconds() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", default="single")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--schedules",
        default="barrier,pipelined",
        help="cold deploys to compare, each on fresh hosts: barrier (every host finishes a component "
        "before any starts the next), pipelined (the default scheduling)",
    )
    ap.add_argument(
        "--mirror-rate", type=float, default=0.0, help="MB/s per host from the apt cache (default: unlimited)"
    )
    args = ap.parse_args()
    inv = None
    for schedule in args.schedules.split(","):
        report, wall, inv, cpu = cold(args.pattern, barrier=schedule == "barrier", mirror_rate=args.mirror_rate)
        own = {name: h.seconds for name, h in report.hosts.items()}
        slowest = max(own, key=own.get)
        print(
            f"{args.pattern} pattern, {len(inv.hosts)} hosts, {schedule}: cold deploy {wall:.1f}s wall, "
            f"{cpu:.1f} CPU-s in the hosts, "
            f"{report.changed} changes, failed={report.failed}; the slowest host's own work {slowest} "
            f"{own[slowest]:.1f}s; ratio {wall / own[slowest]:.2f} (target <= 1.15); own work per host: "
            + ", ".join(f"{n} {t:.1f}s" for n, t in own.items())
        )
        print(
            f"  SSH round trips {sum(report.round_trips.values())} "
            f"({', '.join(f'{h} {n}' for h, n in report.round_trips.items())})"
        )
        start = min(t for h in report.hosts.values() for _, t, _ in h.timeline)
        for name, h in sorted(report.hosts.items(), key=lambda item: -max(e for *_, e in item[1].timeline)):
            parts, at = [], start
            for component, t0, t1 in h.timeline:
                wait = f"(waits {t0 - at:.1f}) " if t0 - at >= 0.5 else ""
                parts.append(f"{wait}{component} {t1 - t0:.1f}")
                at = t1
            print(f"  {name} ends at {at - start:.1f}s: " + ", ".join(parts))
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
    results = mmdeploy.verify(inv, out=io.StringIO())
    failing = [r.name for r in results if not r.ok]
    print(f"verify: {time.monotonic() - t0:.1f}s, {len(results)} checks, {len(failing)} failing {failing or ''}")


if __name__ == "__main__":
    main()
