"""Backups (settings `backup`): what must be on the hosts for `inv backup` / `inv restore`
and for the scheduled runs.

The backup host (the host with role `backup`, else the first `monitoring` host) holds the
repository in a directory (settings.backup.path) and runs the backups from systemd timers
(full weekly, differential daily by default; settings.backup.*_schedule):
- PostgreSQL: pgBackRest with the backup host as its repository host and continuous WAL
  archiving from the primary, so a restore reaches any moment since the oldest backup
  kept (components/postgresql/backup.py). Its repository may be an S3 bucket instead
  (settings.backup.repository: s3): an external one given in backup.s3 with its keys, or,
  without backup.s3, a bucket of its own on the site's own storage (backup.storage_bucket)
  with keys mmdeploy generates, allowed on that bucket only (SeaweedFS), reached from the
  backup host through the storage balancer like Mattermost reaches it, over a TLS hop on
  the backup host's loopback (pgBackRest speaks S3 over HTTPS only).
- MariaDB: mariabackup streamed from the primary, plus the binary logs
  (components/mysql/backup.py).
- Mattermost's config, plugins and (when files are not on S3) local data, copied from an
  app server with rsync, hard-linked between runs.
Each run writes its result to the node exporter's textfile collector; the monitoring hosts
get alert rules in /etc/prometheus/rules.d/mmdeploy-backup.yml.

Trust between hosts is one SSH key per purpose, generated on the host that uses it, each
accepted only from the backup host's (or DB nodes') address, and where it can be a single
program (MariaDB's forced command, rrsync on the app servers), only that program.

Three components, in order: `backup-agent` (packages, users, keys), `backup` (trust,
configs, archiving, timers, alert rules), `backup-repository` (pgBackRest's stanza, and
the check that archiving reaches it).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field

from .. import balancer
from ..component import Check, Component, Context, LayerClient, Port, Role
from ..errors import MMDeployError
from ..facts import HOST_FACTS
from ..inventory import Host, Inventory
from ..ops import Command, Directory, File, Group, Packages, Service, User, unit
from ..ops.lines import TaggedLines
from ..ops.secretfile import SecretFile
from ..step import Step
from ..secrets import Secret
from ..settings import Section
from .postgresql import backup as pgb
from .postgresql import stanza
from .storage import common as storage
from .prometheus import reload_prometheus
from .postgresql.config import Paths
from .postgresql.config import paths as pg_paths

KEY_NAME = "mmdeploy-backup"
TAG = "mmdeploy-backup"
SSH_CONFIG = "/etc/mmdeploy-backup/ssh_config"
SCRIPT = "/usr/local/sbin/mmdeploy-backup"
STATE = "/var/lib/mmdeploy-backup"
RULES = "/etc/prometheus/rules.d/mmdeploy-backup.yml"
RUN_TIMEOUT = 6 * 3600  # one run: a large database takes hours
ROOT_HOME = "/root"
MM_HOME = "/opt/mattermost"

S3_ACCESS_KEY = Secret(
    "backup_s3_access_key", "the backup repository's S3 access key (never generated)", generate=False
)
S3_SECRET_KEY = Secret(
    "backup_s3_secret_key", "the backup repository's S3 secret key (never generated)", generate=False
)


# The backup repository on the site's own S3 storage: pgBackRest (HTTPS only) reaches it
# through a TLS hop (stunnel) on the backup host's loopback.
TLS_PORT = 18433
TLS_CONF = "/etc/mmdeploy-backup/s3tls.conf"
TLS_CERT = "/etc/mmdeploy-backup/s3tls.pem"
TLS_KEY = "/etc/mmdeploy-backup/s3tls.key"
TLS_UNIT = "mmdeploy-backup-s3tls"


class BackupS3(Section):
    """An external S3 bucket for pgBackRest's repository (without it, repository s3 is a
    bucket on the site's own storage)."""

    endpoint: str = Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")  # host[:port]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    path: str = Field(default="/pgbackrest", pattern=r"^/[A-Za-z0-9._/-]*$")
    uri_style: Literal["path", "host"] = "path"
    verify_tls: bool = True


