"""A webhook receiver for the alerting tests: an HTTP server on the bed's gateway that
records what Alertmanager posts (its webhook format: status, alerts with labels), so a
test can see that an alert fired and was resolved, as a chat channel would."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, address: str):
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    received.append(json.loads(body))
                except ValueError:
                    pass
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __repr__(self) -> str:
        return f"Receiver({self.url})"

    def seen(self, alertname: str, status: str, **labels: str) -> bool:
        """An alert with these labels was posted with this status (firing or resolved)."""
        return any(
            a.get("status") == status
            and a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
            for payload in self.received
            for a in payload.get("alerts", [])
        )

    def close(self) -> None:
        self.server.shutdown()
