"""The cluster pattern's chaos round (issue 9): one node of each kind killed in turn while
clients post through both floating addresses, the system left to recover between faults.
Shared by tests/e2e/test_cluster_pattern.py (which asserts) and benchmarks/chaos.py (which
prints the per-fault table).

For each fault, in this order: the DB leader (no command run: Patroni fails over by
itself), an etcd member (its process killed: systemd starts it again), the proxy holding
the first floating address, an app server, a search node, a storage node, a push proxy and
the job server (with monitoring). While the node is down: posting through both addresses
works again (the longest gap between acknowledged posts is the fault's unavailability),
every file uploaded before the round downloads, a post made after the fault is found by
search, Alertmanager shows the alert for the node (not for the job server: it is the
one running Alertmanager; nor for etcd, which systemd starts again within a second), and
`inv verify` passes with the dead node reported as down. Then the node is started again
(`docker start`), and the next fault waits until it is back.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field

from mmdeploy import testbed
from mmdeploy.components.alerting import firing

from tests.e2e import multi_site
from tests.e2e.multi_site import Site, docker, downloads, on, post_until_acked, say, search, upload, wait


@dataclass
class Fault:
    kind: str
    host: str
    how: str  # "docker kill" or a command run on the host
    gap: float | None = None  # longest pause between acknowledged posts, either address
    back_after: float | None = None  # seconds from the fault to posting again through both
    files_failed: int = 0  # earlier files that did not download on the first pass after the fault
    files_back: float | None = None  # seconds from the fault until every earlier file downloaded
    found_after: float | None = None  # a post made after the fault, found by search
    alert: str | None = None  # the alert Alertmanager showed for the host
    verify_ok: bool | None = None  # `inv verify` passed while the node was down
    verify_down: list[str] = field(default_factory=list)  # the hosts it reported as down
    verify_failing: list[str] = field(default_factory=list)  # its failing checks, with the problem
    verify_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


class Alerts(threading.Thread):
    """Polls Alertmanager on the monitoring host every 5 s: (alertname, host) -> first seen."""

    def __init__(self, site: Site):
        super().__init__(daemon=True)
        self.monitor = site.inv.with_role("monitoring")[0]
        self.seen: dict[tuple[str, str], float] = {}
        self.now: set[tuple[str, str]] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                current = {(a["labels"]["alertname"], a["labels"].get("host", "")) for a in firing(self.monitor)}
                for key in current:
                    self.seen.setdefault(key, time.monotonic())
                self.now = current
            except Exception:
                pass  # the monitoring host may be the one killed
            self.stop.wait(5)

    def for_host(self, host: str, since: float) -> str | None:
        return next((name for (name, h), at in self.seen.items() if h == host and at >= since), None)


def leader(site: Site) -> str:
    import mmdeploy

    writable = [s.host.name for s in mmdeploy.db_status(site.inv) if s.writable]
    if len(writable) != 1:
        raise RuntimeError(f"expected one DB leader, found {writable or 'none'}")
    return writable[0]


KINDS = (
    "DB leader",
    "etcd member",
    "proxy",
    "app server",
    "search node",
    "storage node",
    "push proxy",
    "job server",
)
# The kinds only the cluster pattern has: the suite's round (test_cluster_pattern) kills these.
# The balanced tiers (an app, a search, a storage and a push node) are lost the same way on
# the multi bed, where test_multi asserts more about each; benchmarks/chaos.py kills them all.
CLUSTER_KINDS = ("DB leader", "etcd member", "proxy", "job server")
# Alerts about an event, not a state: they fire for a window after it (5 min), by design.
EVENTS = ("DatabasePrimaryChanged", "FloatingAddressMoved")


def victims(site: Site, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str, str]]:
    """(kind, host, how) for each fault of the round of those kinds, in order."""
    inv = site.inv
    db_leader = leader(site)
    etcd_member = next(h.name for h in inv.with_role("db") if h.name != db_leader)
    hosts = [
        (db_leader, "docker kill"),
        (etcd_member, "systemctl kill --signal=SIGKILL etcd"),
        (site.holder(), "docker kill"),
        (inv.with_role("app")[-1].name, "docker kill"),
        (inv.with_role("search")[0].name, "docker kill"),
        (inv.with_role("storage")[0].name, "docker kill"),
        (inv.with_role("pushproxy")[0].name, "docker kill"),
        (inv.with_role("jobserver")[0].name, "docker kill"),
    ]
    return [(kind, host, how) for kind, (host, how) in zip(KINDS, hosts) if kind in kinds]


def round_(
    site: Site, alerts: bool = True, alert_wait: float = 120, kinds: tuple[str, ...] = KINDS
) -> tuple[list[Fault], dict]:
    """Run the round (a fault of each of `kinds`); returns the faults and the totals (posts
    acknowledged and lost)."""
    vips = [v.split("/")[0] for v in site.inv.settings.proxy.vips]
    posters = []
    for address in vips:
        p = multi_site.Poster(
            f"https://{address}",
            site.domain,
            site.user,
            site.secrets.existing(multi_site.ADMIN_PASSWORD),
            team=site.team,
            # Two posts a second per address: the gaps keep a half-second resolution, and every
            # tier of the 18 hosts does half the work of four a second, on the two cores the
            # module beside it shares (a single-pattern deploy took 580 s there, 95 s alone).
            interval=0.5,
        )
        posters.append(p)
    session = site.session()
    team = session._get(f"/api/v4/teams/name/{site.team}")["id"]
    files = {}
    for i in range(3):
        content = os.urandom(4096 * (i + 1))
        if file_id := upload(session, content):
            files[file_id] = content
    watcher = Alerts(site)
    if alerts:
        watcher.start()
    for p in posters:
        p.start()
    faults: list[Fault] = []
    try:
        for kind, host, how in victims(site, kinds):
            faults.append(
                _fault(site, posters, session, team, files, watcher if alerts else None, alert_wait, kind, host, how)
            )
    finally:
        for p in posters:
            p.stop()
        watcher.stop.set()
    missing = [post for p in posters for post in p.missing()]
    totals = {
        "posts acknowledged": sum(len(p.acked) for p in posters),
        "posts lost": len(missing),
        "files before the round": len(files),
    }
    return faults, totals


def _fault(site, posters, session, team, files, watcher, alert_wait, kind, host, how) -> Fault:
    fault = Fault(kind, host, how)
    time.sleep(3)  # steady posting before the fault
    t0 = time.monotonic()
    if how == "docker kill":
        docker("kill", testbed.container_name(host))
    else:
        on(host, how)
    # Posting works again through both addresses (the balancers and Patroni noticed).
    back = wait(lambda: all(p.first_after(t0 + 0.5) is not None for p in posters), 90, 0.2)
    fault.back_after = back
    time.sleep(2)
    fault.gap = max(p.longest_gap(t0) for p in posters)
    problems = [p for f, c in files.items() if (p := _download_problem(session, f, c))]
    fault.files_failed = len(problems)
    if problems:
        fault.notes.append(f"first downloads: {'; '.join(problems)}")
        if wait(lambda: all(downloads(session, f, c) for f, c in files.items()), 60, 1) is not None:
            fault.files_back = time.monotonic() - t0
    else:
        fault.files_back = time.monotonic() - t0
    # `inv verify` runs while the round waits for search and for the alert: all three only
    # need the node down, and the alert's `for:` is most of the wait.
    verifying = threading.Thread(target=_verify, args=(site, fault), daemon=True)
    verifying.start()
    term = f"chaos{secrets.token_hex(4)}"
    post_id = post_until_acked(session, f"after the {kind} was lost {term}")
    fault.found_after = wait(lambda: search(session, team, term, post_id or "")[0], 60, 0.5) if post_id else None
    if watcher is not None and host not in [h.name for h in site.inv.with_role("monitoring")]:
        if wait(lambda: watcher.for_host(host, t0) is not None, alert_wait, 1) is not None:
            fault.alert = watcher.for_host(host, t0)
    verifying.join()
    # Back: the node started again and its services answering before the next fault.
    if how == "docker kill":
        site.back(host)
        if kind == "DB leader":
            if wait(lambda: _streams(site, host), 180, 2) is None:
                fault.notes.append(f"{host} did not stream within 180 s")
        if kind == "proxy":
            wait(lambda: on(host, "systemctl is-active keepalived", 10).returncode == 0, 90, 1)
    else:
        wait(lambda: on(host, "systemctl is-active etcd", 10).returncode == 0, 60, 1)
    time.sleep(5)
    say(
        f"{kind} ({host}, {how}): posting through both addresses again after {multi_site.seconds(back)}, longest gap "
        f"{multi_site.seconds(fault.gap)}; {fault.files_failed} of {len(files)} earlier files failed to download at "
        f"first, all downloaded {multi_site.seconds(fault.files_back)} after the fault; a "
        f"post made after it found by search {multi_site.seconds(fault.found_after)} later; alert: {fault.alert or '-'}; "
        f"verify {'passed' if fault.verify_ok else 'FAILED'} in {multi_site.seconds(fault.verify_seconds)}, down: "
        f"{', '.join(fault.verify_down) or 'none'}"
        + (f", failing: {'; '.join(fault.verify_failing)}" if fault.verify_failing else "")
        + (f"; {'; '.join(fault.notes)}" if fault.notes else "")
    )
    return fault


def _verify(site: Site, fault: Fault) -> None:
    """`inv verify --json` while the node is down, as an operator would run it: it should
    pass, with the dead node reported as down rather than as a failure of its tier."""
    import json

    t0 = time.monotonic()
    run = deploy_cli(site, "verify", "--json")
    fault.verify_seconds = time.monotonic() - t0
    try:
        doc = json.loads(run.stdout)
    except ValueError:
        fault.verify_ok = False
        fault.verify_failing = [f"no JSON document (exit {run.returncode}): {run.stderr.strip()[-300:]}"]
        return
    fault.verify_ok = bool(doc["ok"])
    fault.verify_down = list(doc.get("down", []))
    fault.verify_failing = [f"{c['name']}: {c['problem']}" for c in doc["checks"] if not c["ok"]]


def _download_problem(session, file_id: str, content: bytes) -> str | None:
    try:
        r = session.client.get(f"{session.base}/api/v4/files/{file_id}", timeout=10)
    except Exception as e:
        return f"{file_id}: {type(e).__name__}"
    if r.status_code != 200:
        return f"{file_id}: HTTP {r.status_code} {r.text[:120]}"
    return None if r.content == content else f"{file_id}: other content"


def _streams(site: Site, host: str) -> bool:
    import mmdeploy

    state = next(s for s in mmdeploy.db_status(site.inv) if s.host.name == host)
    return state.reachable and not state.writable and bool(state.streaming)


def still_firing(site: Site) -> list[tuple[str, str]]:
    """(alertname, host) of the state alerts still firing on Alertmanager."""
    monitor = site.inv.with_role("monitoring")[0]
    alerts = {(a["labels"]["alertname"], a["labels"].get("host", "")) for a in firing(monitor)}
    return sorted(a for a in alerts if a[0] not in EVENTS)


def deploy_cli(site: Site, *args: str) -> subprocess.CompletedProcess:
    return multi_site.cli(*args, "--inventory", str(site.path), timeout=1200)