class BackupSettings(Section):
    """Backups (components/backup.py, mmdeploy/backups.py)."""

    enabled: bool = False
    # host: a directory on the backup host; s3: pgBackRest's repository in `s3` (MariaDB
    # backups and Mattermost's files stay in `path` on the backup host).
    repository: Literal["host", "s3"] = "host"
    path: str = Field(default="/var/backups/mattermost", pattern=r"^/[A-Za-z0-9._/-]+$")
    s3: BackupS3 | None = None
    # Repository s3 without `s3`: this bucket on the site's own storage (storage hosts).
    storage_bucket: str = Field(default="mattermost-backup", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    # pgBackRest keeps this many full backups (and the WAL to restore from them), and this
    # many differential ones; MariaDB and file copies keep the sum of both, newest first.
    retention_full: int = Field(default=2, ge=1, le=100)
    retention_diff: int = Field(default=6, ge=1, le=1000)
    # systemd OnCalendar expressions.
    full_schedule: str = Field(default="Sun *-*-* 01:30:00", pattern=r"^[A-Za-z0-9*.,:/ ~-]+$")
    diff_schedule: str = Field(default="Mon..Sat *-*-* 01:30:00", pattern=r"^[A-Za-z0-9*.,:/ ~-]+$")
    # The MattermostBackupTooOld alert fires when the last good backup is older (a
    # Prometheus duration).
    max_age: str = Field(default="26h", pattern=r"^\d+[mhd]$")
    # Also copy Mattermost's config, plugins and local files.
    files: bool = True


BACKUP_ROLE = Role("backup", "holds the backup repository and runs the backups (default: the first monitoring host)")


def backup_host(inventory: Inventory) -> Host | None:
    hosts = inventory.with_role("backup") or inventory.with_role("monitoring")
    return hosts[0] if hosts else None


def configured(inventory: Inventory) -> bool:
    return bool(inventory.settings.backup.enabled)


def require_host(inventory: Inventory) -> Host:
    host = backup_host(inventory)
    if host is None:
        raise MMDeployError(
            "settings.backup.enabled: no backup host (give a host the role `backup`, or have a `monitoring` host)"
        )
    return host


def db_hosts(inventory: Inventory) -> list[Host]:
    return inventory.with_role("db")


def app_hosts(inventory: Inventory) -> list[Host]:
    return inventory.with_role("app")


def engine(inventory: Inventory) -> str:
    return inventory.settings.database.engine


def keep(settings: Any) -> int:
    return settings.backup.retention_full + settings.backup.retention_diff


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"m": 60, "h": 3600, "d": 86400}[duration[-1]]


def _key_step(user: str, group: str, home: str) -> Command:
    key = f"{home}/.ssh/{KEY_NAME}"
    return Command(
        f"SSH key of {user} for backups",
        f"set -e\ninstall -d -m 0700 -o {user} -g {group} {home}/.ssh\n"
        f"runuser -u {user} -- ssh-keygen -q -t ed25519 -N '' -C {TAG} -f {key}\n",
        unless=f"test -s {key}.pub",
    )


# In Backup's prepared keys while the repository holds another cluster's backups.
PAUSED = "timers paused"
TIMERS = ("mmdeploy-backup-full.timer", "mmdeploy-backup-diff.timer")

# A host's own SSH host keys, one "type base64 comment" line each.
HOST_KEYS = "cat /etc/ssh/ssh_host_*_key.pub"


def _pubkey_probe(home: str) -> str:
    return f"cat {home}/.ssh/{KEY_NAME}.pub"


class _Involved(Component):
    """On the hosts backups involve: the backup host, the DB nodes, the app servers (files)
    and the monitoring hosts (alert rules); nowhere while backups are off."""

    settings = {"backup": BackupSettings}

    def hosts(self, inventory: Inventory) -> list[Host]:
        if not configured(inventory):
            return []
        repo = backup_host(inventory)
        wanted = {h.name for h in db_hosts(inventory)} | {h.name for h in inventory.with_role("monitoring")}
        if repo is not None:
            wanted.add(repo.name)
        if inventory.settings.backup.files:
            wanted |= {h.name for h in app_hosts(inventory)}
        return [h for h in inventory.hosts if h.name in wanted]


