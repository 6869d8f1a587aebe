"""What both S3 servers share: the `storage` settings section, the credentials Mattermost
uses, the layout rules (which hosts run what, and which layouts cannot survive losing a
storage host), and the bucket the deploy creates through the S3 API."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ...grammar import Source
from ...artifacts import Artifact
from ...component import Check, Role, live
from ...errors import MMDeployError
from ...inventory import Host, Inventory
from ...ops import Command, Directory, File, Packages
from ...secrets import Redactor, Secret, Secrets
from ...settings import Section
from . import s3

# SeaweedFS: the release the project's test bed builds and verifies (tests/standin/artifacts.py).
SEAWEEDFS_VERSION = "4.53"
SEAWEEDFS_PORT, MINIO_PORT = 8333, 9000

STORAGE = Role("storage", "S3 file storage nodes", {"multi": 2, "cluster": 4})

# The S3 credentials of Mattermost's bucket. Mattermost's component declares the very same
# Secret objects (name, doc and generate equal) for FileSettings.AmazonS3AccessKeyId and
# AmazonS3SecretAccessKey; the registry accepts a secret declared identically twice.
ACCESS_KEY = Secret(
    "storage_access_key", "the S3 access key of Mattermost's file storage bucket", pattern=r"[A-Za-z0-9._-]{3,128}"
)
SECRET_KEY = Secret("storage_secret_key", "the S3 secret key of Mattermost's file storage bucket")

# The backup repository on the site's own storage (components/backup.py, when
# backup.repository is s3 without backup.s3): a bucket of its own and keys of their own,
# allowed on that bucket only. Declared identically by the backup component, which writes
# them into pgBackRest's configuration.
BACKUP_ACCESS_KEY = Secret(
    "backup_storage_access_key",
    "the S3 access key of the backup bucket on the site's own storage",
    pattern=r"[A-Za-z0-9._-]{3,128}",
)
BACKUP_SECRET_KEY = Secret(
    "backup_storage_secret_key", "the S3 secret key of the backup bucket on the site's own storage"
)
BACKUP_IDENTITY = "mattermost-backup"  # its name among the S3 gateway's identities (SeaweedFS)


def backup_bucket(inventory: Inventory) -> str | None:
    """The backup repository's bucket on this site's storage: when backups are on with
    repository s3 and no external `backup.s3`, and the site has storage hosts."""
    b = inventory.settings.backup
    own = b.enabled and b.repository == "s3" and b.s3 is None and inventory.with_role("storage")
    return b.storage_bucket if own else None


# Where the bucket helper (s3.py, the same file verify imports) lives on storage hosts.
HELPER = "/usr/local/lib/mmdeploy/s3.py"


class StorageSettings(Section):
    """S3 file storage for Mattermost's files (components/storage/), on the `storage` hosts.
    Mattermost reaches it through the internal balancer: balancer.endpoint(inventory, "storage")."""

    # seaweedfs (default): Apache-2.0, maintained, replication between volume servers.
    # minio: the community edition's last binaries (source only since 2025-10, unmaintained
    # since 2026-02), from storage.url + storage.sha256.
    server: Literal["seaweedfs", "minio"] = "seaweedfs"
    # SeaweedFS: its release number (default 4.53). MinIO: its RELEASE tag, required,
    # e.g. RELEASE.2025-09-07T16-13-09Z.
    version: str | None = Field(default=None, pattern=r"^(\d+\.\d+(\.\d+)?|RELEASE\.[0-9TZ:-]+)$")
    # The release (SeaweedFS: its linux_amd64.tar.gz; MinIO: the minio binary): official URL
    # unless a mirror or local file is given. The sha256 is required.
    url: Source | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    fetch_on_host: bool = False  # hosts download it themselves instead of an upload
    # The bucket Mattermost stores its files in, created by the deploy (S3 naming rules).
    bucket: str = Field(default="mattermost", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    # The S3 API's port on every storage host and on the balancer (default: 8333 SeaweedFS,
    # 9000 MinIO).
    port: int | None = Field(default=None, ge=1, le=65535)
    # Where the data lives (mount the data disk there). Default /var/lib/seaweedfs or
    # /var/lib/minio.
    data_dir: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
    # SeaweedFS: copies of every file (SeaweedFS replica placement "00N": N+1 copies on
    # different volume servers). Default: 001 (two copies) with two or more volume servers.
    replication: Literal["000", "001", "002"] | None = None
    # SeaweedFS: the size at which a volume (a file holding many objects) stops taking
    # writes, and the volumes per volume server (0: as many as the free disk space holds).
    volume_size_limit_mb: int = Field(default=1024, ge=64, le=30000)
    max_volumes: int = Field(default=0, ge=0, le=100000)
    # SeaweedFS: minutes between the leading master's maintenance runs (replication repair,
    # balance, empty volumes, stale multipart uploads).
    maintenance_minutes: int = Field(default=17, ge=1, le=1440)
    # MinIO: data directories per host (drives; one per mounted disk in production).
    minio_drives: int = Field(default=1, ge=1, le=16)


def s3_port(settings: Any) -> int:
    s = settings.storage
    return s.port or (MINIO_PORT if s.server == "minio" else SEAWEEDFS_PORT)


def server(inventory: Inventory) -> str:
    return inventory.settings.storage.server


def copies(replication: str) -> int:
    return 1 + sum(int(d) for d in replication)


# --- layouts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeaweedLayout:
    """Which host runs which SeaweedFS server. The S3 gateway and the filer run on every
    storage host; masters (Raft: an odd number) and volume servers as decided below."""

    storage: tuple[Host, ...]
    masters: tuple[Host, ...]
    volumes: tuple[Host, ...]
    tiebreaker: Host | None
    replication: str

    @property
    def hosts(self) -> tuple[Host, ...]:
        return self.storage + ((self.tiebreaker,) if self.tiebreaker else ())


def tiebreaker_host(inventory: Inventory) -> Host | None:
    """The host that completes two storage hosts: the first job server or monitoring host
    that is not a storage host."""
    return next(
        (h for h in inventory.hosts if (h.has("jobserver") or h.has("monitoring")) and not h.has("storage")), None
    )


def seaweed_layout(inventory: Inventory) -> SeaweedLayout:
    """The placement, following SeaweedFS's documentation: masters agree through Raft, so
    surviving the loss of one needs three (its docs: "1 or 3 is typical"); every file is
    kept as copies on different volume servers (replica placement 001 by default: all
    hosts in one data center and rack, so "001" means another server of the same rack).

    - 1 storage host: one master, one volume server, one copy (the single pattern's one
      storage node, without redundancy).
    - 2 storage hosts: the job/monitoring host runs the third master and a third volume
      server. With only two volume servers and two copies no new volume could be placed
      while either is down (uploads failed on the test bed); with three, the two left
      still take new files, each with two copies.
    - 3 or more: masters on the first three, a volume server on each.
    """
    storage = tuple(inventory.with_role("storage"))
    extra = tiebreaker_host(inventory) if len(storage) == 2 else None
    masters = (storage + ((extra,) if extra else ()))[:3]
    volumes = storage + ((extra,) if extra else ())
    replication = inventory.settings.storage.replication or ("000" if len(volumes) < 2 else "001")
    return SeaweedLayout(storage, masters, volumes, extra, replication)


def _host_key(inventory: Inventory, host: Host) -> str:
    return f"hosts.{inventory.hosts.index(host)}.roles"


def layout_problems(inventory: Inventory) -> list[tuple[str, str]]:
    """Storage layouts refused at validation: those that lose files or stop taking uploads
    when one storage host is lost, or use a setting of the other server."""
    storage = inventory.with_role("storage")
    if not storage:
        return []
    s = inventory.settings.storage
    problems: list[tuple[str, str]] = []
    first = _host_key(inventory, storage[0])
    if s.server == "minio":
        # MinIO's erasure code sizing guide: with fewer than 4 servers, losing one server
        # stops writes (2 or 3) or loses everything (1 is fine only without redundancy).
        if 2 <= len(storage) < 4:
            problems.append(
                (
                    first,
                    f"MinIO keeps taking uploads with one server down only from 4 servers "
                    f"(its erasure code sizing guide); {len(storage)} storage hosts cannot "
                    "survive losing one: use storage.server: seaweedfs, or 4 or more storage hosts",
                )
            )
        if s.replication is not None:
            problems.append(
                ("settings.storage.replication", "is a SeaweedFS setting; MinIO protects data with erasure coding")
            )
    else:
        layout = seaweed_layout(inventory)
        if len(storage) == 2 and layout.tiebreaker is None:
            problems.append(
                (
                    first,
                    "2 storage hosts survive the loss of one only with a third SeaweedFS master and "
                    "volume server, which runs on the job server or monitoring host: give a host that "
                    "is not a storage host the role jobserver or monitoring, or add a third storage host",
                )
            )
        wanted = copies(layout.replication)
        if len(storage) >= 2 and wanted < 2:
            problems.append(
                (
                    "settings.storage.replication",
                    f"{layout.replication} keeps one copy of each file: losing a "
                    "storage host loses files; use 001 (two copies)",
                )
            )
        if len(layout.volumes) == 1 and wanted > 1:
            problems.append(
                (
                    "settings.storage.replication",
                    f"{layout.replication} keeps {wanted} copies, on different "
                    "volume servers; one storage host has one: use 000",
                )
            )
        elif len(layout.volumes) > 1 and len(layout.volumes) - 1 < wanted and not problems:
            problems.append(
                (
                    "settings.storage.replication",
                    f"{layout.replication} keeps {wanted} copies on different volume servers: with one of the "
                    f"{len(layout.volumes)} down, new uploads cannot be placed; use 001 or add storage hosts",
                )
            )
    return problems


def release(settings: Any, name: str, default_version: str | None) -> Artifact:
    """The server's release artifact; its sha256 (and MinIO's version) must be given."""
    s = settings.storage
    version = s.version or default_version
    if not version:
        raise MMDeployError(
            "settings.storage.version is required for MinIO: its RELEASE tag, e.g. "
            "RELEASE.2025-09-07T16-13-09Z (no default: its community binaries are no longer published)"
        )
    if not s.sha256:
        what = "minio binary" if s.server == "minio" else "SeaweedFS release archive (linux_amd64.tar.gz)"
        raise MMDeployError(f"settings.storage.sha256 is required: the SHA-256 of the {what} {s.url or release_url(s)}")
    return Artifact(name, version, s.url or release_url(s), s.sha256)


def release_url(s: Any) -> str:
    if s.server == "minio":
        return f"https://dl.min.io/server/minio/release/linux-amd64/archive/minio.{s.version or 'RELEASE...'}"
    return (
        f"https://github.com/seaweedfs/seaweedfs/releases/download/{s.version or SEAWEEDFS_VERSION}/linux_amd64.tar.gz"
    )


# --- the bucket ------------------------------------------------------------------------


def bucket_steps(settings: Any, host: Host, credentials: str, also: tuple[str, str] | None = None) -> list:
    """Mattermost's bucket, created through the S3 API of this host's gateway with the
    credentials read from the server's config file on the host (`credentials`); `also`:
    (bucket, identity) another bucket, created by that identity of the file (its owner)."""
    s = settings.storage

    def create(bucket: str, *identity: str) -> Command:
        args = " ".join(
            shlex.quote(a)
            for a in (host.private_address, str(s3_port(settings)), s.region, bucket, credentials, *identity)
        )
        # The gateway may still be connecting to its filer or peers right after a start.
        script = f"for i in $(seq 30); do python3 {HELPER} bucket create {args} && exit 0; sleep 2; done\nexit 1\n"
        return Command(f"bucket {bucket}", script, unless=f"python3 {HELPER} bucket check {args}", timeout=120)

    return [
        Packages("python3"),
        Directory(str(Path(HELPER).parent)),
        File(HELPER, (Path(__file__).parent / "s3.py").read_text(), mode="0644"),
        create(s.bucket),
        *([create(*also)] if also else []),
    ]


# --- verify ----------------------------------------------------------------------------


def s3_checks(inventory: Inventory, gateways: list[Host]) -> list[Check]:
    """Every gateway serves signed requests on the bucket and refuses anonymous ones; what
    one gateway wrote, every other reads."""
    checks = [
        Check(f"S3 on {h.name}: signed requests served, anonymous refused", _gateway(inventory, h), h.name)
        for h in gateways
    ]
    if len(live(gateways)) > 1:  # those verify found down are not asked
        checks.append(
            Check(
                "S3: a file written through one gateway reads through every other", _across(inventory, live(gateways))
            )
        )
    return checks


def credentials(inventory: Inventory) -> tuple[str | None, str | None]:
    secrets = Secrets(inventory.secrets_path, Redactor())
    return secrets.existing(ACCESS_KEY), secrets.existing(SECRET_KEY)


def client(inventory: Inventory, host: Host, signed: bool = True) -> s3.Client:
    key, secret = credentials(inventory) if signed else (None, None)
    s = inventory.settings
    return s3.Client(host.address, s3_port(s), s.storage.region, key, secret)


def _gateway(inventory: Inventory, host: Host):
    def check() -> str | None:
        bucket = inventory.settings.storage.bucket
        if None in credentials(inventory):
            return "no storage credentials in the secrets file (was the site deployed by mmdeploy?)"
        if not client(inventory, host).bucket_exists(bucket):
            return f"bucket {bucket} does not exist"
        status, _ = client(inventory, host, signed=False).request("GET", bucket)
        if status != 403:
            return f"an anonymous listing of {bucket} answered HTTP {status}, expected 403"
        return None

    return check


def _across(inventory: Inventory, gateways: list[Host]):
    def check() -> str | None:
        bucket = inventory.settings.storage.bucket
        key = f"mmdeploy-verify/{time.time_ns()}"
        body = f"written through {gateways[0].name}".encode()
        first = client(inventory, gateways[0])
        status, answer = first.request("PUT", bucket, key, body)
        if status != 200:
            return f"PUT through {gateways[0].name}: HTTP {status} {answer[:200]!r}"
        try:
            for h in gateways[1:]:
                status, answer = client(inventory, h).request("GET", bucket, key)
                if status != 200 or answer != body:
                    return f"GET through {h.name} of what {gateways[0].name} wrote: HTTP {status}"
        finally:
            first.request("DELETE", bucket, key)
        return None

    return check
