"""Backups and restore on the test bed (issue 12), and the upgrade across majors that leans
on them (issue 15). The single pattern with backups on: the job and monitoring host job1
is the backup host.

PostgreSQL (pgBackRest, WAL archiving): post A, back up, post B, note the time, post C,
drop the database; `inv restore --to-time` the noted time: A and B are there, C is not,
and verify passes. The backup's age is a node exporter metric, the alert rules are loaded
by Prometheus and fire as specified (promtool's rule tests on the monitoring host).

Then `inv upgrade --version 11.7.15` from 10.11.4: Mattermost's procedure for a
schema-changing upgrade (a backup first, every server stopped, one first to migrate the
schema, then the rest); posts and a setting changed in the console survive; `inv
rollback` is refused as Mattermost documents; after `inv restore --to-time` the moment
before the upgrade, `inv rollback` brings 10.11.4 back.

Disaster recovery: both DB hosts replaced by empty machines, the same inventory deployed
onto them (it says the repository holds another cluster's backups), `inv restore`: the
posts archived before the loss are back, the replica re-seeded, backups work again, and a
second deploy changes nothing.

MariaDB (mariabackup): post A, back up, post B, drop the database, `inv restore`: the
last backup comes back (A, not B), and verify passes.
"""

import json
import re
import time
from datetime import datetime, timezone

import httpx
import pytest

import mmdeploy
from mmdeploy.components.mattermost import ADMIN_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import ROOT, figures, inv, on

pytestmark = pytest.mark.e2e
BACKUP = ["monitoring.grafana=false", "backup.enabled=true", "database.memory_mb=512"]
FIGURES = figures("backup and restore (PostgreSQL with pgBackRest, MariaDB with mariabackup)")


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


class Client:
    """Mattermost's API v4 through NGINX, as a user."""

    def __init__(self, inventory):
        proxy = inventory.with_role("proxy")[0]
        self.base = f"https://{proxy.address}"
        self.http = httpx.Client(
            http2=True,
            verify=False,
            timeout=10,
            headers={"Host": inventory.settings.domain, "X-Requested-With": "XMLHttpRequest"},
        )
        password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
        r = self.http.post(f"{self.base}/api/v4/users/login", json={"login_id": "sysadmin", "password": password})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.headers['Token']}"
        team = self.http.get(f"{self.base}/api/v4/teams/name/main").json()
        self.channel = self.http.get(f"{self.base}/api/v4/teams/{team['id']}/channels/name/town-square").json()["id"]

    def post(self, message: str) -> str:
        r = self.http.post(f"{self.base}/api/v4/posts", json={"channel_id": self.channel, "message": message})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def exists(self, post_id: str) -> bool:
        r = self.http.get(f"{self.base}/api/v4/posts/{post_id}")
        assert r.status_code in (200, 404, 403), r.text
        return r.status_code == 200


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def wait_for_site(inventory, seconds=120) -> Client:
    end = time.monotonic() + seconds
    while True:
        try:
            return Client(inventory)
        except (httpx.HTTPError, KeyError):
            if time.monotonic() > end:
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def pg_site(bed, standin_release):
    path = str(bed("single", fresh=True))
    overrides = standin_release("10.11.4") + BACKUP  # upgraded to 11.7 below
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    return path, overrides


def test_deploy_installs_backups_and_verify_passes(pg_site):
    path, overrides = pg_site
    assert on("job1", "systemctl is-active mmdeploy-backup-full.timer mmdeploy-backup-diff.timer").split() == [
        "active",
        "active",
    ]
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok   backups on job1" in verify.stdout
    again = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert re.search(r"^total\s+\d+\s+0\s+0\s", again.stdout, re.M), again.stdout