def _pulled(inventory: Inventory) -> list[Host]:
    """The hosts the backup host reaches over SSH: the DB hosts, the app servers' files."""
    if not configured(inventory):
        return []
    return db_hosts(inventory) + (app_hosts(inventory) if inventory.settings.backup.files else [])


def _repository(inventory: Inventory) -> list[Host]:
    """The backup host, where pgBackRest on the DB hosts pushes WAL over SSH."""
    repo = backup_host(inventory) if configured(inventory) and engine(inventory) == "postgresql" else None
    return [repo] if repo is not None else []


def _repository_hosts(inventory: Inventory) -> list[Host]:
    repo = backup_host(inventory) if configured(inventory) else None
    return [repo] if repo is not None else []


def _storage_clients(inventory: Inventory) -> list[Host]:
    """The backup host, when the repository is on the site's own storage."""
    return _repository_hosts(inventory) if storage.backup_bucket(inventory) else []


def repository_s3(inventory: Inventory) -> BackupS3 | None:
    """The S3 bucket of pgBackRest's repository: backup.s3, or the backup bucket on the
    site's own storage as pgBackRest reaches it (the TLS hop on the loopback)."""
    b = inventory.settings.backup
    if b.repository != "s3":
        return None
    bucket = storage.backup_bucket(inventory)
    if b.s3 is not None or bucket is None:
        return b.s3
    return BackupS3(endpoint=f"localhost:{TLS_PORT}", bucket=bucket, region=inventory.settings.storage.region)


