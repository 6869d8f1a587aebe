"""failover-db with the Mattermost tier present (issue 10), for PostgreSQL and MariaDB: a
`docker kill` of the primary and a partition (`docker network disconnect`, so packets are
dropped, not refused), each while a client posts through NGINX.

For each fault: `failover-db --force` finishes within 30 s; every app server writes through
the new primary (a post through NGINX, read back) and the job server writes to it (its
heartbeat row); no acknowledged post is lost; the old primary, back, stays fenced and
refuses writes until `db.rejoin`.
"""

import re
import subprocess
import time

import pytest

import mmdeploy
from mmdeploy import testbed
from mmdeploy.components.mattermost import ADMIN_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import inv, on
from .poster import Poster
from .test_migrate import MARIADB, hostile_db_secrets
from .test_single import BED_SETTINGS as SINGLE_SETTINGS

pytestmark = pytest.mark.e2e
MYSQL_VERSION = "10.11.4"  # the MySQL family runs Mattermost up to 10.11
# The settings of the modules whose beds these share (tests/conftest.py SHARED_BEDS): the
# PostgreSQL site test_single and test_firewall leave, the MariaDB site test_migrate takes.
ENGINES = {"postgresql": SINGLE_SETTINGS, "mysql": MARIADB}
# PostgreSQL goes on after test_firewall (through test_hardening's sudo user); MariaDB is
# the first of its group, on fresh hosts.
BEDS = {
    "postgresql": {"share": "single-postgresql", "sudo_user": "deploy"},
    "mysql": {"share": "single-mariadb", "fresh": True},
}


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module", params=sorted(ENGINES))
def site(request, bed, standin_release):
    engine = request.param
    path = str(bed("single", **BEDS[engine]))
    if engine == "mysql":
        hostile_db_secrets(path)
    release = standin_release(MYSQL_VERSION) if engine == "mysql" else standin_release()
    overrides = release + ENGINES[engine]
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    inventory = mmdeploy.load(path, overrides)
    password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
    proxy = inventory.with_role("proxy")[0]
    return {
        "engine": engine,
        "path": path,
        "sets": sets(overrides),
        "inv": inventory,
        "password": password,
        "base": f"https://{proxy.address}",
        "domain": inventory.settings.domain,
    }


def poster(site) -> Poster:
    p = Poster(site["base"], site["domain"], "sysadmin", site["password"])
    p.start()
    time.sleep(1.5)
    assert p.acked, p.failures
    return p


def writable(site) -> str:
    status = inv("db.status", "--inventory", site["path"], *site["sets"])
    (name,) = re.findall(r"^(\S+)\s+primary\s+writable", status.stdout, re.M)
    return name


