"""A cold deploy of the single pattern killed (SIGKILL, the control process) at several
points, each time re-run: the runs converge without any manual cleanup, verify passes,
and a last deploy changes nothing. Between the kills the secrets file stays complete and
private (0600).

The points are found in the deploy's own output (a step starting), plus a random delay,
so the kill lands while that step runs on the host: apt installs, creating the PostgreSQL
cluster, seeding the replica, unpacking and activating the release, restarting
Mattermost, creating the first admin (the old trap: a user made, its password not yet
set). Hosts run in parallel, so a step that an earlier run already finished (on a host
that was ahead) is not seen again: each run is killed at the first of the points still
ahead that it reaches, so a point already done never lets a run finish the rest, and at
least five different points must have been hit.
"""

from __future__ import annotations

import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import mmdeploy

from .conftest import ROOT, inv

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]

# (what, the start of a step in the deploy's output, delay range after it in seconds). The
# delay stays within the step's own time on the bed (the release unpacks in under a second,
# the last steps take 0.1-0.3 s): a run killed later has done the next points as well.
POINTS = [  # in the order a cold deploy reaches them
    ("an apt install", r"> packages prometheus-node-exporter: install", (0.5, 3.0)),
    ("the PostgreSQL install", r"> packages postgresql-15: install", (2.0, 6.0)),
    ("creating the cluster", r"> create cluster 15/main", (0.1, 0.8)),
    ("seeding the replica", r"> seed from db1", (0.5, 2.0)),
    ("unpacking the release", r"> release mattermost \S+ in \S+: unpack", (0.0, 0.4)),
    ("activating the release", r"> activate release", (0.0, 0.2)),
    ("restarting Mattermost", r"^app1 +mattermost +> handler restart: run", (0.0, 0.1)),
    ("creating the first admin", r"> first admin sysadmin", (0.0, 0.15)),
]


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


def deploy_until(args: list[str], points: list[tuple[str, str, tuple[float, float]]]) -> tuple[str | None, str]:
    """Run a deploy; at the first line that matches one of `points`, wait that point's
    random delay and SIGKILL it. Returns (the point it was killed at, or None when the
    run ended by itself, and its output)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "invoke", "deploy", *args, "--yes"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MMDEPLOY_RUN_DIR": str(ROOT / ".mmdeploy" / "runs")},
    )
    lines: list[str] = []
    seen: list[tuple[str, str, tuple[float, float]]] = []
    found = threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line)
            match = next((point for point in points if re.search(point[1], line)), None)
            if match and not found.is_set():
                seen.append(match)
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while p.poll() is None and not found.is_set():
        time.sleep(0.05)
    killed = None
    if found.is_set() and p.poll() is None:
        what, _, delay = seen[0]
        time.sleep(random.uniform(*delay))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed = what
    p.wait(1800)
    reader.join(10)
    return killed, "".join(lines)


def test_a_killed_cold_deploy_converges_when_run_again(bed, standin_release):
    path = str(bed("single", fresh=True))
    secrets = Path(path).with_name(Path(path).stem + ".secrets.yml")
    secrets.unlink(missing_ok=True)
    overrides = standin_release() + BED_SETTINGS
    args = ["--inventory", path, *[a for o in overrides for a in ("--set", o)]]
    random.seed(os.environ.get("MMDEPLOY_KILL_SEED", time.time()))
    hit: list[str] = []
    ahead = list(POINTS)
    while ahead:
        killed, output = deploy_until(args, ahead)
        if killed is None:  # the run ended before a kill landed: nothing is left to interrupt
            print(f"not interrupted (done by then): {', '.join(what for what, _, _ in ahead)}")
            break
        hit.append(killed)
        print(f"{killed}: killed")
        ahead = ahead[[what for what, _, _ in ahead].index(killed) + 1 :]
        # The secrets file is whole and private after every kill.
        if secrets.exists():
            assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
            assert set(yaml.safe_load(secrets.read_text())) <= {
                "db_password",
                "db_replication_password",
                "db_monitoring_password",
                "mattermost_admin_password",
                "mattermost_at_rest_encrypt_key",
                "mattermost_public_link_salt",
            }  # shared by app1 and job1
        assert not [p for p in secrets.parent.glob(f".{secrets.name}.*.tmp")]
    assert len(hit) >= 5, f"only hit: {hit}"
    # One more run finishes the work of every interrupted one, with nothing done by hand.
    final = inv("deploy", *args, "--yes", check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    verify = inv("verify", *args, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = inv("deploy", *args, "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout
    # The admin's password is the one in the secrets file, whatever was interrupted.
    from mmdeploy.components.mattermost import SiteChecks

    assert SiteChecks(mmdeploy.load(path, overrides)).login() is None


def test_an_admin_left_with_a_throwaway_password_gets_the_real_one(bed, standin_release):
    """What a run killed between creating the first admin and setting its password leaves
    (the user, with a password nobody knows, and no record of the real one being set):
    the next deploy sets the password from the secrets file."""
    from .conftest import on

    path = str(bed("single"))
    overrides = standin_release() + BED_SETTINGS
    args = ["--inventory", path, *[a for o in overrides for a in ("--set", o)]]
    inv("deploy", *args, "--yes")
    on(
        "app1",
        '/opt/mattermost/bin/mmctl --local user change-password sysadmin --password "$(head -c 18 '
        '/dev/urandom | base64)" && rm -f /etc/mattermost/admin-password.sha256',
    )
    from mmdeploy.components.mattermost import SiteChecks

    assert SiteChecks(mmdeploy.load(path, overrides)).login() is not None  # locked out, as that run left it
    again = inv("deploy", *args, "--yes")
    assert "first admin sysadmin" in again.stdout
    assert SiteChecks(mmdeploy.load(path, overrides)).login() is None