class BackupAgent(_Involved):
    name = "backup-agent"
    owns_roles = (BACKUP_ROLE,)
    secrets = (S3_ACCESS_KEY, S3_SECRET_KEY, storage.BACKUP_ACCESS_KEY, storage.BACKUP_SECRET_KEY)
    # The backup host reaches a repository on the site's own storage through its balancer.
    layer_clients = (LayerClient("storage", _storage_clients),)
    # Backups run over SSH (its restricted keys): the backup host pulls from the DB hosts
    # and app servers; pgBackRest on the DB hosts reaches the repository.
    ports = (
        Port("ssh (backups)", lambda h: h.ssh.port, on=_pulled, reach_hosts=_repository_hosts, why="the backup host"),
        Port("ssh (backups)", lambda h: h.ssh.port, ("db",), on=_repository, why="pgBackRest on the DB hosts"),
    )
    after = ("postgresql-replication", "mysql-replication", "prometheus")

    def validate(self, settings):
        b = settings.backup
        if b.enabled and b.repository == "s3" and settings.database.engine != "postgresql":
            return [
                (
                    "backup.repository",
                    "an S3 repository holds pgBackRest's (PostgreSQL) backups; "
                    "MariaDB backups go to the backup host's directory: use repository: host",
                )
            ]
        return []

    def validate_layout(self, inventory):
        """Repository s3 without backup.s3: the site's own storage, which must be there
        and able to keep the backups apart (keys allowed on their bucket only)."""
        s = inventory.settings
        b = s.backup
        repo = backup_host(inventory) if b.enabled else None
        if repo is not None and repo.has("db") and engine(inventory) == "postgresql":
            # pgBackRest's repository host and a DB host each write /etc/pgbackrest.conf.
            return [
                (
                    f"hosts.{inventory.hosts.index(repo)}.roles",
                    f"{repo.name} would be the backup host (role backup, else the first monitoring host) and is "
                    "a DB host: pgBackRest needs its repository on another host; give the backup role to a host "
                    "without the db role",
                )
            ]
        if not (b.enabled and b.repository == "s3" and b.s3 is None and engine(inventory) == "postgresql"):
            return []
        if not inventory.with_role("storage"):
            return [
                (
                    "settings.backup.s3",
                    "repository s3 needs either backup.s3 (endpoint, bucket; secrets backup_s3_access_key / "
                    "backup_s3_secret_key) for an external S3, or storage hosts: the site's own S3 storage "
                    "then holds the repository",
                )
            ]
        if s.storage.server == "minio":
            return [
                (
                    "settings.backup.repository",
                    "a repository on the site's own MinIO is not supported: its keys must reach the backup "
                    "bucket only, and mmdeploy makes such keys on SeaweedFS only (a MinIO user and bucket "
                    "policy go through MinIO's admin API, which mmdeploy does not drive); give backup.s3 "
                    "(an external bucket and its keys) or use repository: host",
                )
            ]
        if b.storage_bucket == s.storage.bucket:
            return [
                (
                    "settings.backup.storage_bucket",
                    f"must differ from storage.bucket ({s.storage.bucket}): the backups get a bucket of their "
                    "own, which Mattermost's keys cannot read",
                )
            ]
        return []

    def steps(self, ctx: Context):
        inv, host, pg = ctx.inventory, ctx.host, engine(ctx.inventory) == "postgresql"
        repo = require_host(inv)
        steps = []
        if host.name == repo.name:
            steps += [
                Packages("rsync", "jq", "openssh-client", *(["pgbackrest"] if pg else [])),
                # 0711: the repository user reaches its own directory below it, nothing else.
                Directory(ctx.settings.backup.path, mode="0711"),
                Directory(STATE, mode="0700"),
                Directory("/etc/mmdeploy-backup"),
                _key_step("root", "root", ROOT_HOME),
            ]
            if pg:
                steps += [
                    Group(pgb.REPO_USER),
                    User(pgb.REPO_USER, home=pgb.REPO_HOME, shell="/bin/bash"),
                    Directory(pgb.REPO_HOME, owner=pgb.REPO_USER, group=pgb.REPO_USER, mode="0750"),
                    Directory(
                        f"{ctx.settings.backup.path}/pgbackrest", owner=pgb.REPO_USER, group=pgb.REPO_USER, mode="0750"
                    ),
                    Directory(pgb.LOG_DIR, owner=pgb.REPO_USER, group=pgb.REPO_USER, mode="0770"),
                    _key_step(pgb.REPO_USER, pgb.REPO_USER, pgb.REPO_HOME),
                ]
            if storage.backup_bucket(inv):
                steps.append(Packages("stunnel4", "openssl"))
        if host.has("db"):
            if pg:
                steps += [
                    Packages("pgbackrest"),
                    Directory(pgb.LOG_DIR, owner="postgres", group="postgres", mode="0770"),
                    _key_step("postgres", "postgres", "/var/lib/postgresql"),
                ]
            else:
                from .mysql import backup as myb
                from .mysql.component import flavor_of

                flavor = flavor_of(host)
                steps += [Packages(*myb.packages(flavor)), File(myb.FORCED, myb.forced_command(flavor), mode="0750")]
        if host.has("app") and ctx.settings.backup.files:
            steps.append(Packages("rsync"))  # rrsync comes with it
        return steps