def test_point_in_time_restore(pg_site):
    path, overrides = pg_site
    inventory = mmdeploy.load(path, overrides)
    client = Client(inventory)
    a = client.post("A: before the backup")
    t0 = time.monotonic()
    first = inv("backup", "--now", "--inventory", path, *sets(overrides))
    FIGURES["PostgreSQL backup (first: full)"] = round(time.monotonic() - t0, 1)
    assert "backup done" in first.stdout, first.stdout
    b = client.post("B: after the backup")
    time.sleep(1.5)
    noted = utc_now()
    time.sleep(1.5)
    c = client.post("C: after the noted time")
    t0 = time.monotonic()
    diff = mmdeploy.backup(inventory, kind="diff")
    FIGURES["PostgreSQL backup (differential)"] = round(time.monotonic() - t0, 1)
    assert diff.ok and diff.parts[0].detail == "pgbackrest diff", diff
    on("db1", "cd /tmp && runuser -u postgres -- psql -XAtq -c 'DROP DATABASE mattermost WITH (FORCE)'")
    t0 = time.monotonic()
    restored = inv("restore", "--to-time", noted, "--inventory", path, *sets(overrides), check=False)
    FIGURES["PostgreSQL restore to a time (whole command)"] = round(time.monotonic() - t0, 1)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    FIGURES["PostgreSQL restore: the database part"] = float(re.search(r"database in ([\d.]+) s", restored.stdout)[1])
    client = wait_for_site(inventory)
    assert client.exists(a) and client.exists(b)
    assert not client.exists(c)
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    status = inv("db.status", "--inventory", path, *sets(overrides))
    assert "db2" in status.stdout and "streaming" in status.stdout


def test_backup_age_metric_and_alert_rules(pg_site):
    path, overrides = pg_site
    inventory = mmdeploy.load(path, overrides)
    job = inventory.host("job1")
    # Read where Prometheus reads it: the exporter admits the monitoring host (job1 itself)
    # and no one else (the host firewall drops this machine).
    exported = on("job1", f"curl -sf --max-time 10 http://{job.private_address}:9100/metrics").splitlines()
    assert 'mmdeploy_backup_last_run_success{part="database"} 1' in exported
    assert 'mmdeploy_backup_last_run_success{part="files"} 1' in exported
    rules = json.loads(on("job1", f"curl -s http://{job.private_address}:9090/api/v1/rules"))
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"MattermostBackupTooOld", "MattermostBackupFailed", "MattermostBackupMissing"} <= names
    # The rule itself, with promtool's rule tests on the monitoring host: a last good backup
    # at time 0 is fine 25 h later and alerts 26 h + 5 min later.
    on(
        "job1",
        """cat > /tmp/backup-rules-test.yml <<'EOF'
rule_files: [/etc/prometheus/rules.d/mmdeploy-backup.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mmdeploy_backup_last_success_timestamp_seconds{part="database"}'
        values: '0+0x1700'
      - series: 'mmdeploy_backup_last_run_success{part="database"}'
        values: '1+0x1700'
    alert_rule_test:
      - eval_time: 25h
        alertname: MattermostBackupTooOld
        exp_alerts: []
      - eval_time: 26h10m
        alertname: MattermostBackupTooOld
        exp_alerts:
          - exp_labels: {severity: critical, part: database}
            exp_annotations:
              summary: "The last good Mattermost database backup is 1d 2h 10m 0s old"
              description: "Backups are expected at least every 26h (settings.backup.max_age). See `inv backup` and journalctl -u 'mmdeploy-backup-*' on job1."
EOF
promtool test rules /tmp/backup-rules-test.yml""",
    )
    listing = inv("backup", "--inventory", path, *sets(overrides))
    assert "mmdeploy-backup-full.timer" in listing.stdout and "full" in listing.stdout


