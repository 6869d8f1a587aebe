"""The multi pattern's losses, one node of a tier at a time, measured through the floating
address (issue 8): shared by tests/e2e/test_multi.py, which asserts on what they record,
and benchmarks/ha.py, which prints the same figures against the issue's targets.

Each scenario takes the deployed Site and a `figures` dict, prints what it saw (say) and
records in `figures` what a test asserts. The bed is the one of this process's
MMDEPLOY_BED (testbed.container_name): the killed node is started again at the end.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import httpx

import mmdeploy
from mmdeploy import testbed
from mmdeploy.component import Info
from mmdeploy.components import keepalived
from mmdeploy.components.mattermost import ADMIN_PASSWORD, HOME, SiteChecks
from mmdeploy.dbtier.component import DB_PASSWORD
from mmdeploy.testbed.containers import ssh_answers
from tests.e2e.dbwriter import PostgresClient, Writer
from tests.e2e.poster import Poster, SpecPoster, Websocket
from tests.e2e.probe import Probe
from tests.e2e.test_search import api as search_api

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it (`inv ...` from the checkout), its output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMDEPLOY_RUN_DIR": str(ROOT / ".mmdeploy" / "runs")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout
    )


PING = "/api/v4/system/ping"
PING_OK = b'"status":"OK"'
# An NGINX error line about an upstream: time, level, worker pid, upstream address and port.
NGINX_UPSTREAM_ERROR = re.compile(
    r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+)#\d+: .*upstream: "https?://([0-9.]+):(\d+)'
)


# The commands' own output (already redacted by mmdeploy), kept for reading after the run:
# written to .mmdeploy/ha-<time>.log at the end.
TRANSCRIPT: list[str] = []


def quiet(*_):
    pass


def keep(title: str, text: str) -> None:
    TRANSCRIPT.append(f"===== {title}\n{text.rstrip()}\n")


SAID: list[str] = []  # every line said, for a test's failure message


def say(line: str) -> None:
    SAID.append(line)
    print(line, flush=True)


def docker(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=True)


def on(host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A command inside a bed container (reading only: logs, unit states)."""
    return subprocess.run(
        ["docker", "exec", testbed.container_name(host), "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait(condition: Callable[[], bool], timeout: float, every: float = 0.5) -> float | None:
    """Seconds until `condition()` holds (an exception counts as not yet), None if not within `timeout`."""
    t0 = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - t0
        except Exception:
            pass
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(every)


def totals(output: str) -> tuple[int, int] | None:
    """(changed, failed) of a run's total line."""
    found = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def seconds(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} s"


def to_monotonic(wall: float) -> float:
    return wall - (time.time() - time.monotonic())


class Site:
    """The deployed bed as the scenarios use it: the inventory, the floating address, the admin."""

    def __init__(self, path: Path, inv):
        self.path, self.inv = path, inv
        vips = inv.settings.proxy.vips
        if not vips:
            raise SystemExit(f"{path}: no proxy.vip (not a multi bed?)")
        self.vip = vips[0].split("/")[0]
        self.domain = inv.settings.domain
        self.base = f"https://{self.vip}"
        self.redact, self.secrets = mmdeploy.session(inv)
        self.user = inv.settings.mattermost.admin_username
        self.team = inv.settings.mattermost.team_name

    def session(self) -> Poster:
        """A logged-in Mattermost client through the floating address (a Poster, not started:
        its client, channel and post() serve the scenarios' own requests)."""
        return Poster(self.base, self.domain, self.user, self.secrets.existing(ADMIN_PASSWORD), team=self.team)

    def holder(self) -> str:
        found, problems = keepalived.holders(self.inv, self.inv.with_role("proxy"), self.vip)
        if len(found) != 1:
            raise RuntimeError(f"{self.vip} is held by {', '.join(found) or 'no proxy'} {'; '.join(problems)}")
        return found[0]

    def back(self, host: str, timeout: float = 180) -> float | None:
        """Start a stopped or killed bed host again; seconds until its SSH answers."""
        docker("start", testbed.container_name(host))
        address = self.inv.host(host).address
        return wait(lambda: ssh_answers(testbed.key_path(ROOT), address), timeout, 1)


def heal(site: Site) -> None:
    """Start every bed container a scenario left stopped (one that failed half way)."""
    for entry in testbed.status():
        if entry["state"] != "running":
            back = site.back(entry["name"])
            say(f"  {entry['name']} was left {entry['state']}: started again, SSH after {seconds(back, 1)}")


# --- the floating address --------------------------------------------------------------------


def vip(site: Site, figures: dict) -> None:
    old = site.holder()
    other = next(h.name for h in site.inv.with_role("proxy") if h.name != old)
    probe = Probe(site.vip, site.domain, path=PING, expect=PING_OK)
    probe.start()
    try:
        time.sleep(2)
        killed = time.monotonic()
        docker("kill", testbed.container_name(old))
        # Over once a request started after the first failed one is answered; a perfect
        # failover (no request failed) is seen as none failing for 10 s.
        answered = wait(lambda: probe.recovered_after(killed), 30, 0.1)
        if answered is None and all(ok for t, ok in probe.results if t > killed):
            answered = 0.0
        time.sleep(2)
    finally:
        probe.stop.set()
        probe.join(5)
    before = any(ok and t <= killed for t, ok in probe.results)
    after = any(ok and t > killed for t, ok in probe.results)
    gap = probe.gap_after(killed) if before and after and answered is not None else None
    figures["vip_gap"] = gap
    failed = sum(not ok for t, ok in probe.results if t > killed)
    moved, _ = keepalived.holders(site.inv, [site.inv.host(other)], site.vip)
    figures["vip_moved"] = bool(moved) and answered is not None
    say(
        f"VIP failover: docker kill of {old} (holder of {site.vip}): longest gap between good pings through the "
        f"address {seconds(gap)} ({failed} of {sum(t > killed for t, _ in probe.results)} probes failed after the "
        f"kill; one GET {PING} every 50 ms, 0.5 s timeout); {other} holds it now: {'yes' if moved else 'NO'}"
    )
    if answered is None:
        say("  (no request after the first failed one was answered within 30 s)")
    if not before:
        say("  (no good ping before the kill: the gap could not be measured)")
    started = site.back(old)

    def keepalived_runs() -> bool:
        return on(old, "systemctl is-active keepalived", 10).returncode == 0

    running = wait(keepalived_runs, 90, 1)
    time.sleep(8)  # many advert intervals: a preempting node would have taken the address back
    holders, problems = keepalived.holders(site.inv, site.inv.with_role("proxy"), site.vip)
    figures["vip_stayed"] = holders == [other]
    say(
        f"VIP after {old} is back (SSH after {seconds(started, 1)}, keepalived active {seconds(running, 1)} later, "
        f"checked 8 s after): held by {', '.join(holders) or 'no proxy'}: "
        + ("stayed on the other proxy (nopreempt)" if holders == [other] else "MOVED or split")
        + (f" ({'; '.join(problems)})" if problems else "")
    )


# --- an app server ---------------------------------------------------------------------------


def upstream_failures(host: str, address: str, port: int, since: float) -> dict[int, list[float]]:
    """NGINX's failed attempts at address:port on `host` from wall time `since` on, per worker
    process (each keeps its own failure count: the upstream has no shared zone), as wall
    times (the log's second)."""
    zone = on(host, "date +%z").stdout.strip() or "+0000"
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (-1 if zone[0] == "-" else 1)
    text = on(host, "tail -n 50000 /var/log/nginx/error.log", 60).stdout
    found: dict[int, list[float]] = {}
    for line in text.splitlines():
        m = NGINX_UPSTREAM_ERROR.match(line)
        if not m or m.group(4) != address or int(m.group(5)) != port:
            continue
        at = datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S").replace(tzinfo=timezone(offset)).timestamp()
        if at >= int(since):
            found.setdefault(int(m.group(3)), []).append(at)
    return found


def app(site: Site, figures: dict, fault: str, watch: float) -> None:
    victim = site.inv.with_role("app")[-1]
    port = victim.settings.mattermost.port
    holder = site.holder()
    poster = site.session()
    probe = Probe(site.vip, site.domain, path=PING, expect=PING_OK, timeout=10, interval=0.1)
    poster.start()
    probe.start()
    try:
        time.sleep(3)
        wall, t0 = time.time(), time.monotonic()
        docker(fault, testbed.container_name(victim.name), timeout=120)
        stopped = time.monotonic() - t0
        time.sleep(max(0.0, watch - stopped))
    finally:
        poster.stop()
        probe.stop.set()
        probe.join(15)
    failures = upstream_failures(holder, victim.private_address, port, wall)
    marks = {pid: times[1] for pid, times in failures.items() if len(times) >= 2}
    unmarked = [pid for pid, times in failures.items() if len(times) < 2]
    marked = to_monotonic(max(marks.values()) + 1) if marks else None  # the end of the logged second
    posts_failed = [at for at, _ in poster.failures if at >= t0]
    gets = [(t, ok, took) for (t, ok), took in zip(probe.results, probe.took) if t >= t0]
    gets_failed = [t for t, ok, _ in gets if not ok]
    slow_after = [t for t, ok, took in gets if ok and took > 3 and marked is not None and t >= marked]
    after_posts = [at for at in posts_failed if marked is not None and at >= marked]
    after_gets = [t for t in gets_failed if marked is not None and t >= marked]
    retried = sum(1 for times in failures.values() for at in times if marked is not None and to_monotonic(at) >= marked)
    figures["failed_after_down"] = len(after_gets) if marked is not None else None
    figures["app"] = {
        "gets": len(gets),
        "gets_failed": len(gets_failed),
        "posts_failed": len(posts_failed),
        "posts_failed_after_down": len(after_posts) if marked is not None else None,
        "marked_down_after": None if marked is None else round(marked - t0, 1),
    }
    say(
        f"app node loss: docker {fault} of {victim.name} ({stopped:.1f} s to return); NGINX on {holder} marked it down "
        + (
            f"{marked - t0:.1f} s after the {fault} began (every worker's 2nd failed attempt: "
            f"{len(marks)} worker(s){'; ' + str(len(unmarked)) + ' with one failure only' if unmarked else ''})"
            if marked is not None
            else "NOT (no worker logged two failed attempts)"
        )
        + f"; watched {watch:.0f} s"
    )
    say(
        f"app node loss: idempotent GET {PING} every 100 ms (10 s client timeout): {len(gets_failed)} failed of "
        f"{len(gets)} in total, {len(after_gets) if marked is not None else 'n/a'} after it was marked down; "
        f"slowest {probe.slowest:.2f} s; {len(slow_after)} answered after it was marked down took over 3 s "
        f"(NGINX trying the dead node again: proxy_connect_timeout 2 s, then the other node)"
    )
    say(
        f"app node loss: POST /api/v4/posts every 100 ms (Poster, 3 s client timeout): {len(posts_failed)} failed of "
        f"{len(posts_failed) + sum(1 for *_, at in poster.acked if at >= t0)} in total, "
        f"{len(after_posts) if marked is not None else 'n/a'} after it was marked down "
        f"({', '.join(sorted({why for at, why in poster.failures if at >= t0})) or 'no failure'}); NGINX tried the "
        f"dead node again {retried} time(s) after marking it (fail_timeout 10 s)"
    )
    missing = poster.missing()
    figures["app"].update(acked=len(poster.acked), unreadable=len(missing))
    say(f"app node loss: {len(poster.acked)} acknowledged posts, {len(missing)} not readable afterwards")
    back = site.back(victim.name)
    answers = wait(lambda: httpx.get(f"http://{victim.address}:{port}{PING}", timeout=3).status_code == 200, 180, 1)
    say(
        f"app node loss: {victim.name} started again: SSH after {seconds(back, 1)}, "
        f"Mattermost answers {seconds(answers, 1)} later"
    )


# --- a storage node --------------------------------------------------------------------------


def upload(session: Poster, content: bytes) -> str | None:
    """POST /api/v4/files through the floating address: the file's id, None on failure."""
    try:
        r = session.client.post(
            f"{session.base}/api/v4/files",
            data={"channel_id": session.channel},
            files={"files": (f"ha-{secrets.token_hex(4)}.bin", content, "application/octet-stream")},
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    return r.json()["file_infos"][0]["id"] if r.status_code == 201 else None


def downloads(session: Poster, file_id: str, content: bytes) -> bool:
    try:
        r = session.client.get(f"{session.base}/api/v4/files/{file_id}", timeout=10)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.content == content


def storage(site: Site, figures: dict, uploads: int) -> None:
    session = site.session()
    victim = site.inv.with_role("storage")[0].name
    before = {}
    for i in range(10):
        content = os.urandom(2048 * (i + 1))
        file_id = upload(session, content)
        if file_id and downloads(session, file_id, content):
            before[file_id] = content

    def download_pass() -> tuple[int, float, float]:
        """(failed downloads of the files uploaded before, seconds for the pass, slowest download)"""
        started, failed, slowest = time.monotonic(), 0, 0.0
        for f, c in before.items():
            t = time.monotonic()
            failed += not downloads(session, f, c)
            slowest = max(slowest, time.monotonic() - t)
        return failed, time.monotonic() - started, slowest

    killed = time.monotonic()
    docker("kill", testbed.container_name(victim))
    first_pass, first_took, first_slowest = download_pass()
    failed_up = failed_down = 0
    first_ok, slowest = None, 0.0
    uploads_began = time.monotonic() - killed
    for _ in range(uploads):
        content = os.urandom(4096)
        t = time.monotonic()
        file_id = upload(session, content)
        slowest = max(slowest, time.monotonic() - t)
        if file_id is None:
            failed_up += 1
        else:
            first_ok = first_ok if first_ok is not None else time.monotonic() - killed
            failed_down += not downloads(session, file_id, content)
        time.sleep(0.2)
    span = time.monotonic() - killed
    second_pass, second_took, second_slowest = download_pass()
    # Right after the kill a download may wait out its 10 s timeout once (the SeaweedFS
    # filer still asks the dead volume server): a figure; the later pass must be clean.
    figures["storage"] = (failed_up, failed_down, second_pass)
    figures["storage_first_pass_failed"] = first_pass
    figures["storage_files_before"] = len(before)
    say(
        f"storage node loss: docker kill of {victim}: files uploaded before ({len(before)} of 10 went in): "
        f"{first_pass} failed to download right after the kill (the pass took {first_took:.1f} s, slowest download "
        f"{first_slowest:.2f} s); {second_pass} failed {span:.0f} s after ({second_took:.1f} s, slowest "
        f"{second_slowest:.2f} s)"
    )
    say(
        f"storage node loss: {uploads} uploads through the address (POST /api/v4/files, 0.2 s apart, 10 s timeout): "
        f"{failed_up} failed, {failed_down} of the uploaded did not download back; uploads began "
        f"{uploads_began:.1f} s after the kill, first good one {seconds(first_ok)} after it; slowest upload "
        f"{slowest:.2f} s"
    )
    say(f"storage node loss: {victim} started again: SSH after {seconds(site.back(victim), 1)}")


# --- a search node ---------------------------------------------------------------------------


def search(session: Poster, team: str, term: str, post_id: str) -> tuple[bool, str]:
    """(found `post_id`, the engine that answered: the stand-in's X-Standin-Search-Backend)."""
    try:
        r = session.client.post(
            f"{session.base}/api/v4/teams/{team}/posts/search",
            json={"terms": term, "is_or_search": False},
            timeout=10,
        )
    except httpx.HTTPError as e:
        return False, type(e).__name__
    found = r.status_code == 200 and post_id in (r.json().get("order") or [])
    return found, r.headers.get("X-Standin-Search-Backend", f"HTTP {r.status_code}")


class Searcher(threading.Thread):
    """Searches through Mattermost every 0.2 s for a post; records (time, found, engine)."""

    def __init__(self, session: Poster, team: str, term: str, post_id: str):
        super().__init__(daemon=True)
        self.session, self.team, self.term, self.post_id = session, team, term, post_id
        self.results: list[tuple[float, bool, str]] = []
        self.took: dict[float, float] = {}  # start -> seconds, per search
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            found = search(self.session, self.team, self.term, self.post_id)
            self.took[t] = time.monotonic() - t
            self.results.append((t, *found))
            time.sleep(max(0.0, t + 0.2 - time.monotonic()))


def post_until_acked(session: Poster, message: str, timeout: float = 30) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if post_id := session.post(message):
            return post_id
        time.sleep(0.5)
    return None


def search_loss(site: Site, figures: dict) -> None:
    session = site.session()
    team = session._get(f"/api/v4/teams/name/{site.team}")["id"]
    term = f"habefore{secrets.token_hex(4)}"
    post_id = post_until_acked(session, f"search benchmark {term}")
    indexed = wait(lambda: search(session, team, term, post_id)[0], 60, 0.5)
    engine = search(session, team, term, post_id)[1]
    nodes = site.inv.with_role("search")
    try:
        manager = search_api(nodes[0].address, "/_cat/cluster_manager?format=json", timeout=5)[0]["node"]
    except Exception as e:
        manager = f"unknown ({type(e).__name__})"
    victim = manager if manager in [h.name for h in nodes] else nodes[0].name
    searcher = Searcher(site.session(), team, term, post_id)
    searcher.start()
    try:
        time.sleep(2)
        killed = time.monotonic()
        docker("kill", testbed.container_name(victim))
        term2 = f"haafter{secrets.token_hex(4)}"
        post2 = post_until_acked(session, f"search benchmark after the kill {term2}")
        posted2 = time.monotonic() - killed
        found2 = wait(lambda: search(session, team, term2, post2 or "")[0], 90, 0.2) if post2 else None
        engine2 = search(session, team, term2, post2 or "")[1]
        time.sleep(5)
    finally:
        searcher.stop.set()
        searcher.join(15)
    good = [t for t, ok, _ in searcher.results if ok]
    start = [t for t in good if t <= killed]
    times = [t for t in good if t >= start[-1]] if start else []
    gap = max((b - a for a, b in zip(times, times[1:])), default=None)
    after = [(ok, e) for t, ok, e in searcher.results if t > killed]
    slowest = max((took for t, took in searcher.took.items() if t > killed), default=0.0)
    figures["search_gap"] = gap
    figures["search"] = {
        "after": len(after),
        "failed_after": sum(not ok for ok, _ in after),
        "found_after_kill": found2 is not None,
    }
    say(
        f"search node loss: docker kill of {victim} (cluster manager: {manager}); before it the post was found in "
        f"{seconds(indexed, 1)} by {engine}; searches through Mattermost every 0.2 s after the kill: "
        f"{sum(not ok for ok, _ in after)} failed of {len(after)}, longest gap between answers {seconds(gap)}, "
        f"slowest search {slowest:.2f} s, answered by {', '.join(sorted({e for ok, e in after if ok})) or 'none'}"
    )
    say(
        "search node loss: a post made after the kill was "
        + f"acknowledged {posted2:.1f} s after the kill and "
        + (f"found {found2:.1f} s after that, by {engine2}" if found2 is not None else "NOT found in 90 s")
    )
    say(f"search node loss: {victim} started again: SSH after {seconds(site.back(victim), 1)}")


# --- a push proxy ----------------------------------------------------------------------------


class Without:
    """The inventory as verify's push check reads it, without one host: a killed push proxy
    is not asked for its record (each ask would only time out), so a check's time is the
    notification's way to a live proxy."""

    def __init__(self, inventory, host: str):
        self._inventory, self._host = inventory, host

    def __getattr__(self, name: str):
        return getattr(self._inventory, name)

    def with_role(self, role: str) -> list:
        return [h for h in self._inventory.with_role(role) if h.name != self._host]


def push_check(checks: SiteChecks) -> tuple[bool, str, float]:
    """(reached a push proxy, which one or why not, seconds) of verify's push check."""
    t0 = time.monotonic()
    try:
        result = checks.push()
    except Exception as e:
        return False, f"{type(e).__name__}: {e}", time.monotonic() - t0
    took = time.monotonic() - t0
    if isinstance(result, Info):
        return True, str(result).split()[0], took
    return False, str(result or "no result"), took


def push(site: Site, figures: dict, rounds: int = 5) -> None:
    checks = SiteChecks(site.inv)
    checks.base = site.base  # through the floating address, as users reach the site
    ok, by, took = push_check(checks)
    names = [h.name for h in site.inv.with_role("pushproxy")]
    victim = by if ok and by in names else names[0]
    outcome = f"reached {by}" if ok else f"FAILED: {site.redact(by)}"
    say(f"push: before the loss, verify's push check: {outcome} ({took:.1f} s)")
    killed = time.monotonic()
    docker("kill", testbed.container_name(victim))
    checks.inventory = Without(site.inv, victim)
    results = [push_check(checks) for _ in range(rounds)]
    figures["push"] = (sum(r[0] for r in results), rounds)
    first = next((i for i, r in enumerate(results) if r[0]), None)
    reached = sum(r[0] for r in results)
    by_proxy = ", ".join(sorted({r[1] for r in results if r[0]})) or "none"
    each = ", ".join(f"{r[2]:.1f}" for r in results)
    say(
        f"push node loss: docker kill of {victim}: {reached} of {rounds} push checks right after it reached a proxy "
        f"({by_proxy}); each check (login, post, until a live proxy recorded it) took {each} s; all {rounds} done "
        f"{time.monotonic() - killed:.1f} s after the kill"
        + ("" if first == 0 else f"; first good one: check {first + 1}" if first is not None else "")
    )
    for r in results:
        if not r[0]:
            say(f"  failed: {site.redact(r[1])[:300]}")
    say(f"push node loss: {victim} started again: SSH after {seconds(site.back(victim), 1)}")


# --- the database primary --------------------------------------------------------------------


def db(site: Site, figures: dict) -> None:
    # The writer connects from this machine (the bed's gateway) as the Mattermost user.
    dbinv = mmdeploy.load(site.path, [f"database.extra_clients=[{testbed.GATEWAY}]"])
    t0 = time.monotonic()
    said = io.StringIO()
    allowed = mmdeploy.deploy(dbinv, out=said)
    keep("deploy with database.extra_clients", said.getvalue())
    say(
        f"db: the control machine allowed as a DB client for the writer (database.extra_clients): deploy "
        f"{time.monotonic() - t0:.1f} s, {allowed.changed} changes, failed={allowed.failed}"
    )
    states = {s.host.name: s for s in mmdeploy.db_status(dbinv)}
    writable = [n for n, s in states.items() if s.writable]
    if len(writable) != 1:
        raise RuntimeError(f"expected one writable DB node, found {writable}")
    old = writable[0]
    addresses = [h.private_address for h in dbinv.with_role("db")]
    writer = Writer(PostgresClient("mmuser", site.secrets.get(DB_PASSWORD), "mattermost"), addresses)
    poster = site.session()
    writer.start()
    poster.start()
    try:
        time.sleep(2)
        docker("kill", testbed.container_name(old))
        started = time.monotonic()
        said = io.StringIO()
        try:
            report = mmdeploy.failover_db(dbinv, force=True, out=said)
        finally:
            keep("failover_db(force=True)", said.getvalue())
        command = time.monotonic() - started
        wait(lambda: poster.first_after(started + command) is not None, 30, 0.2)
        time.sleep(15)  # posting goes on: is it steady once it works again?
    finally:
        writer.stop()
        poster.stop()
    new = report.db.new
    new_address = dbinv.host(new).private_address
    _, first_row, row_gap = writer.gap(started)
    lost_rows = len(writer.acked_ids() - writer.rows_on(new_address))
    lost_posts = len(poster.missing())
    refused = [(at - started, why) for at, why in poster.failures if at >= started]
    reasons = {why: sum(1 for _, w in refused if w == why) for _, why in refused}
    figures["db"] = (row_gap, lost_rows, lost_posts)
    figures["db_acked"] = (len(writer.acked), len(poster.acked))
    figures["db_posts_after"] = poster.first_after(started + command)  # written through the new primary
    figures["db_refused"] = len(refused)
    figures["db_clients_ok"] = report.clients.ok
    say(
        f"DB failover: docker kill of the primary {old}, failover_db(force=True) -> {new} in {command:.1f} s; "
        f"writes on the DB paused {row_gap:.2f} s (first acknowledged {first_row:.2f} s after the command started), "
        f"{lost_rows} of {len(writer.acked)} acknowledged rows lost"
    )
    say(
        f"DB failover: posts through the address: first acknowledged {seconds(poster.first_after(started))} after the "
        f"command started, longest gap {poster.longest_gap(started):.2f} s, {len(refused)} refused "
        f"({', '.join(f'{n} {why}' for why, n in sorted(reasons.items())) or 'none'}; the last "
        f"{seconds(max((t for t, _ in refused), default=None))} after the command started; posting went on 15 s "
        f"after the first post after the command), {lost_posts} of {len(poster.acked)} acknowledged posts lost; "
        f"clients re-pointed: "
        + ("all" if report.clients.ok else "NOT all: " + site.redact("; ".join(report.clients.left_to_do)))
    )
    others = [h.name for h in dbinv.with_role("db") if h.name not in (old, new)]

    def follows() -> bool:
        now = {s.host.name: s for s in mmdeploy.db_status(dbinv)}
        return all(now[n].upstream == new_address and now[n].streaming for n in others)

    followed = wait(follows, 60, 2)
    figures["db_follows"] = followed is not None
    now = {s.host.name: s for s in mmdeploy.db_status(dbinv)}
    say(
        f"DB failover: the other replica ({', '.join(others)}) follows {new}: "
        + (f"yes, streaming ({seconds(followed, 1)} after the command)" if followed is not None else "NO")
        + f" [re-pointed by failover-db: {', '.join(report.db.repointed) or 'none'}; not streaming yet at its end: "
        f"{', '.join(report.db.behind) or 'none'}; now: "
        + ", ".join(f"{n} {now[n].role} upstream {now[n].upstream or '-'}" for n in others)
        + "]"
    )
    back = site.back(old)
    reachable = wait(lambda: next(s for s in mmdeploy.db_status(dbinv) if s.host.name == old).reachable, 120, 2)
    t0 = time.monotonic()
    try:
        said = io.StringIO()
        try:
            mmdeploy.rejoin(dbinv, old, out=said)
        finally:
            keep(f"rejoin {old}", said.getvalue())
        rejoined = f"rejoined in {time.monotonic() - t0:.1f} s"
        figures["db_rejoined"] = True
    except Exception as e:
        rejoined = f"rejoin FAILED: {site.redact(f'{type(e).__name__}: {e}')[:300]}"
    now = {s.host.name: s for s in mmdeploy.db_status(dbinv)}
    say(
        f"DB failover: {old} started again (SSH after {seconds(back, 1)}, reachable for mmdeploy "
        f"{seconds(reachable, 1)} later), {rejoined}; replicas streaming from {new}: "
        + (", ".join(n for n, s in now.items() if s.upstream == new_address and s.streaming) or "none")
    )


# --- growing into the cluster pattern ---------------------------------------------------------


def grow(site: Site, figures: dict, cli: Callable[..., subprocess.CompletedProcess]) -> Site:
    """Issue #9's growth: the running multi site, with posts and files, re-deployed as the
    cluster pattern with the hosts it adds (app3, search3, storage3, storage4; the bed keeps
    every other host and address), while a client posts through the floating address the
    multi site had. Records the deploy, the longest gap between acknowledged posts (the
    downtime), what was lost, verify, search and the second deploy; returns the grown Site."""
    from tests.standin import artifacts

    session = site.session()
    team = session._get(f"/api/v4/teams/name/{site.team}")["id"]
    files = {}
    for i in range(10):
        content = os.urandom(3072 * (i + 1))
        if (file_id := upload(session, content)) and downloads(session, file_id, content):
            files[file_id] = content
    term = f"grownbefore{secrets.token_hex(4)}"
    old_post = post_until_acked(session, f"before the growth {term}")
    figures["files, posts before"] = (len(files), old_post is not None)
    poster = Poster(
        site.base, site.domain, site.user, site.secrets.existing(ADMIN_PASSWORD), team=site.team, interval=0.25
    )
    poster.start()
    try:
        t0 = time.monotonic()
        testbed.grow(ROOT, site.path, "cluster", log=quiet)
        grown = mmdeploy.load(site.path)
        artifacts.prepare_bed([(h.name, list(h.roles)) for h in grown.hosts])
        figures["new hosts up (s)"] = round(time.monotonic() - t0, 1)
        say(f"  bed grown to {len(grown.hosts)} hosts in {figures['new hosts up (s)']} s; deploying pattern cluster")
        t1 = time.monotonic()
        run = cli("deploy", "--inventory", str(site.path), "--yes", "--json", timeout=2400)
        figures["grow deploy (s)"] = round(time.monotonic() - t1, 1)
        keep("grow deploy", run.stderr)
        time.sleep(5)  # posting after the deploy: the gap, if any, closed
    finally:
        poster.stop()
    report = json.loads(run.stdout) if run.stdout.strip().startswith("{") else {"ok": False, "steps": []}
    figures["grow deploy ok"] = report["ok"]
    figures["grow deploy changes"] = report.get("changed")
    figures["grow deploy failed steps"] = [
        f"{s['host']} {s['component']} {s['step']}: {s.get('error', '')[-300:]}"
        for s in report["steps"]
        if s["status"] == "failed"
    ]
    figures["downtime: longest gap between acknowledged posts (s)"] = round(poster.longest_gap(t0), 2)
    figures["posts acknowledged, refused during the growth"] = (len(poster.acked), len(poster.failures))
    figures["posts lost"] = len(poster.missing())
    say(
        f"  deploy {'ok' if report['ok'] else 'FAILED'} in {figures['grow deploy (s)']} s, "
        f"{report.get('changed')} changes; longest gap {seconds(poster.longest_gap(t0))}; "
        f"{figures['posts acknowledged, refused during the growth']} posts acked/refused, "
        f"{figures['posts lost']} lost"
    )
    for failed in figures["grow deploy failed steps"]:
        say(f"  failed: {failed}")
    grown_site = Site(site.path, mmdeploy.load(site.path))
    figures["floating addresses"] = [v.split("/")[0] for v in grown_site.inv.settings.proxy.vips]
    session = grown_site.session()
    figures["files lost"] = [f for f, content in files.items() if not downloads(session, f, content)]
    figures["old post found by search"] = old_post is not None and search(session, team, term, old_post)[0]
    fresh = f"grownafter{secrets.token_hex(4)}"
    new_post = post_until_acked(session, f"after the growth {fresh}")
    figures["new post found by search"] = new_post is not None and (
        wait(lambda: search(session, team, fresh, new_post)[0], 60, 0.5) is not None
    )
    checks = json.loads(cli("verify", "--inventory", str(site.path), "--json").stdout)
    figures["verify ok"] = checks["ok"]
    figures["verify failing"] = [f"{c['name']}: {c.get('detail', '')}" for c in checks["checks"] if not c["ok"]]
    figures["verify checks"] = [c["name"] for c in checks["checks"]]
    again = json.loads(cli("deploy", "--inventory", str(site.path), "--yes", "--json").stdout)
    figures["second deploy changes"] = again.get("changed")
    figures["second deploy changed steps"] = [
        f"{s['host']} {s['component']} {s['step']}" for s in again["steps"] if s["status"] != "ok"
    ]
    say(
        f"  verify {'passed' if checks['ok'] else 'FAILED'}; files lost {len(figures['files lost'])} of {len(files)}; "
        f"second deploy changed {again.get('changed')}"
    )
    return grown_site


# --- a rolling upgrade and its rollback ------------------------------------------------------


def next_patch(version: str) -> str:
    """The next patch release of a series: 10.11.4 -> 10.11.5 (the stand-in builds any)."""
    series, patch = version.rsplit(".", 1)
    return f"{series}.{int(patch) + 1}"


def upgrade(
    site: Site, figures: dict, version: str, cli: Callable[..., subprocess.CompletedProcess], interval: float = 0.05
) -> None:
    """Issue #12 on the pattern's own bed: `upgrade` to `version` (a stand-in release of the
    running series, served from the bed's gateway), then `rollback`, each while a client
    posts and holds a websocket through every floating address. Records per action the
    report, the failed requests and the websockets; then what one deploy of the site's own
    inventory changed (the rollback brought back the release it names: nothing)."""
    from tests.standin import release

    password = site.secrets.existing(ADMIN_PASSWORD)
    vips = [v.split("/")[0] for v in site.inv.settings.proxy.vips]
    newer = mmdeploy.load(site.path, release.overrides(version))
    for action, run in (
        ("upgrade", lambda out: mmdeploy.upgrade(newer, out=out)),
        ("rollback", lambda out: mmdeploy.rollback(mmdeploy.load(site.path), out=out)),
    ):
        clients = []
        for vip in vips:
            poster = SpecPoster(f"https://{vip}", site.domain, site.user, password, team=site.team, interval=interval)
            token = poster.client.headers["Authorization"].split()[1]
            clients.append((poster, Websocket(f"wss://{vip}/api/v4/websocket", token)))
        for poster, ws in clients:
            poster.start()
            ws.start()
        time.sleep(1.5)
        out = io.StringIO()
        try:
            report = run(out)
        finally:
            for poster, ws in clients:
                poster.stop()
                ws.stop()
        keep(f"{action} to {report.target}", out.getvalue())
        failures = [why for poster, _ in clients for _, why in poster.failures]
        figures[action] = {
            "ok": report.ok,
            "message": report.message,
            "procedure": report.procedure,
            "nodes": [(n.host, n.status) for n in report.nodes],
            "seconds": report.seconds,
            "per node (s)": {n.host: n.seconds for n in report.nodes},
            "drain (s)": {n.host: n.drain_seconds for n in report.nodes if n.drain_seconds is not None},
            "posts acknowledged": sum(len(p.acked) for p, _ in clients),
            "slowest acknowledged post (s)": round(max(p.slowest for p, _ in clients), 2),
            "failed requests": failures,
            "re-sent after an NGINX GOAWAY (not processed)": sum(len(p.resent) for p, _ in clients),
            "posts not readable": sum(len(p.missing()) for p, _ in clients),
            "websocket failures": [f for _, ws in clients for f in ws.failed],
            "websocket reconnects": sum(ws.closed for _, ws in clients),
            "versions": {
                h.name: on(h.name, f"cat {HOME}/.mmdeploy-version").stdout.strip()
                for h in site.inv.hosts
                if h.has("app") or h.has("jobserver")
            },
        }
        say(
            f"{action} to {report.target}: {'ok' if report.ok else 'FAILED: ' + report.message} in "
            f"{report.seconds:.1f} s ({', '.join(f'{h} {s}' for h, s in figures[action]['nodes'])}); "
            f"{figures[action]['posts acknowledged']} posts through {', '.join(vips)}, {len(failures)} failed"
        )
    after = json.loads(cli("deploy", "--inventory", str(site.path), "--yes", "--json").stdout)
    figures["deploy after the rollback"] = {
        "ok": after["ok"],
        "changed": [f"{s['host']} {s['component']} {s['step']}" for s in after["steps"] if s["status"] != "ok"],
    }
