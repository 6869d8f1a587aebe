"""An HTTPS prober for the failover tests and benchmarks: a GET every 50 ms from the
control machine, each on a new connection (so a moved floating address is seen at once),
recording (time, ok) for every request. Used by tests/e2e/test_proxies.py (the demo's page)
and benchmarks/ha.py (Mattermost's ping through the floating address).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time


class Probe(threading.Thread):
    """GET https://<address><path> every `interval` seconds with Host: <domain>, TLS not
    verified (the bed's certificate is self-signed); a request is good when it answers 200
    with `expect` in its body within `timeout` seconds. Records (time, ok)."""

    def __init__(
        self,
        address: str,
        domain: str,
        path: str = "/",
        expect: bytes = b"mmdeploy demo",
        timeout: float = 0.5,
        interval: float = 0.05,
    ):
        super().__init__(daemon=True)
        self.address, self.domain = address, domain
        self.path, self.expect, self.timeout, self.interval = path, expect, timeout, interval
        self.results: list[tuple[float, bool]] = []
        self.took: list[float] = []  # each request's seconds, in the order of `results`
        self.slowest = 0.0  # the longest request, good or not
        self.stop = threading.Event()
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def once(self) -> bool:
        conn = http.client.HTTPSConnection(self.address, 443, timeout=self.timeout, context=self.context)
        try:
            conn.request("GET", self.path, headers={"Host": self.domain})
            response = conn.getresponse()
            return response.status == 200 and self.expect in response.read()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            ok = self.once()
            took = time.monotonic() - t
            self.slowest = max(self.slowest, took)
            self.took.append(took)
            self.results.append((t, ok))
            time.sleep(max(0.0, t + self.interval - time.monotonic()))

    def recovered_after(self, moment: float) -> bool:
        """A request started after the first failed one after `moment` was answered: the
        outage that began at `moment` is over. (A good answer alone proves nothing: a request
        in flight at `moment` may still be answered by the node just killed.)"""
        after = [(t, ok) for t, ok in self.results if t > moment]
        failed = next((t for t, ok in after if not ok), None)
        return failed is not None and any(ok and t > failed for t, ok in after)

    def gap_after(self, moment: float) -> float:
        """The longest time without a good answer from the last one before `moment` on
        (the holder may still answer a probe or two right after `docker kill` returns)."""
        good = [t for t, ok in self.results if ok]
        start = [t for t in good if t <= moment]
        assert start and good[-1] > moment, "no answer before or after the kill"
        times = [t for t in good if t >= start[-1]]
        return max(b - a for a, b in zip(times, times[1:]))