def test_upgrade_across_majors_then_rollback_as_documented(pg_site):
    from tests.standin import release

    path, overrides = pg_site
    inventory = mmdeploy.load(path, overrides)
    client = Client(inventory)
    kept = client.post("written on 10.11.4")
    config = "/opt/mattermost/config/config.json"
    on(
        "app1",
        f"jq '.TeamSettings.SiteName = \"Set In The Console\"' {config} > /tmp/c.json && "
        f"install -o mattermost -g mattermost -m 0600 /tmp/c.json {config}",
    )
    newer = release.overrides("11.7.15") + BACKUP
    t0 = time.monotonic()
    up = inv("upgrade", "--version", "11.7.15", "--inventory", path, *sets(newer), check=False)
    FIGURES["upgrade 10.11.4 -> 11.7.15 (schema change, whole command)"] = round(time.monotonic() - t0, 1)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "(schema-change)" in up.stdout and "taking a backup before the schema change" in up.stdout
    down = re.search(r"no app server behind the proxies for ([\d.]+) s", up.stdout)
    assert down, up.stdout
    FIGURES["upgrade 10.11.4 -> 11.7.15: seconds without an app server"] = float(down[1])
    started = next(line for line in up.stdout.splitlines() if "app1" in line and "upgraded" in line)
    assert "10.11.4 -> 11.7.15" in started
    assert "Version: 11.7.15" in on("app1", "/opt/mattermost/bin/mattermost version")
    assert "Version: 11.7.15" in on("job1", "/opt/mattermost/bin/mattermost version")
    schema = on(
        "db1",
        "cd /tmp && runuser -u postgres -- psql -XAtq -d mattermost -c "
        "\"select value from systems where name = 'Version'\"",
    ).strip()
    assert schema == "11.7.0"
    client = wait_for_site(inventory)
    assert client.exists(kept)
    assert on("app1", f"jq -r .TeamSettings.SiteName {config}").strip() == "Set In The Console"
    assert inv("verify", "--inventory", path, *sets(newer), check=False).returncode == 0
    # Mattermost: no downgrade across a schema change by swapping the release.
    refused = inv("rollback", "--inventory", path, *sets(newer), check=False)
    assert refused.returncode == 1
    assert "does not support a downgrade after a schema-changing upgrade" in refused.stderr
    assert "inv restore --to-time" in refused.stderr and "Nothing was changed" in refused.stderr
    assert "Version: 11.7.15" in on("app1", "/opt/mattermost/bin/mattermost version")
    # ... the documented way back: the backup from before the upgrade, then the old release.
    before = refused.stderr.split("--to-time '")[1].split("'")[0]
    restored = inv(
        "restore", "--to-time", before, "--no-files", "--no-start", "--inventory", path, *sets(newer), check=False
    )
    assert restored.returncode == 0 and "left stopped" in restored.stdout, restored.stdout + restored.stderr
    back = inv("rollback", "--inventory", path, *sets(overrides), check=False)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "Version: 10.11.4" in on("app1", "/opt/mattermost/bin/mattermost version")
    client = wait_for_site(inventory)
    assert client.exists(kept)
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_disaster_recovery_into_fresh_db_hosts(pg_site):
    """Both DB hosts are lost and replaced by fresh machines (same names and addresses);
    the repository on job1 survives. The same inventory deployed onto them completes and
    says the repository holds another cluster's backups; `inv restore` brings the old
    cluster back (the end of its archived WAL) and re-seeds the replica; then backups work
    again and a second deploy changes nothing."""
    from mmdeploy import testbed
    from mmdeploy.components.postgresql.backup import switch_wal_script

    path, overrides = pg_site
    inventory = mmdeploy.load(path, overrides)
    client = wait_for_site(inventory)
    backed_up = client.post("D: in the last backup")
    assert mmdeploy.backup(inventory, kind="diff").ok
    archived = client.post("E: after the last backup, in the archived WAL only")
    on("db1", switch_wal_script())  # what archive_timeout does within a minute
    t0 = time.monotonic()
    for host in ("db1", "db2"):
        testbed.replace_host(ROOT, host, log=lambda *_: None)
    FIGURES["disaster recovery: two DB hosts replaced by empty containers"] = round(time.monotonic() - t0, 1)
    assert on("db1", "test -e /etc/postgresql && echo kept || echo empty").strip() == "empty"

    t0 = time.monotonic()
    fresh = inv("deploy", "--inventory", path, *sets(overrides), "--yes", check=False)
    FIGURES["disaster recovery: deploy onto the fresh DB hosts"] = round(time.monotonic() - t0, 1)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    warning = "the backup repository on job1 holds the backups of another PostgreSQL cluster"
    assert f"warning: {warning}" in fresh.stdout.splitlines()[-1], fresh.stdout
    assert "pgBackRest stanza" not in fresh.stdout and "team main" not in fresh.stdout
    timers = "systemctl is-active mmdeploy-backup-full.timer mmdeploy-backup-diff.timer || true"
    assert on("job1", timers).split() == ["inactive", "inactive"]  # paused until the restore
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    failed = next(line for line in verify.stdout.splitlines() if line.startswith("FAIL backups on job1"))
    assert verify.returncode == 1 and warning in failed and "`inv restore`" in failed, verify.stdout
    refused = inv("backup", "--now", "--inventory", path, *sets(overrides), check=False)
    assert refused.returncode == 1 and f"backup refused: {warning}" in refused.stdout, refused.stdout

    t0 = time.monotonic()
    restored = inv("restore", "--inventory", path, *sets(overrides), check=False)
    FIGURES["disaster recovery: restore onto the fresh DB hosts (whole command)"] = round(time.monotonic() - t0, 1)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    FIGURES["disaster recovery: restore, the database part"] = float(
        re.search(r"database in ([\d.]+) s", restored.stdout)[1]
    )
    assert "the DB hosts run a new cluster" in restored.stdout and "db2 replicates from db1" in restored.stdout
    assert on("job1", timers).split() == ["active", "active"]
    client = wait_for_site(inventory)
    assert client.exists(backed_up) and client.exists(archived)
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "streaming" in inv("db.status", "--inventory", path, *sets(overrides)).stdout
    t0 = time.monotonic()
    after = mmdeploy.backup(inventory, kind="diff")
    FIGURES["disaster recovery: the first backup after"] = round(time.monotonic() - t0, 1)
    assert after.ok, after
    again = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert re.search(r"^total\s+\d+\s+0\s+0\s", again.stdout, re.M), again.stdout
    assert warning not in again.stdout


