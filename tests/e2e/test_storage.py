"""S3 file storage on the test bed: SeaweedFS from its release archive (built from the Go
module proxy, tests/standin/artifacts.py) on two storage hosts plus the job/monitoring
host as third master and volume server, deployed over real SSH, used with boto3 (an S3
client of its own, path-style SigV4 like Mattermost's minio-go), then one storage host
killed: files written before still download, uploads go on through the other gateway;
the host comes back with an empty disk and a deploy restores every file's two copies.

Prints figures: install time, the upload gap after the kill, the repair deploy's time.
MinIO cannot run here (its binary cannot be downloaded, its server is AGPL): it is
covered by tests/unit/test_storage.py only."""

import json
import os
import re
import subprocess
import time
import urllib.request

import pytest
import yaml

import mmdeploy
from mmdeploy import testbed
from mmdeploy.components.storage import common

from .conftest import ROOT, figures, inv, on

pytestmark = pytest.mark.e2e
# The host firewall too (on by default): the masters, volumes, filers and gateways talk
# through its rules.
STORAGE = ("base", "firewall", "seaweedfs", "seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer", "seaweedfs-s3")
ONLY = ("--only", ",".join(STORAGE + ("prometheus",)))  # and Prometheus on the job host, scraping them
CHECKS = ("--only", "seaweedfs-master,seaweedfs-s3")
FIGURES = figures("S3 file storage (SeaweedFS, 2 storage hosts + the job host)")
WRITTEN: dict[str, bytes] = {}  # uploaded while host2 was down


def changed(output: str) -> tuple[int, int]:
    """(changed, failed) of a run's total line."""
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


@pytest.fixture(scope="module")
def site(bed):
    """Three bed hosts rewritten as host1 = job/monitoring (+ the single pattern's other
    roles, not deployed here), host2 and host3 = storage (host3 also the backup host);
    deployed once, timed."""
    from tests.standin import artifacts

    generic = bed(hosts=3, fresh=True)
    document = yaml.safe_load(generic.read_text())
    for host in document["hosts"]:
        if host["name"] != "host1":
            host["roles"] = ["storage"]
    # The backup host of the last test (backups are off until then): not host1, the DB
    # host (a backup host that is also a DB host is not a layout backups support).
    document["hosts"][2]["roles"].append("backup")
    archive, sha = artifacts.build("storage")
    document["settings"]["storage"] = {"url": str(archive), "sha256": sha, "version": artifacts.STORAGE.version}
    path = generic.with_name(generic.name.replace("-3.yml", "-storage.yml"))
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.with_name(path.stem + ".secrets.yml").unlink(missing_ok=True)
    t0 = time.monotonic()
    first = inv("deploy", "--inventory", str(path), "--only", ",".join(STORAGE), "--yes")
    FIGURES["first deploy of SeaweedFS (3 hosts, from nothing)"] = f"{time.monotonic() - t0:.0f} s"
    inv("deploy", "--inventory", str(path), "--only", "base,firewall,prometheus", "--yes")
    return str(path), first


@pytest.fixture(scope="module")
def inventory(site):
    return mmdeploy.load(site[0])


def s3client(inventory, host: str, key: str | None = None, secret: str | None = None):
    import boto3
    from botocore.config import Config

    access, secret_default = common.credentials(inventory)
    return boto3.client(
        "s3",
        endpoint_url=f"http://{inventory.host(host).address}:{common.s3_port(inventory.settings)}",
        region_name=inventory.settings.storage.region,
        aws_access_key_id=key or access,
        aws_secret_access_key=secret or secret_default,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=8,
            retries={"max_attempts": 1},
        ),
    )


def anonymous(inventory, host: str, method: str, path: str, body: bytes | None = None) -> int:
    url = f"http://{inventory.host(host).address}:{common.s3_port(inventory.settings)}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


BODIES = {f"before/{i}": os.urandom(1000 * (i + 1)) for i in range(20)}
BODIES["before/large"] = os.urandom(6 * 1024 * 1024)  # more than the filer's 4 MB chunk


def test_deploys_and_a_second_deploy_changes_nothing(site):
    path, first = site
    assert changed(first.stdout)[1] == 0, first.stdout
    assert changed(first.stdout)[0] > 3 * 15
    t0 = time.monotonic()
    again = inv("deploy", "--inventory", path, *ONLY, "--yes")
    FIGURES["second deploy"] = f"{time.monotonic() - t0:.1f} s"
    assert changed(again.stdout) == (0, 0), again.stdout


def test_layout_on_the_hosts(site):
    for host in ("host2", "host3"):
        assert (
            on(host, "systemctl is-active seaweedfs-master seaweedfs-volume seaweedfs-filer seaweedfs-s3").split()
            == ["active"] * 4
        )
    # The job/monitoring host completes the Raft trio and holds a third volume server.
    assert on("host1", "systemctl is-active seaweedfs-master seaweedfs-volume").split() == ["active"] * 2
    assert on("host1", "systemctl list-unit-files 'seaweedfs-*' --no-legend | wc -l").strip() == "2"
    assert on("host2", "stat -c '%U:%G %a' /etc/seaweedfs/s3.json /etc/seaweedfs/seaweedfs.env").split("\n")[:2] == [
        "root:seaweedfs 640",
        "root:root 600",
    ]