class Backup(_Involved):
    name = "backup"
    after = ("backup-agent",)

    def prepare(self, inventory: Inventory, view) -> Any:
        """The public keys the hosts generated (backup-agent), to trust them elsewhere, and
        the DB hosts' PostgreSQL paths (their version: the setting, else their distribution's)."""
        repo = require_host(inventory)
        keys: dict[str, str] = {}

        def read(host: Host, label: str, home: str) -> None:
            fact = view.facts(host, [_pubkey_probe(home)])[_pubkey_probe(home)]
            if fact.ok and fact.out.strip():
                kind, blob = fact.out.split()[:2]
                keys[label] = f"{kind} {blob}"

        read(repo, "root", ROOT_HOME)
        for host in _pulled(inventory):
            fact = view.facts(host, [HOST_KEYS])[HOST_KEYS]
            if fact.ok and fact.out.strip():
                keys[f"host keys {host.name}"] = fact.out
        if engine(inventory) == "postgresql":
            read(repo, pgb.REPO_USER, pgb.REPO_HOME)
            for db in db_hosts(inventory):
                read(db, f"postgres@{db.name}", "/var/lib/postgresql")
                os_fact = view.facts(db, [HOST_FACTS["os"]])[HOST_FACTS["os"]]
                try:
                    keys[f"pg paths {db.name}"] = pg_paths(db, os_fact.out.strip() if os_fact.ok else None).version
                except MMDeployError:
                    pass  # unreachable and no version set: its steps say so
            if owner_seen(inventory, view).other:
                keys[PAUSED] = "1"
        return keys

    def steps(self, ctx: Context):
        keys: dict[str, str] = ctx.shared
        inv, host, s = ctx.inventory, ctx.host, ctx.settings
        repo, pg = require_host(inv), engine(ctx.inventory) == "postgresql"

        missing = []

        def line(options: str, label: str) -> list[str]:
            if label not in keys:  # a plan before backup-agent ever ran: say so, do not fail the plan
                missing.append(label)
                return []
            return [f"{options} {keys[label]} {TAG}"]

        steps = []
        if host.name == repo.name:
            steps += self._repository_host(ctx, repo, pg, keys, line)
        if host.has("db"):
            if pg:
                p = self._pg(keys, host)
                steps += [
                    File(pgb.CONF, pgb.db_conf(host, repo, p)),
                    File(
                        "/var/lib/postgresql/.ssh/config",
                        ctx.render(
                            "backup/ssh_config.j2",
                            key=f"/var/lib/postgresql/.ssh/{KEY_NAME}",
                            known_hosts="/var/lib/postgresql/.ssh/known_hosts",
                        ),
                        owner="postgres",
                        group="postgres",
                        mode="0600",
                    ),
                    TaggedLines(
                        "/var/lib/postgresql/.ssh/authorized_keys",
                        line(f'restrict,from="{repo.private_address}"', pgb.REPO_USER),
                        TAG,
                        owner="postgres",
                        group="postgres",
                    ),
                    # archive_mode needs a restart; WAL then goes to the repository host.
                    File(
                        f"{p.conf}/conf.d/{pgb.ARCHIVE_CONF}",
                        pgb.archive_conf(),
                        owner="postgres",
                        group="postgres",
                        notify=("restart postgresql",),
                    ),
                ]
            else:
                from .mysql import backup as myb

                steps.append(
                    TaggedLines(
                        f"{ROOT_HOME}/.ssh/authorized_keys",
                        line(f'command="{myb.FORCED}",restrict,from="{repo.private_address}"', "root"),
                        TAG,
                    )
                )
        if host.has("app") and s.backup.files:
            steps.append(
                TaggedLines(
                    f"{ROOT_HOME}/.ssh/authorized_keys",
                    line(f'command="/usr/bin/rrsync {MM_HOME}",restrict,from="{repo.private_address}"', "root"),
                    TAG,
                )
            )
        if missing:
            steps.insert(
                0,
                Command(
                    f"trust the backup keys of {', '.join(sorted(set(missing)))}",
                    "echo 'the backup keys are made by backup-agent, which has not run' >&2; exit 1",
                ),
            )
        if host.has("monitoring"):
            steps += [
                Directory("/etc/prometheus/rules.d"),
                File(
                    RULES,
                    ctx.render(
                        "backup/rules.yml.j2",
                        max_age=s.backup.max_age,
                        max_age_seconds=seconds(s.backup.max_age),
                        backup_host=repo.name,
                    ),
                    validate="promtool check rules {}",
                    notify=("reload prometheus",),
                ),
            ]
        return steps

    @staticmethod
    def _pg(shared: dict[str, str], db: Host) -> Paths:
        version = shared.get(f"pg paths {db.name}")
        if version is None:
            raise MMDeployError(
                f"{db.name}: its PostgreSQL version is unknown (the host did not answer; "
                "or set database.postgresql_version)"
            )
        return Paths(version)

    @staticmethod
    def _known_hosts(path: str, hosts: list[Host], keys: dict, **owner) -> list[Step]:
        """The host keys of the hosts the backup runs reach, as the deploy read them over its
        own checked connections: a machine replaced by a fresh one (new host keys, same
        address) is trusted at once, with no stale key refusing it. Left alone while a
        host's keys are unknown (it did not answer)."""
        if not hosts or any(f"host keys {h.name}" not in keys for h in hosts):
            return []
        lines = [
            f"{h.private_address} {' '.join(entry.split()[:2])}"
            for h in hosts
            for entry in keys[f"host keys {h.name}"].splitlines()
            if entry.strip()
        ]
        return [File(path, "".join(f"{line}\n" for line in lines), mode="0644", **owner)]

    def _repository_host(self, ctx: Context, repo: Host, pg: bool, keys: dict, line) -> list:
        inv, s = ctx.inventory, ctx.settings
        dbs = db_hosts(inv)
        steps: list[Step] = [
            File(
                SSH_CONFIG,
                ctx.render(
                    "backup/ssh_config.j2",
                    key=f"{ROOT_HOME}/.ssh/{KEY_NAME}",
                    known_hosts="/etc/mmdeploy-backup/known_hosts",
                ),
                mode="0644",
            ),
            *self._known_hosts("/etc/mmdeploy-backup/known_hosts", _pulled(inv), keys),
        ]
        if pg:
            lines = [
                entry for db in dbs for entry in line(f'restrict,from="{db.private_address}"', f"postgres@{db.name}")
            ]
            s3_keys = None
            own = storage.backup_bucket(inv)
            if own:
                s3_keys = (ctx.secrets.get(storage.BACKUP_ACCESS_KEY), ctx.secrets.get(storage.BACKUP_SECRET_KEY))
                steps += _tls_hop(ctx)
            elif s.backup.repository == "s3":
                s3_keys = (ctx.secrets.get(S3_ACCESS_KEY), ctx.secrets.get(S3_SECRET_KEY))
            conf = pgb.repo_conf(
                repo,
                dbs,
                s,
                s3_keys,
                versions={db.name: self._pg(keys, db).version for db in dbs},
                s3=repository_s3(inv),
                ca_file=TLS_CERT if own else None,
            )
            steps += [
                TaggedLines(
                    f"{pgb.REPO_HOME}/.ssh/authorized_keys", lines, TAG, owner=pgb.REPO_USER, group=pgb.REPO_USER
                ),
                File(
                    f"{pgb.REPO_HOME}/.ssh/config",
                    ctx.render(
                        "backup/ssh_config.j2",
                        key=f"{pgb.REPO_HOME}/.ssh/{KEY_NAME}",
                        known_hosts=f"{pgb.REPO_HOME}/.ssh/known_hosts",
                    ),
                    owner=pgb.REPO_USER,
                    group=pgb.REPO_USER,
                    mode="0600",
                ),
                *self._known_hosts(
                    f"{pgb.REPO_HOME}/.ssh/known_hosts", dbs, keys, owner=pgb.REPO_USER, group=pgb.REPO_USER
                ),
                # With S3 keys inside it is a secret; readable by the repository user only.
                (SecretFile if s3_keys else File)(pgb.CONF, conf, owner="root", group=pgb.REPO_USER, mode="0640"),
            ]
        from .mysql.component import flavor_of

        script = ctx.render(
            "backup/mmdeploy-backup.j2",
            engine=engine(inv),
            path=s.backup.path,
            keep=keep(s),
            pg_backup=pgb.as_repo("backup"),
            info=pgb.info_command(),
            db_hosts=" ".join(h.private_address for h in dbs),
            app_hosts=" ".join(h.private_address for h in app_hosts(inv)),
            files=s.backup.files,
            tool="mariabackup" if pg or flavor_of(repo).mariadb else "xtrabackup",
        )
        steps.append(File(SCRIPT, script, mode="0750"))
        for kind, schedule in (("full", s.backup.full_schedule), ("diff", s.backup.diff_schedule)):
            steps += [
                unit(
                    f"mmdeploy-backup-{kind}.service",
                    ctx.render("backup/mmdeploy-backup.service.j2", kind=kind, timeout=RUN_TIMEOUT),
                ),
                unit(
                    f"mmdeploy-backup-{kind}.timer",
                    ctx.render("backup/mmdeploy-backup.timer.j2", kind=kind, schedule=schedule),
                    notify=(f"restart {kind} timer",),
                ),
                # Paused while the repository holds another cluster's backups: each run would
                # fail, and its copy of the new, empty site's files push a good one out of
                # retention. `inv restore` starts them again.
                Service(f"mmdeploy-backup-{kind}.timer", running=PAUSED not in keys),
            ]
        return steps

    def handlers(self, ctx: Context):
        out = {
            "reload prometheus": reload_prometheus(ctx.host),
            "restart full timer": Command(
                "restart the full backup timer", "systemctl try-restart mmdeploy-backup-full.timer"
            ),
            "restart diff timer": Command(
                "restart the diff backup timer", "systemctl try-restart mmdeploy-backup-diff.timer"
            ),
            "restart tls hop": Command(f"restart {TLS_UNIT}", f"systemctl try-restart {TLS_UNIT}", timeout=60),
        }
        if ctx.host.has("db") and engine(ctx.inventory) == "postgresql":
            u = pg_paths(ctx.host, ctx.facts.host("os")).unit
            out["restart postgresql"] = Command(
                f"restart {u} (WAL archiving)", f"systemctl try-restart {u}", timeout=180
            )
        return out

    def checks(self, inventory):
        if not configured(inventory):
            return []
        repo = require_host(inventory)
        checks = [
            Check(
                f"backups on {repo.name}: timers active, the last run good and recent",
                lambda: backup_problem(inventory),
                repo.name,
            )
        ]
        bucket = storage.backup_bucket(inventory)
        if bucket:
            checks.append(
                Check(
                    f"backup bucket {bucket} on the site's storage: the backup keys reach it, Mattermost's are refused",
                    lambda: backup_bucket_problem(inventory, bucket),
                )
            )
        return checks


