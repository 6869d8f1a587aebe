"""A local HTTP server answering fixed JSON documents by path, for running the probes mmdeploy
sends to hosts (small python3 scripts that read a cluster's API) here, unchanged."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator


@contextmanager
def serving(answer: Callable[[str], object]) -> Iterator[str]:
    """Serve `answer(path)` as JSON (None: 503) on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = answer(self.path)
            data = json.dumps(body).encode() if body is not None else b'{"error": "unavailable"}'
            self.send_response(200 if body is not None else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
