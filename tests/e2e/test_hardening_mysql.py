"""The MySQL family (MariaDB 10.11) with hostile secrets, the whole single pattern: the
replication client file (/etc/mysql/mmdeploy-replication.cnf) quoted for the option-file
format and read back by MariaDB's own reader; the Mattermost DSN in the MySQL driver's
form (the password as is, unescaped); every account's password checked against its
stored hash, so a second deploy changes nothing; rotation of every password, the
replicas given the new replication password; failover-db and db.rejoin; and no secret in
any channel."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

import mmdeploy
from mmdeploy.components.mysql.flavor import REPLICATION_CNF

from .conftest import inv, on
from .hostile import ProcessWatch, hostile, leaks, run_logs, write_secrets

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


class Site:
    def __init__(self, path: str, overrides: list[str]):
        self.path, self.overrides, self.started = path, overrides, time.time()
        self.hosts = [h.name for h in mmdeploy.load(path).hosts]
        self.outputs: dict[str, str] = {}
        self.secrets: list[str] = []
        self.processes: set[str] = set()

    def cli(self, *args: str, check: bool = True):
        sets = [a for o in self.overrides for a in ("--set", o)]
        with ProcessWatch(self.hosts) as w:
            p = inv(args[0], "--inventory", self.path, *sets, *args[1:], check=check)
        self.processes |= w.seen
        self.outputs[f"{len(self.outputs):02d} inv {' '.join(args)}"] = p.stdout + p.stderr
        return p

    def rotate(self, values: dict[str, str]) -> None:
        self.secrets += list(values.values())
        write_secrets(self.path, values)


@pytest.fixture(scope="module")
def site(bed, standin_release):
    base = Path(bed("single", fresh=True))
    data = yaml.safe_load(base.read_text())
    data["settings"]["database"] = {"engine": "mysql", "flavor": "mariadb", "memory_mb": 1024}
    data["settings"].setdefault("mattermost", {})["version"] = "10.11.4"  # the last series that runs on MySQL
    path = base.with_name(base.stem + "-mysql-hostile.yml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.with_name(path.stem + ".secrets.yml").unlink(missing_ok=True)
    s = Site(str(path), standin_release("10.11.4") + BED_SETTINGS)  # the last series on MySQL
    s.rotate(hostile("7"))
    return s


def _read_back(host: str) -> str:
    """The replication password as MariaDB's option-file reader makes it of the file."""
    out = on(host, f"my_print_defaults --defaults-file={REPLICATION_CNF} client")
    return next(line for line in out.splitlines() if line.startswith("--password=")).split("=", 1)[1]


def test_deploy_with_hostile_secrets(site):
    first = site.cli("deploy", "--yes")
    assert totals(first.stdout)[0] > 50
    verify = site.cli("verify", check=False)  # Mattermost logs in through the DSN; replication; exporter
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replication = yaml.safe_load(open(site.path.replace(".yml", ".secrets.yml")))["db_replication_password"]
    assert _read_back("db1") == _read_back("db2") == replication
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def test_rotation_reaches_accounts_replicas_and_clients(site):
    site.rotate({k: v for k, v in hostile("8").items() if k != "mattermost_admin_password"})
    rotated = site.cli("deploy", "--yes")
    for account in (
        "password of mmuser@",
        "password of mmrepl@",
        "password of mmmonitor@localhost",
        "password of mmrepl kept by this replica",
    ):
        assert account in rotated.stdout, rotated.stdout
    new = yaml.safe_load(open(site.path.replace(".yml", ".secrets.yml")))
    assert _read_back("db2") == new["db_replication_password"]
    # The replica connects again with what it keeps: the new password.
    on("db2", "mariadb -e 'STOP SLAVE; START SLAVE;'")
    time.sleep(3)
    verify = site.cli("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def test_failover_and_rejoin(site):
    site.cli("failover-db")
    assert site.cli("verify", check=False).returncode == 0
    site.cli("db.rejoin", "db1")
    verify = site.cli("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert totals(site.cli("deploy", "--yes").stdout) == (0, 0)


def test_no_secret_in_any_channel(site):
    channels = {**site.outputs, **run_logs(site.started), "process lists": "\n".join(site.processes)}
    found = leaks(channels, site.secrets)
    assert not found, "\n".join(found[:20])