class BackupRepository(_Involved):
    """pgBackRest's stanza in the repository, created once the primary archives to it (and
    a repository on the site's own storage has its bucket, behind the balancer)."""

    name = "backup-repository"
    after = ("backup", "seaweedfs-s3", "haproxy")

    def hosts(self, inventory: Inventory) -> list[Host]:
        repo = backup_host(inventory)
        return [repo] if configured(inventory) and repo and engine(inventory) == "postgresql" else []

    def prepare(self, inventory: Inventory, view) -> stanza.Owner:
        return owner_seen(inventory, view)

    def found_warnings(self, prepared) -> list[str]:
        return [prepared.message] if prepared is not None and prepared.other else []

    def steps(self, ctx: Context):
        if ctx.shared is not None and ctx.shared.other:  # another cluster's: `inv restore`, never stanza-create
            return []
        return [
            Command(
                "pgBackRest stanza mattermost (and the archiving check)",
                pgb.stanza_create(),
                unless=pgb.stanza_ready(),
                timeout=600,
            )
        ]


def _tls_hop(ctx: Context) -> list[Step]:
    """On the backup host: stunnel on the loopback, with a certificate of its own that
    pgBackRest checks, forwarding to the storage layer where Mattermost reaches it."""
    address, port = balancer.require_endpoint(ctx.inventory, "storage")
    conf = ctx.render(
        "backup/s3tls.conf.j2",
        port=TLS_PORT,
        endpoint=f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
        cert=TLS_CERT,
        key=TLS_KEY,
    )
    notify = ("restart tls hop",)
    return [
        Command(
            "certificate of the TLS hop to the backup repository",
            f"set -e\numask 077\nopenssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=localhost "
            f"-addext subjectAltName=DNS:localhost -keyout {TLS_KEY} -out {TLS_CERT} 2>/dev/null\n"
            f"chmod 0644 {TLS_CERT}\n",
            unless=f"test -s {TLS_KEY} && test -s {TLS_CERT}",
            notify=notify,
        ),
        File(TLS_CONF, conf, mode="0644", notify=notify),
        unit(f"{TLS_UNIT}.service", ctx.render("backup/s3tls.service.j2", conf=TLS_CONF), notify=notify),
        Service(TLS_UNIT),
    ]


