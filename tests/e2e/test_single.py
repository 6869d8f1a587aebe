"""The single pattern end to end on the test bed: proxy, app, job + monitoring, DB primary
and secondary on separate containers, with the stand-in Mattermost release. (The all-in-one
variant on one container is deployed, verified and redeployed by test_config_in_db.)"""

import re
import subprocess
import threading
import time

import httpx
import pytest
import yaml

import mmdeploy
from mmdeploy import testbed

from .conftest import ROOT, inv, on

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]  # Grafana cannot be downloaded here


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


class ProcessWatch:
    """Samples every container's and this machine's process list while a deploy runs."""

    def __init__(self, hosts):
        self.hosts, self.seen, self.stop = hosts, set(), threading.Event()

    def run(self):
        while not self.stop.is_set():
            for h in self.hosts:
                out = subprocess.run(
                    ["docker", "exec", testbed.container_name(h), "ps", "-eo", "args"], capture_output=True, text=True
                ).stdout
                self.seen.update(out.splitlines())
            self.seen.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
            time.sleep(0.05)


@pytest.fixture(scope="module")
def site(bed, standin_release):
    # The site test_hardening leaves (tests/conftest.py SHARED_BEDS: reached as a sudo user,
    # hostile secrets), or fresh hosts when this module runs alone.
    path = str(bed("single", sudo_user="deploy", share="single-postgresql"))
    overrides = standin_release() + BED_SETTINGS
    names = [h.name for h in mmdeploy.load(path, overrides).hosts]
    watch = ProcessWatch(names)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        first = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    finally:
        watch.stop.set()
        thread.join()
    return path, overrides, first, watch


def secrets_of(path):
    data = yaml.safe_load(open(path.replace(".yml", ".secrets.yml")))
    return [v for v in data.values() if len(str(v)) >= 8]


def test_deploy_then_verify(site):
    path, overrides, first, _ = site
    assert totals(first.stdout)[1] == 0  # (a cold deploy, or the few changes on test_hardening's site)
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for name in (
        "HTTPS ping through NGINX over HTTP/2",
        "websocket upgrade through NGINX",
        "post created through the API and read back",
    ):
        assert f"ok   {name}" in verify.stdout


def test_second_deploy_changes_nothing(site):
    path, overrides, _, _ = site
    again = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_rendered_config_is_valid_for_mattermost(site):
    config = on("app1", "cat /opt/mattermost/config/config.json")
    checker = ROOT / "tests" / "standin" / "dist" / "configcheck"
    p = subprocess.run([str(checker), "/dev/stdin"], input=config, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_no_secret_in_process_list_plan_or_logs(site):
    path, overrides, first, watch = site
    secrets = secrets_of(path)
    assert secrets and watch.seen
    plan = inv(
        "plan", "--inventory", path, *sets(overrides + ["mattermost.config={LogSettings: {ConsoleLevel: DEBUG}}"])
    )
    logs = [p.read_text() for p in (ROOT / ".mmdeploy" / "runs").rglob("*.log")]
    for secret in secrets:
        assert not any(secret in line for line in watch.seen), "a secret was in a process list"
        assert secret not in first.stdout and secret not in plan.stdout
        assert not any(secret in log for log in logs)


def test_post_survives_an_app_restart_and_a_db_failover(site):
    path, overrides, _, _ = site
    site_checks = mmdeploy.components.mattermost.SiteChecks(mmdeploy.load(path, overrides))
    assert site_checks.login() is None
    auth = {"Authorization": f"Bearer {site_checks.token}"}
    with site_checks.client() as c:
        team = c.get(f"{site_checks.base}/api/v4/teams/name/main", headers=auth).json()
        channel = c.get(f"{site_checks.base}/api/v4/teams/{team['id']}/channels/name/town-square", headers=auth).json()
        post = c.post(
            f"{site_checks.base}/api/v4/posts",
            headers=auth,
            json={"channel_id": channel["id"], "message": "before restart"},
        ).json()
    on("app1", "systemctl restart mattermost")

    def read(post_id):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with site_checks.client() as c:
                    r = c.get(f"{site_checks.base}/api/v4/posts/{post_id}", headers=auth)
                if r.status_code == 200:
                    return r.json()["message"]
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"post {post_id} not readable")

    assert read(post["id"]) == "before restart"
    (replica,) = [s.host.name for s in mmdeploy.db_status(mmdeploy.load(path, overrides)) if not s.writable]
    inv("failover-db", "--inventory", path, *sets(overrides))
    config = on("app1", "cat /opt/mattermost/config/config.json")
    new_primary = mmdeploy.load(path).host(replica).private_address
    assert f"@{new_primary}:5432/" in re.search(r'"DataSource": "([^"]+)"', config).group(1)
    with site_checks.client() as c:
        after = c.post(
            f"{site_checks.base}/api/v4/posts",
            headers=auth,
            json={"channel_id": channel["id"], "message": "after failover"},
        )
    assert after.status_code == 201, after.text
    assert read(after.json()["id"]) == "after failover"
    assert read(post["id"]) == "before restart"


def test_upgrade_side_by_side_keeps_config_and_data_then_rolls_back(site):
    """A version change unpacks the new release beside the old one and activates it; the
    server's data and a setting changed outside mmdeploy survive; the old version comes
    back from disk without a download."""
    from tests.standin import release

    path, overrides, _, _ = site
    config = "/opt/mattermost/config/config.json"
    # The default version and its next patch, within one release line (the schema stays).
    current = release.VERSION
    major, minor, patch = current.split(".")
    next_patch = f"{major}.{minor}.{int(patch) + 1}"
    on(
        "app1",
        "install -o mattermost -g mattermost /dev/null /opt/mattermost/data/kept-across-upgrades && "
        f"jq '.TeamSettings.SiteName = \"Set In The Console\"' {config} > /tmp/c.json && "
        f"install -o mattermost -g mattermost -m 0600 /tmp/c.json {config}",
    )
    newer = release.overrides(next_patch) + BED_SETTINGS
    upgrade = inv("deploy", "--inventory", path, *sets(newer), "--yes")
    assert f"release mattermost {next_patch}" in upgrade.stdout
    assert f"Version: {next_patch}" in on("app1", "/opt/mattermost/bin/mattermost version")
    assert on("app1", "ls /opt/mattermost-releases").split() == sorted([current, next_patch])
    assert on("app1", "test -e /opt/mattermost/data/kept-across-upgrades && echo kept").strip() == "kept"
    assert on("app1", f"jq -r .TeamSettings.SiteName {config}").strip() == "Set In The Console"
    verify = inv("verify", "--inventory", path, *sets(newer), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rollback = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert f"release mattermost {current}" not in rollback.stdout  # still on disk: no download, no unpack
    assert f"activate release {current}" in rollback.stdout
    assert f"Version: {current}" in on("app1", "/opt/mattermost/bin/mattermost version")
    assert on("app1", f"jq -r .TeamSettings.SiteName {config}").strip() == "Set In The Console"


def test_mattermost_db_user_refused_from_a_non_app_host(site):
    """pg_hba lets mmuser in from app and job hosts only: this machine (the bed's gateway) is
    neither, and the right password does not help. With the host firewall on (the
    default) the connection does not even reach PostgreSQL: it is dropped (a timeout)."""
    import psycopg

    path, _, _, _ = site
    inventory = mmdeploy.load(path)
    password = yaml.safe_load(open(path.replace(".yml", ".secrets.yml")))["db_password"]
    for db in inventory.with_role("db"):
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry|timeout expired"):
            psycopg.connect(host=db.address, user="mmuser", password=password, dbname="mattermost", connect_timeout=5)
