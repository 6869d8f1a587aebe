"""The README's main job as a new user runs it: `inv up` on the operator's own bed, then the
README's operating commands (plan, deploy, db.status, failover-db, db.rejoin, verify) on
the inventory it wrote, with nothing else on the command line (issue #7). And the two
README commands in either order: the suite's bed and the operator's never touch each
other (`inv up` beside a suite bed, a suite bed recreated beside a deployed `inv up`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

import mmdeploy

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

# The operator's bed for this module: next to the suite's (MMDEPLOY_BED, set by tests/conftest.py).
USER_BED = str(int(os.environ["MMDEPLOY_BED"]) + 1)


def user_inv(*args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """The CLI as the operator runs it, on the operator's bed."""
    env = {**os.environ, "MMDEPLOY_BED": USER_BED, "MMDEPLOY_RUN_DIR": str(ROOT / ".mmdeploy" / "runs")}
    p = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and p.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} exited {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def containers(bed: str) -> dict[str, str]:
    """name -> id of the containers of bed number `bed`."""
    network = "mmdeploy-bed" if bed == "0" else f"mmdeploy-bed{bed}"
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=mmdeploy.testbed={network}", "--format", "{{.Names}} {{.ID}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def main_job(bed):
    suite_bed = os.environ["MMDEPLOY_BED"]
    bed("single")  # the suite's bed is up first: `inv up` must leave it alone
    before = containers(suite_bed)
    assert before
    try:
        up = user_inv("up")
        written = re.search(r"test-bed hosts, (\S+\.yml)\) is up", up.stdout)
        assert written, up.stdout[-2000:]
        yield {"up": up, "inventory": written.group(1), "suite_before": before, "suite_bed": suite_bed}
    finally:
        user_inv("testbed.down", check=False, timeout=300)


def test_inv_up_deploys_verifies_and_prints_the_url(main_job):
    out = main_job["up"].stdout
    assert re.search(r"URL:\s+https://10\.213\.\d+\.\d+/", out)
    assert "password: key mattermost_admin_password in" in out
    assert "FAIL" not in out
    # ... and where the picture of what it deployed is (an SVG with a node per host).
    (picture,) = re.findall(r"^\s*topology: (\S+\.svg)", out, re.M)
    svg = (ROOT / picture).read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and all(h in svg for h in ("proxy1", "app1", "db1", "db2"))


def test_inv_up_left_the_suites_bed_alone(main_job):
    assert containers(main_job["suite_bed"]) == main_job["suite_before"]


def test_the_readme_commands_work_on_the_written_inventory_alone(main_job):
    path = main_job["inventory"]
    plan = json.loads(user_inv("plan", "--inventory", path, "--json").stdout)
    assert plan["ok"] and plan["changed"] == 0, [s for s in plan["steps"] if s["status"] != "ok"]
    status = json.loads(user_inv("db.status", "--inventory", path, "--json").stdout)
    primary = [n["host"] for n in status["nodes"] if n["role"] == "primary"]
    assert primary == ["db1"], status
    # The story: the primary lost, `failover-db --force` promotes the replica and
    # re-points every Mattermost server (this failed with "settings.mattermost.sha256 is
    # required" when the written inventory was not self-contained); the old primary back,
    # fenced, then rejoined as a replica.
    db1 = f"mmdeploy-bed{USER_BED}-db1"
    subprocess.run(["docker", "kill", db1], check=True, capture_output=True)
    failover = user_inv("failover-db", "--inventory", path, "--force")
    assert "db2 is the primary" in failover.stdout and "NOT re-pointed" not in failover.stdout, failover.stdout
    subprocess.run(["docker", "start", db1], check=True, capture_output=True)
    deadline = time.monotonic() + 90
    while subprocess.run(["docker", "exec", db1, "systemctl", "is-active", "ssh"], capture_output=True).returncode:
        assert time.monotonic() < deadline, "db1's sshd did not come back"
        time.sleep(1)
    user_inv("db.rejoin", "db1", "--inventory", path)
    status = json.loads(user_inv("db.status", "--inventory", path, "--json").stdout)
    assert [n["host"] for n in status["nodes"] if n["role"] == "primary"] == ["db2"], status
    # The deploy after the failover reads the live roles: it demotes nothing; it only gives
    # the Mattermost servers the rejoined replica back as a reader. Then it changes nothing.
    deploy = json.loads(user_inv("deploy", "--inventory", path, "--yes", "--json").stdout)
    changed = {s["component"] for s in deploy["steps"] if s["status"] == "changed"}
    assert deploy["ok"] and changed <= {"mattermost"}, [s for s in deploy["steps"] if s["status"] != "ok"]
    replicas = subprocess.run(
        [
            "docker",
            "exec",
            f"mmdeploy-bed{USER_BED}-app1",
            "jq",
            "-r",
            ".SqlSettings.DataSourceReplicas[]",
            "/opt/mattermost/config/config.json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    db1_address = mmdeploy.load(ROOT / path).host("db1").private_address
    assert len(replicas.split()) == 1 and f"@{db1_address}:5432/" in replicas  # db1, the rejoined replica
    again = json.loads(user_inv("deploy", "--inventory", path, "--yes", "--json").stdout)
    assert again["ok"] and again["changed"] == 0, [s for s in again["steps"] if s["status"] != "ok"]
    checks = json.loads(user_inv("verify", "--inventory", path, "--json").stdout)
    assert checks["ok"], [c for c in checks["checks"] if not c["ok"]]


def test_a_suite_bed_recreated_beside_it_leaves_the_operators_alone(main_job, bed):
    user_before = containers(USER_BED)
    bed("single", fresh=True)  # what the suite does first when the operator's bed is up
    assert containers(USER_BED) == user_before
    checks = json.loads(user_inv("verify", "--inventory", main_job["inventory"], "--json").stdout)
    assert checks["ok"], [c for c in checks["checks"] if not c["ok"]]