def backup_bucket_problem(inventory: Inventory, bucket: str) -> str | None:
    """The verify check of a repository on the site's own storage, asked at a gateway:
    the backup keys list the bucket; Mattermost's keys are refused there."""
    from ..secrets import Redactor, Secrets
    from .storage import s3

    secrets = Secrets(inventory.secrets_path, Redactor())
    backup_keys = (secrets.existing(storage.BACKUP_ACCESS_KEY), secrets.existing(storage.BACKUP_SECRET_KEY))
    if None in backup_keys:
        return "no backup storage keys in the secrets file (was the site deployed by mmdeploy?)"
    gateway = inventory.with_role("storage")[0]
    s = inventory.settings

    def listing(keys) -> int:
        client = s3.Client(gateway.address, storage.s3_port(s), s.storage.region, *keys)
        return client.request("GET", bucket, query={"list-type": "2", "max-keys": "1"})[0]

    status = listing(backup_keys)
    if status != 200:
        return f"listing {bucket} with the backup keys through {gateway.name}: HTTP {status}"
    status = listing(storage.credentials(inventory))
    if status != 403:
        return f"listing {bucket} with Mattermost's keys answered HTTP {status}, expected 403"
    return None


def repository_owner(inventory: Inventory, read: Callable[[Host, str], str]) -> stanza.Owner:
    """Whose backups pgBackRest's stanza holds (components/postgresql/stanza.py), from
    `read(host, command)` -> its output ("" when it failed)."""
    if engine(inventory) != "postgresql":
        return stanza.Owner("none", None, None, "")
    repo = require_host(inventory)
    ids = {db.name: read(db, stanza.SYSTEM_ID) for db in db_hosts(inventory)}
    return stanza.owner(read(repo, pgb.info_command()), ids, f"the backup repository on {repo.name}")