def test_verify_passes(site):
    out = inv("verify", "--inventory", site[0], *CHECKS).stdout
    for name in (
        "SeaweedFS masters agree on a leader (3)",
        "S3 on host2: signed requests served, anonymous refused",
        "S3 on host3: signed requests served, anonymous refused",
        "S3: a file written through one gateway reads through every other",
        "SeaweedFS: every file has its copies",
    ):
        assert f"ok   {name}" in out, out


def test_written_through_one_gateway_read_through_the_other(inventory):
    bucket = inventory.settings.storage.bucket
    one, other = s3client(inventory, "host2"), s3client(inventory, "host3")
    for key, body in BODIES.items():
        one.put_object(Bucket=bucket, Key=key, Body=body)
    for key, body in BODIES.items():
        assert other.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = other.list_objects_v2(Bucket=bucket, Prefix="before/")
    assert {o["Key"] for o in listed["Contents"]} == set(BODIES)


def test_anonymous_and_wrong_keys_are_refused(inventory):
    import botocore.exceptions

    bucket = inventory.settings.storage.bucket
    assert anonymous(inventory, "host2", "GET", f"/{bucket}/before/0") == 403
    assert anonymous(inventory, "host3", "PUT", f"/{bucket}/anonymous", b"x") == 403
    assert anonymous(inventory, "host2", "GET", f"/{bucket}") == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3client(inventory, "host2", secret="not-the-secret").get_object(Bucket=bucket, Key="before/0")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_prometheus_scrapes_every_seaweedfs_server(inventory):
    monitoring = inventory.with_role("monitoring")[0]
    deadline = time.monotonic() + 90
    while True:
        with urllib.request.urlopen(f"http://{monitoring.address}:9090/api/v1/targets?state=active", timeout=10) as r:
            targets = [t for t in json.load(r)["data"]["activeTargets"] if t["labels"]["job"].startswith("seaweedfs-")]
        health = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in targets}
        if len(health) == 10 and set(health.values()) == {"up"} or time.monotonic() > deadline:
            break
        time.sleep(3)
    # masters and volume servers on all three hosts, filers and gateways on the storage hosts
    assert len(health) == 10 and set(health.values()) == {"up"}, health


def test_losing_a_storage_host(site, inventory):
    """host2 is killed (the first storage host: a master, a volume server, a filer, a
    gateway): everything written before still downloads through host3, and uploads go on
    there; the gap until the first upload succeeds is printed."""
    bucket = inventory.settings.storage.bucket
    survivor = s3client(inventory, "host3")
    subprocess.run(["docker", "kill", testbed.container_name("host2")], check=True, capture_output=True)
    killed = time.monotonic()
    first_ok, attempts, failures, written, slowest = None, 0, 0, {}, 0.0
    while time.monotonic() - killed < 120:
        attempts += 1
        key, body = f"during/{attempts}", os.urandom(2000)
        t0 = time.monotonic()
        try:
            survivor.put_object(Bucket=bucket, Key=key, Body=body)
            written[key] = body
            if first_ok is None:
                first_ok = time.monotonic() - killed
        except Exception:  # timeouts and 5xx while the cluster notices the loss
            failures += 1
        slowest = max(slowest, time.monotonic() - t0)
        if first_ok is not None and time.monotonic() - killed > first_ok + 20:
            break
        time.sleep(0.2)
    assert first_ok is not None, f"no upload succeeded within 120 s of losing host2 ({failures} failed)"
    FIGURES["uploads after killing a storage host"] = (
        f"first success {first_ok:.1f} s after the kill; {failures} of {attempts} attempts failed "
        f"in the {time.monotonic() - killed:.0f} s measured (client timeout 8 s, no retries); "
        f"slowest upload {slowest:.1f} s"
    )
    assert len(written) >= 20
    for key, body in BODIES.items():
        assert survivor.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    for key, body in written.items():
        assert survivor.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    WRITTEN.update(written)