def sql(site, host: str, statement: str) -> subprocess.CompletedProcess:
    if site["engine"] == "postgresql":
        command = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d mattermost -c {statement!r}"
    else:
        command = f"mysql -NB mattermost -e {statement!r}"
    return subprocess.run(
        ["docker", "exec", testbed.container_name(host), "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def refuses_writes(site, host: str) -> bool:
    """The node takes no write from Mattermost: PostgreSQL refuses an INSERT even from its
    superuser (a standby, or not running); MariaDB is read-only (Mattermost's user has no
    privilege to bypass it) and marked fenced."""
    if site["engine"] == "postgresql":
        return sql(site, host, "insert into systems (name, value) values ('mmdeploy_probe', 'x')").returncode != 0
    ro = sql(site, host, "SELECT @@global.read_only")
    return ro.returncode != 0 or ro.stdout.strip() == "1"


def heartbeat_since(site, host: str, since_ms: int) -> bool:
    """The job server recorded a run in the database on `host` after `since_ms`."""
    column = ("value", "name", "systems") if site["engine"] == "postgresql" else ("Value", "Name", "Systems")
    got = sql(site, host, f"select {column[0]} from {column[2]} where {column[1]} = 'JobServerHeartbeat_job1'")
    return got.returncode == 0 and got.stdout.strip().isdigit() and int(got.stdout.strip()) >= since_ms


def failover(site, fault, heal) -> dict:
    old = writable(site)
    p = poster(site)
    since_ms = int(time.time() * 1000)
    fault(old)
    t0 = time.monotonic()
    run = inv("failover-db", "--inventory", site["path"], *site["sets"], "--force", check=False)
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    deadline = time.monotonic() + 20
    while p.first_after(t0 + took) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    p.stop()
    new = writable(site)
    first = p.first_after(t0)
    print(
        f"\n{site['engine']}: {fault.__name__} of {old}: failover-db took {took:.1f} s, first post through "
        f"NGINX {first:.2f} s after it started, longest gap {p.longest_gap(t0):.2f} s, "
        f"{len(p.acked)} posts acknowledged, {len(p.failures)} refused during the outage"
    )
    print(run.stdout)
    assert took <= 30, run.stdout
    assert new != old
    assert p.missing() == [], "acknowledged posts lost"
    # Every app server writes through the new primary: a post through NGINX, read back.
    again = Poster(site["base"], site["domain"], "sysadmin", site["password"])
    post = again.post("after the failover")
    assert post and again.missing() == []
    datasource = on("app1", "jq -r .SqlSettings.DataSource /opt/mattermost/config/config.json")
    assert site["inv"].host(new).private_address in datasource
    # The job server writes to the new primary (it records a run at start).
    deadline = time.monotonic() + 30
    while not heartbeat_since(site, new, since_ms) and time.monotonic() < deadline:
        time.sleep(1)
    assert heartbeat_since(site, new, since_ms), "the job server wrote nothing to the new primary"
    heal(old)
    deadline = time.monotonic() + 60
    while (
        not site["inv"].host(old).address
        or subprocess.run(["docker", "exec", testbed.container_name(old), "true"], capture_output=True).returncode != 0
    ):
        assert time.monotonic() < deadline
        time.sleep(1)
    # Back on the network, the old primary stays fenced: it refuses writes.
    time.sleep(8)  # longer than the fence watcher's period
    assert refuses_writes(site, old), f"{old} takes writes after it came back"
    deadline = time.monotonic() + 20  # the fence watchers mark it within a few seconds
    while not re.search(
        rf"^{old}\s+FENCED", inv("db.status", "--inventory", site["path"], *site["sets"], check=False).stdout, re.M
    ):
        assert time.monotonic() < deadline, f"{old} is not shown as fenced"
        time.sleep(2)
    rejoin = inv("db.rejoin", old, "--inventory", site["path"], *site["sets"], check=False)
    assert rejoin.returncode == 0, rejoin.stdout + rejoin.stderr
    verify = inv("verify", "--inventory", site["path"], *site["sets"], check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return {"took": took, "first": first}


def kill(host):
    subprocess.run(["docker", "kill", testbed.container_name(host)], check=True, capture_output=True)


def restart(host):
    subprocess.run(["docker", "start", testbed.container_name(host)], check=True, capture_output=True)
    for _ in range(60):  # sshd up again
        if (
            subprocess.run(
                ["docker", "exec", testbed.container_name(host), "systemctl", "is-active", "ssh"], capture_output=True
            ).returncode
            == 0
        ):
            return
        time.sleep(1)


def partition(host):
    subprocess.run(
        ["docker", "network", "disconnect", testbed.NETWORK, testbed.container_name(host)],
        check=True,
        capture_output=True,
    )


def heal(host):
    address = next(h.address for h in testbed.layout("single") if h.name == host)
    subprocess.run(
        ["docker", "network", "connect", "--ip", address, testbed.NETWORK, testbed.container_name(host)],
        check=True,
        capture_output=True,
    )


def test_kill_of_the_primary(site):
    failover(site, kill, restart)


def test_partition_of_the_primary(site):
    failover(site, partition, heal)