def owner_seen(inventory: Inventory, view) -> stanza.Owner:
    """repository_owner, read as facts in a component's prepare()."""

    def read(host: Host, command: str) -> str:
        fact = view.facts(host, [command])[command]
        return fact.out if fact.ok else ""

    return repository_owner(inventory, read)


def owner_now(inventory: Inventory, fleet) -> stanza.Owner:
    """repository_owner, read through a day-2 operation's connections (a mmdeploy.fleet.Fleet)."""

    def read(host: Host, command: str) -> str:
        try:
            return fleet.remote(host).run(command, timeout=60, what="read whose backups the repository holds").stdout
        except MMDeployError:  # a DB host down: the DB tier's own checks say so
            return ""

    return repository_owner(inventory, read)


def backup_problem(inventory: Inventory) -> str | None:
    """The verify check: both timers active; the last run of each part good; the last
    good database backup younger than settings.backup.max_age (none yet is not a problem:
    a new site has had no run)."""
    import time

    from ..fleet import Fleet

    repo = require_host(inventory)
    with Fleet(inventory, "backup-check") as fleet:
        out = (
            fleet.remote(repo)
            .run(
                'for t in full diff; do echo "timer $t $(systemctl is-active mmdeploy-backup-$t.timer)"; done\n'
                f'for f in {STATE}/*.last_run {STATE}/*.last_success; do [ -f "$f" ] && echo "$(basename $f) '
                '$(cat $f)"; done\n',
                timeout=30,
                what="read the backup state",
            )
            .stdout
        )
        found = owner_now(inventory, fleet)
    problems = [found.message] if found.other else []
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "timer" and parts[2] != "active":
            problems.append(f"timer mmdeploy-backup-{parts[1]} is {parts[2]}")
        elif parts[0].endswith(".last_run") and len(parts) > 2 and parts[2] != "1":
            problems.append(f"the last {parts[0].split('.')[0]} backup run failed")
        elif parts[0] == "database.last_success":
            age = time.time() - float(parts[1])
            if age > seconds(inventory.settings.backup.max_age):
                problems.append(
                    f"the last good database backup is {age / 3600:.1f} h old "
                    f"(max_age {inventory.settings.backup.max_age})"
                )
    return "; ".join(problems) or None


COMPONENTS = [BackupAgent(), Backup(), BackupRepository()]
