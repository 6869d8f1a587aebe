"""The bed's network, its apt cache (apt-cacher-ng on the control machine) and a small
HTTP server on the gateway that serves artifacts to the hosts like a mirror."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import GATEWAY, LABEL, NETWORK, SUBNET, Log, TestbedError
from .engine import apt_install, docker
from .image import SUITE, mirrors

ACNG_PORT = 3142
ACNG_LOCAL = f"http://127.0.0.1:{ACNG_PORT}"
ACNG_DROPIN = Path("/etc/apt-cacher-ng/zz-mmdeploy.conf")


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_url() -> str:
    return f"{mirrors()[0]}/dists/{SUITE}/Release"


def _probe_cache() -> str | None:
    """Fetch the mirror's Release file through apt-cacher-ng; return None or why it failed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": ACNG_LOCAL}))
    try:
        with opener.open(_probe_url(), timeout=10) as response:
            response.read(64)
        return None
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _acng(action: str) -> None:
    subprocess.run(["/etc/init.d/apt-cacher-ng", action], capture_output=True)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", ACNG_PORT) and time.monotonic() < deadline:
        time.sleep(0.2)


def resolves(name: str) -> str | None:
    try:
        return str(socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except OSError:
        return None


def ensure_apt_cache(log: Log = print) -> str | None:
    """Run apt-cacher-ng on the control machine; return the proxy URL for the bed, or None."""
    try:
        if not shutil.which("apt-cacher-ng"):
            apt_install("apt-cacher-ng", log)
    except TestbedError as exc:
        log(f"apt cache not used: {exc}")
        return None
    if not _port_open("127.0.0.1", ACNG_PORT):
        _acng("start")
    failure = _probe_cache()
    dropin = (
        "# Written by mmdeploy.testbed: use the mirror the control machine uses.\n"
        f"Remap-debrep: file:deb_mirror*.gz /debian ; {mirrors()[0]}/\n"
    )
    stale = not ACNG_DROPIN.exists() or ACNG_DROPIN.read_text() != dropin
    if failure and stale and resolves(mirrors()[0].split("/")[2]):
        # Debian's acng maps deb.debian.org/debian onto its default backend (ftp.debian.org)
        # when backends_debian is empty; that name may not resolve where the mirror the control
        # machine uses does. Point the Debian backend at that mirror instead.
        log(f"apt-cacher-ng cannot fetch from its Debian backend ({failure}); pointing it at {mirrors()[0]}")
        ACNG_DROPIN.write_text(dropin)
        _acng("restart")
        failure = _probe_cache()
    if failure:
        log(
            f"apt cache not used: fetching {_probe_url()} through apt-cacher-ng failed ({failure}); "
            "the test bed fetches packages directly"
        )
        return None
    # The bed reaches acng on the bridge gateway; only checkable once the network exists.
    if docker("network", "inspect", NETWORK, check=False).returncode == 0 and not _port_open(GATEWAY, ACNG_PORT):
        log(
            f"apt cache not used: apt-cacher-ng does not listen on {GATEWAY}:{ACNG_PORT} "
            "(check BindAddress in /etc/apt-cacher-ng/acng.conf)"
        )
        return None
    return f"http://{GATEWAY}:{ACNG_PORT}"


def ensure_network() -> None:
    if docker("network", "inspect", NETWORK, check=False).returncode != 0:
        docker("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "--label", f"{LABEL}={NETWORK}", NETWORK)


def serve(directory: Path) -> str:
    """Serve `directory` over HTTP on the bed's gateway address (this machine, as the
    containers see it) from a daemon thread of this process; returns the base URL. The
    test bed's stand-in release is downloaded from here exactly like a real mirror."""
    ensure_network()
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((GATEWAY, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{GATEWAY}:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the deploy's own output says what was fetched
        pass
