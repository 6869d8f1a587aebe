"""The single pattern through the access paths of real sites, with hostile secrets:

- the hosts are reached as a non-root user with passwordless sudo, with strict host keys
  (the bed's known_hosts, every container with keys of its own);
- every secret holds quotes, backslashes, %, @, :, spaces, '#', '$' and non-ASCII;
- a second deploy or failover while one runs is refused, naming the holder, also when
  the holder is "another machine" (a lock on a host);
- rotating every password applies it to the accounts and their users, never locking
  Mattermost out (a deploy of Mattermost alone refuses a password the database does
  not take yet);
- failover-db and db.rejoin with those secrets;
- a host whose key changed is refused, with how to accept the new key; the others go on;
- and no secret, in any escaped form, in any channel: the commands' output (plan diffs,
  errors), the run logs, the process lists here and on every host, and the command lines
  sudo recorded on the hosts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
import yaml

import mmdeploy
from mmdeploy import testbed
from mmdeploy.components.firewall import probe
from mmdeploy.passwords import postgres_matches

from .conftest import ROOT, inv, on
from .hostile import ProcessWatch, hostile, leaks, run_logs, sudo_command_lines, write_secrets

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]  # Grafana cannot be downloaded here


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


@dataclass
class Site:
    path: str
    overrides: list[str]
    hosts: list[str]
    started: float
    outputs: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    processes: set[str] = field(default_factory=set)

    def cli(self, *args: str, check: bool = True, watch: bool = False) -> subprocess.CompletedProcess:
        sets = [a for o in self.overrides for a in ("--set", o)]
        command = [args[0], "--inventory", self.path, *sets, *args[1:]]
        if watch:
            with ProcessWatch(self.hosts) as w:
                p = inv(*command, check=check)
            self.processes |= w.seen
        else:
            p = inv(*command, check=check)
        self.outputs[f"{len(self.outputs):02d} inv {' '.join(args)}"] = p.stdout + p.stderr
        return p

    def rotate(self, values: dict[str, str]) -> None:
        self.secrets += list(values.values())
        write_secrets(self.path, values)


@pytest.fixture(scope="module")
def site(bed, standin_release):
    started = time.time()
    # The first of its group (tests/conftest.py SHARED_BEDS): test_single, test_firewall and
    # test_failover_app go on from the site it leaves, through the same sudo user.
    path = str(bed("single", fresh=True, sudo_user="deploy", share="single-postgresql"))
    s = Site(path, standin_release() + BED_SETTINGS, [h.name for h in mmdeploy.load(path).hosts], started)
    s.rotate(hostile("1"))
    return s


def test_hosts_are_reached_as_a_sudo_user_with_strict_host_keys(site):
    inventory = mmdeploy.load(site.path)
    ssh = inventory.hosts[0].ssh
    assert ssh.user == "deploy" and ssh.strict_host_keys and ssh.known_hosts.is_file()
    # Every container has host keys of its own.
    keys = {on(h, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1] for h in site.hosts}
    assert len(keys) == len(site.hosts)


def test_cold_deploy_with_hostile_secrets(site):
    first = site.cli("deploy", "--yes", watch=True)
    assert totals(first.stdout)[0] > 50
    assert "COMMAND=/usr/bin/timeout -k 5" in sudo_command_lines(["app1"])  # it went through sudo
    verify = site.cli("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = site.cli("deploy", "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_a_config_diff_masks_the_secrets_mattermost_generated(site):
    config = json.loads(on("app1", "cat /opt/mattermost/config/config.json"))
    key, salt = config["SqlSettings"]["AtRestEncryptKey"], config["FileSettings"]["PublicLinkSalt"]
    assert len(key) == 32 and len(salt) == 32  # made by the server on its first start
    # A change next to AtRestEncryptKey (sorted keys: it is 3 lines from DataSource).
    plan = site.cli("plan", "--set", "mattermost.config={SqlSettings: {ConnMaxLifetimeMilliseconds: 3600001}}")
    assert "ConnMaxLifetimeMilliseconds" in plan.stdout and '"AtRestEncryptKey": "********"' in plan.stdout
    assert key not in plan.stdout and salt not in plan.stdout
    site.secrets += [key, salt]


def test_a_second_deploy_or_failover_is_refused_while_one_runs(site):
    from mmdeploy.locks import lock_path

    def start(*args: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        sets = [a for o in site.overrides + list(extra) for a in ("--set", o)]
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args[:1], "--inventory", site.path, *sets, *args[1:]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # A deploy with work to do (the demo service on every host, a Mattermost setting).
    first = start(
        "deploy", "--yes", extra=("demo.enabled=true", "mattermost.config={TeamSettings: {MaxUsersPerTeam: 51}}")
    )
    lock = lock_path(mmdeploy.load(site.path))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and f'"pid": {first.pid},' not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.05)
    second, failover = start("deploy", "--yes"), start("failover-db")
    results = {name: p.communicate(timeout=600) for name, p in (("second", second), ("failover", failover))}
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    assert "demo" in out  # it did work while the others were refused
    for name, p in (("second", second), ("failover", failover)):
        stdout, stderr = results[name]
        site.outputs[f"concurrent {name}"] = stdout + stderr
        assert p.returncode == 3, stdout + stderr
        assert "`deploy` by" in stderr and f"(pid {first.pid}," in stderr
    # Back to the site's own settings. The demo stays installed (demo.enabled: false does
    # not remove it), but its port, open to the control machine while the demo was
    # deployed, is closed again: the firewall's ruleset is the only change, on every host.
    back = site.cli("deploy", "--yes")
    changed = [line for line in back.stdout.splitlines() if " ~ " in line]
    assert len(changed) == len(site.hosts) and all("firewall ruleset" in line for line in changed), back.stdout
    app1 = mmdeploy.load(site.path).host("app1")
    assert probe(app1.address, app1.settings.demo.port) == "filtered"
    # The modules after this one deploy onto this site (tests/conftest.py SHARED_BEDS):
    # nothing of the demo may be left listening there.
    for host in site.hosts:
        on(host, "systemctl disable --now mmdeploy-demo.service")


def test_a_run_from_another_machine_is_refused_by_the_hosts(site):
    """Another operator's run from another control machine holds proxy1's lock: this
    machine's lock file says nothing of it, the host does."""
    from mmdeploy.locks import _host_script

    other = {
        "what": "deploy",
        "user": "alice",
        "machine": "laptop",
        "machine_id": "another-machine",
        "pid": 4242,
        "since": "a minute ago",
        "run": "e2e",
    }
    holder = subprocess.Popen(
        ["docker", "exec", "-i", testbed.container_name("proxy1"), "bash", "-s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holder.stdin.write(_host_script(other))
    holder.stdin.flush()
    assert holder.stdout.readline().startswith("LOCKED")
    try:
        refused = site.cli("deploy", "--yes", check=False)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "proxy1: locked by `deploy` by alice@laptop (pid 4242" in refused.stderr
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def _pg_matches(user: str, password: str) -> bool:
    verifier = on(
        "db1", f"runuser -u postgres -- psql -XAtq -c \"select rolpassword from pg_authid where rolname = '{user}'\""
    ).strip()
    return postgres_matches(verifier, user, password)


class Pinger:
    """Asks Mattermost, through NGINX, whether it reaches its database, all along."""

    def __init__(self, address: str, domain: str):
        self.url = f"https://{address}/api/v4/system/ping?get_server_status=true"
        self.domain, self.answers, self._stop = domain, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(verify=False, timeout=5, headers={"Host": self.domain}) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url)
                    self.answers.append(r.json().get("database_status") if r.status_code == 200 else r.status_code)
                except (httpx.HTTPError, ValueError):
                    self.answers.append("no answer")
                time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_rotated_passwords_are_applied_without_locking_mattermost_out(site):
    old = yaml.safe_load(open(site.path.replace(".yml", ".secrets.yml")))
    new = {k: v for k, v in hostile("2").items() if k != "mattermost_admin_password"}
    site.rotate(new)
    # Mattermost alone first: the database does not take the new password yet, so the
    # servers keep the old one and the site keeps working.
    alone = site.cli("deploy", "--only", "mattermost", "--yes", check=False)
    assert alone.returncode == 1 and "not switching Mattermost to db_password" in alone.stdout
    assert site.cli("verify", check=False).returncode == 0
    assert _pg_matches("mmuser", old["db_password"])
    # Then everything: accounts first, then their users; Mattermost never loses its database.
    inventory = mmdeploy.load(site.path)
    proxy = inventory.with_role("proxy")[0]
    with Pinger(proxy.address, inventory.settings.domain) as pinger:
        rotated = site.cli("deploy", "--yes", watch=True)
    assert "password of role mmuser: set (changed in the secrets)" in rotated.stdout
    assert "password of role replicator: set" in rotated.stdout and "password of role mmmonitor: set" in rotated.stdout
    assert pinger.answers and "OK" in pinger.answers
    # Restarts show as HTTP errors; a server answering that its database refuses it, never.
    assert not [a for a in pinger.answers if isinstance(a, str) and a not in ("OK", "no answer")], pinger.answers
    assert _pg_matches("mmuser", new["db_password"]) and not _pg_matches("mmuser", old["db_password"])
    assert _pg_matches("replicator", new["db_replication_password"])
    # The replica connects again with the new replication password; the exporter too.
    on("db2", "systemctl restart postgresql@15-main")
    verify = site.cli("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The admin's password too; and nothing left to change.
    site.rotate({"mattermost_admin_password": hostile("3")["mattermost_admin_password"]})
    admin = site.cli("deploy", "--yes")
    assert "first admin sysadmin: set the password" in admin.stdout
    assert site.cli("verify", check=False).returncode == 0
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def test_failover_and_rejoin_with_hostile_secrets(site):
    site.cli("failover-db", watch=True)
    config = on("app1", "cat /opt/mattermost/config/config.json")
    assert "@" + mmdeploy.load(site.path).host("db2").private_address + ":5432/" in config
    verify = site.cli("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    site.cli("db.rejoin", "db1", watch=True)
    assert site.cli("verify", check=False).returncode == 0
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def test_a_changed_host_key_is_refused_and_can_be_accepted(site):
    on("proxy1", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    time.sleep(1)
    plan = site.cli("plan", check=False)
    assert plan.returncode == 1
    line = next(ln for ln in plan.stdout.splitlines() if ln.startswith("proxy1") and "FAILED" in ln)
    assert "CHANGED" in line and "refusing to connect" in line and "ssh-keygen -R" in line
    for other in ("app1", "job1", "db1", "db2"):
        assert re.search(rf"^{other}\s+\d+\s+0\s+0\s", plan.stdout, re.M), plan.stdout  # unaffected
    # Accept the new key as the message says (the bed's containers are ours to scan).
    accept = line.split("then accept it: ", 1)[1].strip()
    subprocess.run(accept, shell=True, check=True, cwd=ROOT / "hosts", capture_output=True)
    assert site.cli("plan").returncode == 0


def test_no_secret_in_any_channel(site):
    channels = {
        **site.outputs,
        **run_logs(site.started),
        "process lists": "\n".join(site.processes),
        "sudo command lines": sudo_command_lines(site.hosts),
    }
    assert len(site.secrets) >= 9 and site.processes
    found = leaks(channels, site.secrets)
    assert not found, "\n".join(found[:20])