def test_the_host_comes_back_with_an_empty_disk_and_deploy_restores_the_copies(site, inventory):
    path = site[0]
    subprocess.run(["docker", "start", testbed.container_name("host2")], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if testbed.containers.ssh_answers(testbed.key_path(ROOT), inventory.host("host2").address):
            break
        time.sleep(1)
    # A replaced disk: the volume server's data is gone.
    on("host2", "systemctl stop seaweedfs-volume && rm -rf /var/lib/seaweedfs/volume/*")
    t0 = time.monotonic()
    out = inv("deploy", "--inventory", path, *ONLY, "--yes").stdout
    FIGURES["deploy that restarts the volume server and repairs the copies"] = f"{time.monotonic() - t0:.0f} s"
    assert changed(out)[1] == 0, out
    assert "repair files lacking a copy (volume.fix.replication): run" in out, out
    assert on("host2", "systemctl is-active seaweedfs-volume").strip() == "active"
    assert int(on("host2", "ls /var/lib/seaweedfs/volume | grep -c '\\.dat$' || true")) > 0
    verify = inv("verify", "--inventory", path, *CHECKS).stdout
    assert "ok   SeaweedFS: every file has its copies" in verify, verify
    assert "2 check(s) failed" not in verify and "FAIL" not in verify, verify
    # Everything, including what was written while host2 was down, reads through host2.
    back = s3client(inventory, "host2")
    bucket = inventory.settings.storage.bucket
    for key, body in {**BODIES, **WRITTEN}.items():
        assert back.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    again = inv("deploy", "--inventory", path, *ONLY, "--yes").stdout
    assert changed(again) == (0, 0), again


# --- the backup repository on this storage (issue 12) ----------------------------------

BACKUP_SETS = ["backup.enabled=true", "backup.repository=s3", "backup.files=false", "database.memory_mb=512"]
WITH_BACKUP = (
    "--only",
    ",".join(STORAGE + ("prometheus", "postgresql", "haproxy", "backup-agent", "backup", "backup-repository")),
)


def backup_sets() -> list[str]:
    return [arg for o in BACKUP_SETS for arg in ("--set", o)]


def test_the_backup_repository_on_the_sites_own_storage(site):
    """backup.repository s3 without backup.s3: pgBackRest's repository is a bucket of its
    own on this SeaweedFS (host3, the backup host, reaches it through the balancer on
    host1, which only the app and job servers reach otherwise), with keys of its own. A backup lands there; Mattermost's keys are refused on
    it and the backup keys on Mattermost's bucket; a point-in-time restore reads it back;
    a second deploy changes nothing and verify passes."""
    import shlex
    from datetime import datetime, timezone

    import botocore.exceptions

    from mmdeploy.components.mattermost import unit_name
    from mmdeploy.secrets import Redactor, Secrets

    path = site[0]
    t0 = time.monotonic()
    first = inv("deploy", "--inventory", path, *WITH_BACKUP, *backup_sets(), "--yes")
    FIGURES["deploy adding PostgreSQL and backups to the site's storage"] = f"{time.monotonic() - t0:.0f} s"
    assert changed(first.stdout)[1] == 0, first.stdout
    inventory = mmdeploy.load(path, BACKUP_SETS)
    bucket, mm_bucket = inventory.settings.backup.storage_bucket, inventory.settings.storage.bucket
    secrets = Secrets(inventory.secrets_path, Redactor())
    key, secret = secrets.existing(common.BACKUP_ACCESS_KEY), secrets.existing(common.BACKUP_SECRET_KEY)
    assert key and secret and secret not in first.stdout

    def psql(sql: str) -> str:
        return on("host1", f"cd /tmp && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}")

    psql("create table kept (n int); insert into kept values (1)")
    t0 = time.monotonic()
    out = inv("backup", "--now", "--inventory", path, *backup_sets())
    FIGURES["full backup into the storage's backup bucket"] = f"{time.monotonic() - t0:.1f} s"
    assert "backup done" in out.stdout, out.stdout

    mine = s3client(inventory, "host3", key, secret)
    names = [o["Key"] for o in mine.list_objects_v2(Bucket=bucket, Prefix="pgbackrest/").get("Contents", [])]
    assert any(k.startswith("pgbackrest/backup/mattermost/") for k in names), names
    assert any(k.startswith("pgbackrest/archive/mattermost/") for k in names), names
    # Each key pair reaches its own bucket only.
    for client, other in ((s3client(inventory, "host2"), bucket), (mine, mm_bucket)):
        for call in (
            lambda: client.list_objects_v2(Bucket=other),
            lambda: client.get_object(Bucket=other, Key=names[0] if other == bucket else "before/0"),
            lambda: client.put_object(Bucket=other, Key="intruder", Body=b"x"),
        ):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                call()
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # Point in time: after the backup, one more row, the moment, then the table dropped.
    psql("insert into kept values (2)")
    time.sleep(1.5)
    noted = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    time.sleep(1.5)
    psql("drop table kept")
    # Mattermost is not deployed on this bed: restore stops it first, so a placeholder
    # unit of its name stands in.
    unit = unit_name(inventory.host("host1"))
    on(
        "host1",
        f"printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/{unit}.service && "
        f"systemctl daemon-reload && systemctl start {unit}",
    )
    try:
        t0 = time.monotonic()
        report = mmdeploy.restore(inventory, to_time=noted, files=False, start=False)
        FIGURES["point-in-time restore from the storage's backup bucket"] = f"{time.monotonic() - t0:.1f} s"
        assert report.ok, report.timeline
    finally:
        on("host1", f"rm -f /etc/systemd/system/{unit}.service && systemctl daemon-reload")
    assert psql("select string_agg(n::text, ',' order by n) from kept").strip() == "1,2"

    again = inv("deploy", "--inventory", path, *WITH_BACKUP, *backup_sets(), "--yes")
    assert changed(again.stdout) == (0, 0), again.stdout
    verify = inv("verify", "--inventory", path, "--only", "backup,seaweedfs-s3", *backup_sets(), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"ok   backup bucket {bucket} on the site's storage" in verify.stdout, verify.stdout