@pytest.fixture(scope="module")
def maria_site(bed, standin_release):
    path = str(bed("single", fresh=True))
    overrides = standin_release("10.11.4") + BACKUP + ["database.engine=mysql", "database.flavor=mariadb"]
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    return path, overrides


def test_mariadb_restores_its_last_backup(maria_site):
    path, overrides = maria_site
    inventory = mmdeploy.load(path, overrides)
    client = Client(inventory)
    a = client.post("A: before the backup")
    t0 = time.monotonic()
    report = mmdeploy.backup(inventory, kind="full")
    FIGURES["MariaDB backup (mariabackup, full)"] = round(time.monotonic() - t0, 1)
    assert report.ok, report
    assert on("job1", "ls /var/backups/mattermost/mysql/binlogs | head -n 1").startswith("mysql-bin.")
    b = client.post("B: after the backup")
    refused = inv("restore", "--to-time", utc_now(), "--inventory", path, *sets(overrides), check=False)
    assert refused.returncode == 2 and "point-in-time restore needs PostgreSQL" in refused.stderr
    on("db1", "mysql --protocol=socket -e 'DROP DATABASE mattermost'")
    t0 = time.monotonic()
    restored = inv("restore", "--inventory", path, *sets(overrides), check=False)
    FIGURES["MariaDB restore of the last backup (whole command)"] = round(time.monotonic() - t0, 1)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    FIGURES["MariaDB restore: the database part"] = float(re.search(r"database in ([\d.]+) s", restored.stdout)[1])
    client = wait_for_site(inventory)
    assert client.exists(a) and not client.exists(b)
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
