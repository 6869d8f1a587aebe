"""End-to-end fixtures: the local Docker test bed (real containers, real SSH, real apt)."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mmdeploy import testbed
from tests.figures import figures  # noqa: F401  (the modules import it from here)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bed():
    """bed(pattern, fresh=False, hosts=None, distro="bookworm") -> inventory path of a started
    test bed with that layout (hosts=N: N generic hosts instead of a pattern's), on hosts of
    that Debian suite.

    Containers are recreated when the layout changes or `fresh` is asked for (a module
    that changes topology, such as a failover, wants clean hosts); otherwise the same
    layout is reused within the session. `share=GROUP` (tests/conftest.py SHARED_BEDS):
    the bed the previous module of that group left, deployed, if it is the one up, else
    fresh hosts (the module run alone, or the first of its group). MMDEPLOY_BED=N selects
    a separate bed. A
    pattern's layout with search hosts gets the OpenSearch archives in its inventory and
    the bed-only setup of its containers (tests/standin/artifacts.py)."""
    from tests.standin import artifacts

    current = {}

    def start(
        pattern: str = "single",
        fresh: bool = False,
        hosts: int | None = None,
        distro: str = testbed.SUITE,
        sudo_user: str | None = None,
        share: str | None = None,
    ) -> Path:
        """`sudo_user`: the inventory reaches the hosts as this user, with sudo."""
        layout = (f"{hosts}-hosts" if hosts else pattern, distro, sudo_user)
        # `inv up` (test_multi runs it on this bed) replaces a bed that is not its own.
        ours = current and all(c["owner"] == "tests" for c in testbed.status() or [{"owner": ""}])
        if share is not None and current.get("share") != share:
            fresh = True  # not the group's bed: its first module, or a module run alone
        current["share"] = share
        if fresh or current.get("pattern") != layout or not ours:
            testbed.down(log=lambda *_: None)
            spec = [] if hosts else testbed.PATTERNS.get(pattern, [])
            current["path"] = testbed.up(
                ROOT,
                pattern=None if hosts else pattern,
                hosts=hosts,
                owner="tests",
                log=lambda *_: None,
                distro=distro,
                sudo_user=sudo_user,
                settings=artifacts.bed_settings({r for _, rs in spec for r in rs}),
            )
            artifacts.prepare_bed(spec)
            current["pattern"] = layout
        return current["path"]

    yield start


def inv(*args: str, check: bool = True, input: str | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the CLI as an operator would; output is returned, not printed. A run that hangs
    fails its test at `timeout` instead of holding up the suite."""
    env = {**os.environ, "MMDEPLOY_RUN_DIR": str(ROOT / ".mmdeploy" / "runs")}
    p = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def on(host: str, command: str) -> str:
    """Run a command inside a test-bed container (for assertions, not for deploying)."""
    return subprocess.run(
        ["docker", "exec", testbed.container_name(host), "bash", "-c", command],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout


def metric(address: str, port: int, line: str, timeout: float = 60) -> bool:
    """An exporter on a bed host shows `line` among its metrics (it may still be starting)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as r:
                if line in r.read().decode().splitlines():
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


@pytest.fixture(scope="session")
def standin_release():
    """standin_release() -> --set overrides pointing the Mattermost component at the
    stand-in release served from the bed's gateway; call it after the bed is up."""
    from tests.standin import release

    release.build()  # once per session; overrides() only serves it
    return release.overrides
