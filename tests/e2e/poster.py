"""A Mattermost client for the failover tests and benchmarks: posts through NGINX, as users
do, and records every post the API acknowledged (HTTP 201), so that a test can check that
none is lost and measure when posting works again.

Only Mattermost's API v4 is used: login, team and channel by name, create and read posts.
"""

from __future__ import annotations

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
