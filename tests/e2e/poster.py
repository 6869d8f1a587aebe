"""A Mattermost client for the failover tests and benchmarks: posts through NGINX, as users
do, and records every post the API acknowledged (HTTP 201), so that a test can check that
none is lost and measure when posting works again.

Only Mattermost's API v4 is used: login, team and channel by name, create and read posts.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time

import httpx


class Poster(threading.Thread):
    def __init__(
        self,
        base: str,
        domain: str,
        username: str,
        password: str,
        team: str = "main",
        channel: str = "town-square",
        interval: float = 0.1,
        verify: bool = False,
    ):
        super().__init__(daemon=True)
        self.base, self.interval = base.rstrip("/"), interval
        self.client = httpx.Client(
            http2=True, verify=verify, timeout=3, headers={"Host": domain, "X-Requested-With": "XMLHttpRequest"}
        )
        r = self.client.post(f"{self.base}/api/v4/users/login", json={"login_id": username, "password": password})
        r.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {r.headers['Token']}"
        team_id = self._get(f"/api/v4/teams/name/{team}")["id"]
        self.channel = self._get(f"/api/v4/teams/{team_id}/channels/name/{channel}")["id"]
        self.acked: list[tuple[str, str, float]] = []  # (post id, message, time acknowledged)
        self.failures: list[tuple[float, str]] = []
        self._stop_event = threading.Event()
        self._n = 0

    def __repr__(self) -> str:  # test reports print fixtures: never the token
        return f"Poster({self.base})"

    def _get(self, path: str) -> dict:
        r = self.client.get(self.base + path)
        r.raise_for_status()
        return r.json()

    def post(self, message: str) -> str | None:
        """One post; its id when acknowledged."""
        try:
            r = self.client.post(f"{self.base}/api/v4/posts", json={"channel_id": self.channel, "message": message})
        except httpx.HTTPError as e:
            self.failures.append((time.monotonic(), f"{type(e).__name__}"))
            return None
        if r.status_code != 201:
            self.failures.append((time.monotonic(), f"HTTP {r.status_code}"))
            return None
        post_id = r.json()["id"]
        self.acked.append((post_id, message, time.monotonic()))
        return post_id

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._n += 1
            self.post(f"failover probe {self._n} {time.time():.3f}")
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def first_after(self, t: float) -> float | None:
        """Seconds from `t` to the first acknowledged post at or after it."""
        after = [at for _, _, at in self.acked if at >= t]
        return min(after) - t if after else None

    def longest_gap(self, around: float) -> float:
        """The longest pause between acknowledged posts around the event at `around`."""
        times = sorted(at for _, _, at in self.acked)
        gaps = [b - a for a, b in zip(times, times[1:]) if b >= around]
        return max(gaps, default=0.0)

    def missing(self, attempts: int = 20) -> list[str]:
        """Acknowledged posts that cannot be read back (with the same message), each retried
        for a while: a read may go to a replica that is a moment behind."""
        lost = []
        for post_id, message, _ in self.acked:
            for _ in range(attempts):
                try:
                    r = self.client.get(f"{self.base}/api/v4/posts/{post_id}")
                    if r.status_code == 200 and r.json().get("message") == message:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            else:
                lost.append(post_id)
        return lost


class SpecPoster(Poster):
    """The poster, re-sending a request that the proxy refused unprocessed, as every HTTP/2
    client does (RFC 9113 6.8: a GOAWAY's streams above its last stream id were not
    processed and may be retried). NGINX sends GOAWAY on the connections of its old workers
    at each reload (a drain, a return); such a request never reached Mattermost. Counted
    apart (`resent`), never as acknowledged without an answer."""

    # A request counts as failed when it gets no answer within this. The Poster's 3 s
    # measures failover gaps; an upgrade's contract is no failed request, and on a loaded
    # 2-core machine (two test modules at once) 8 of 1,117 posts waited over 3 s, none lost.
    # A request held by a node that went away still shows: NGINX waits for it up to its
    # proxy_read_timeout (600 s).
    TIMEOUT = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client.timeout = httpx.Timeout(self.TIMEOUT)
        self.resent: list[str] = []
        self.slowest = 0.0  # the longest wait for an acknowledged post (s)

    def post(self, message: str) -> str | None:
        for attempt in (1, 2, 3):
            started = time.monotonic()
            try:
                r = self.client.post(f"{self.base}/api/v4/posts", json={"channel_id": self.channel, "message": message})
            except httpx.RemoteProtocolError as e:
                # h2's GOAWAY event; error code 0 is NO_ERROR: a graceful shutdown, not a fault.
                if attempt < 3 and re.search(r"ConnectionTerminated error_code:(ErrorCodes\.NO_ERROR|0)\b", str(e)):
                    self.resent.append(str(e))
                    continue
                self.failures.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                return None
            except httpx.HTTPError as e:
                self.failures.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                return None
            if r.status_code != 201:
                self.failures.append((time.monotonic(), f"HTTP {r.status_code}"))
                return None
            self.acked.append((r.json()["id"], message, time.monotonic()))
            self.slowest = max(self.slowest, self.acked[-1][2] - started)
            return r.json()["id"]


class Websocket(threading.Thread):
    """A client that keeps a websocket open through NGINX and reconnects when it closes,
    as Mattermost's clients do."""

    def __init__(self, url, token):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.opened = self.closed = 0
        self.failed: list[str] = []
        self._halt = threading.Event()

    def run(self):
        asyncio.run(self._run())

    async def _run(self):
        # websockets' asyncio client: its sync client reads the TLS socket in a thread of
        # its own while the handshake is written from another, and about 1 handshake in
        # 100 never reached NGINX (see SiteChecks.websocket).
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        while not self._halt.is_set():
            try:
                async with connect(
                    self.url, ssl=context, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=5
                ) as ws:
                    if json.loads(await asyncio.wait_for(ws.recv(), 5)).get("event") != "hello":
                        self.failed.append("no hello")
                    self.opened += 1
                    while not self._halt.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 0.5)
                        except TimeoutError:
                            continue
            except ConnectionClosed:  # its server stopped: reconnect, as the clients do
                self.closed += 1
            except Exception as e:  # a reconnect refused or failed: what must not happen
                if not self._halt.is_set():
                    self.failed.append(f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.2)

    def stop(self):
        self._halt.set()
        self.join(10)
