"""PostgreSQL's part of backups: pgBackRest (Debian's 2.45) with a dedicated repository
host (the backup host), continuous WAL archiving from whichever DB node is the primary,
full and differential backups, and point-in-time restore.

The repository host reaches every DB node as `postgres` over SSH (to back up from the
primary it finds among them); each DB node reaches the repository host as `pgbackrest`
(archive-push, and restore). Pure rendering and scripts: components/backup.py installs
them, mmdeploy/backups.py runs them.
"""

from __future__ import annotations

import json
import shlex

from ...inventory import Host
from .config import FENCED, Paths

STANZA = "mattermost"
REPO_USER = "pgbackrest"
REPO_HOME = "/var/lib/pgbackrest"  # the repository user's home (its SSH key)
CONF = "/etc/pgbackrest.conf"
ARCHIVE_CONF = "mmdeploy-backup.conf"  # in the cluster's conf.d
LOG_DIR = "/var/log/pgbackrest"
# WAL is archived at least this often while the site writes: the newest point a restore
# can reach without the primary.
ARCHIVE_TIMEOUT = 60


def archive_conf() -> str:
    return (
        "# Managed by mmdeploy (components/backup.py): continuous WAL archiving to the pgBackRest\n"
        "# repository on the backup host (active on the primary only).\n"
        "archive_mode = on\n"
        f"archive_command = 'pgbackrest --stanza={STANZA} archive-push %p'\n"
        f"archive_timeout = {ARCHIVE_TIMEOUT}\n"
    )


def db_conf(db: Host, repo: Host, p: Paths) -> str:
    """/etc/pgbackrest.conf on a DB node (its PostgreSQL at `p`): where the repository is."""
    return f"""\
# Managed by mmdeploy (components/backup.py): this node's side of pgBackRest.
[global]
repo1-host={repo.private_address}
repo1-host-user={REPO_USER}
log-level-console=warn
log-level-file=info
log-path={LOG_DIR}

[{STANZA}]
pg1-path={p.data}
pg1-port=5432
"""


def repo_conf(
    repo: Host,
    dbs: list[Host],
    settings,
    s3_keys: tuple[str, str] | None = None,
    *,
    versions: dict[str, str],
    s3=None,
    ca_file: str | None = None,
) -> str:
    """/etc/pgbackrest.conf on the backup host: the repository (a directory there, or an
    S3 bucket: `s3`, default settings.backup.s3, its TLS certificate checked against
    `ca_file` when given), the retention, and every DB node (pgBackRest backs up from the
    primary it finds among them)."""
    b = settings.backup
    lines = ["# Managed by mmdeploy (components/backup.py): the pgBackRest repository.", "[global]"]
    if b.repository == "s3":
        s3 = s3 or b.s3
        access, secret = s3_keys or ("", "")
        endpoint, _, port = s3.endpoint.partition(":")
        lines += [
            "repo1-type=s3",
            f"repo1-path={s3.path}",
            f"repo1-s3-bucket={s3.bucket}",
            f"repo1-s3-endpoint={endpoint}",
            f"repo1-s3-region={s3.region}",
            f"repo1-s3-uri-style={s3.uri_style}",
            f"repo1-s3-key={access}",
            f"repo1-s3-key-secret={secret}",
            f"repo1-storage-verify-tls={'y' if s3.verify_tls else 'n'}",
        ]
        if port:
            lines.append(f"repo1-storage-port={port}")
        if ca_file:
            lines.append(f"repo1-storage-ca-file={ca_file}")
    else:
        lines.append(f"repo1-path={b.path}/pgbackrest")
    lines += [
        f"repo1-retention-full={b.retention_full}",
        f"repo1-retention-diff={b.retention_diff}",
        "start-fast=y",
        "compress-type=zst",
        "process-max=2",
        "log-level-console=info",
        "log-level-file=info",
        f"log-path={LOG_DIR}",
        "",
        f"[{STANZA}]",
    ]
    for i, db in enumerate(dbs, start=1):
        p = Paths(versions[db.name])
        lines += [
            f"pg{i}-host={db.private_address}",
            f"pg{i}-host-user=postgres",
            f"pg{i}-path={p.data}",
            f"pg{i}-port=5432",
        ]
    return "\n".join(lines) + "\n"


def as_repo(command: str) -> str:
    return f"cd /tmp && runuser -u {REPO_USER} -- pgbackrest --stanza={STANZA} {command}"


def stanza_ready() -> str:
    """Succeeds when the stanza exists in the repository (status 0 ok, or 2: no backup yet)."""
    return f"{as_repo('info --output=json')} | jq -e '.[0].status.code == 0 or .[0].status.code == 2' >/dev/null"


def stanza_create() -> str:
    return (
        f"set -e\n{as_repo('stanza-create')}\n"
        # Proves the whole path: the primary archives a WAL segment into the repository.
        f"{as_repo('check')}\n"
    )


def backup_command(kind: str) -> str:
    return as_repo(f"--type={kind} backup")


def info_command() -> str:
    return as_repo("info --output=json")


def parse_info(text: str) -> list[dict]:
    """pgBackRest's `info --output=json` as [{label, type, start, stop, size, repo_size}], oldest first."""
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    out = []
    for stanza in data:
        for b in stanza.get("backup", []):
            info = b.get("info", {})
            out.append(
                {
                    "label": b.get("label"),
                    "type": b.get("type"),
                    "start": b.get("timestamp", {}).get("start"),
                    "stop": b.get("timestamp", {}).get("stop"),
                    "size": info.get("size"),
                    "repo_size": info.get("repository", {}).get("delta"),
                }
            )
    return out


def switch_wal_script(timeout: int = 60) -> str:
    """On the primary before a restore: close the current WAL segment and wait until it is
    archived, so that a restore can reach the last moments before the problem."""
    return f"""\
set -e
cd /tmp
seg=$(runuser -u postgres -- psql -XAtq -c "select pg_walfile_name(pg_switch_wal())")
end=$((SECONDS + {timeout}))
until [ "$(runuser -u postgres -- psql -XAtq -c "select coalesce(last_archived_wal >= '$seg', false) from pg_stat_archiver")" = t ]; do
  [ $SECONDS -lt $end ] || {{ echo "WAL segment $seg was not archived within {timeout} s" >&2; exit 1; }}
  sleep 0.5
done
echo "archived up to $seg"
"""


def restore_script(p: Paths, to_time: str | None, backup_set: str | None = None) -> str:
    """On the target DB node, its server stopped: restore the data directory from the
    repository (the newest backup before the target, then the archived WAL up to `to_time`
    or to the end), then start it as the primary.

    The WAL is followed along the newest timeline (a failover after the backup is then
    crossed). A target that lies before the branch of a later timeline (a moment before an
    earlier restore) is not on it: PostgreSQL then stops with "recovery ended before
    configured recovery target was reached", and the restore is made again along the
    backup's own timeline."""
    target_time_label = to_time or "the end of the archive"
    target = f" --type=time --target={shlex.quote(to_time)} --target-action=promote" if to_time else " --type=default"
    if backup_set:
        target += f" --set={shlex.quote(backup_set)}"
    log = f"/var/log/postgresql/postgresql-{p.version}-main.log"
    return f"""\
set -e
cd /tmp
systemctl unmask {p.unit} 2>/dev/null || true
rm -f {p.data}/standby.signal {FENCED}
attempt() {{  # $1: more pgbackrest options
  runuser -u postgres -- pgbackrest --stanza={STANZA} --delta{target} $1 restore || {{
    echo "pgbackrest restore failed" >&2; exit 1; }}
  systemctl start {p.unit} || true
  local end=$((SECONDS + 600))
  until [ "$(runuser -u postgres -- psql -XAtq -c 'select not pg_is_in_recovery()' 2>/dev/null)" = t ]; do
    systemctl is-active {p.unit} >/dev/null || return 1
    [ $SECONDS -lt $end ] || {{ echo "the restored server did not finish recovery within 600 s" >&2; exit 1; }}
    sleep 1
  done
}}
if ! attempt ""; then
  if [ -n {shlex.quote(to_time or "")} ] && tail -n 100 {log} | grep -F "recovery ended before configured recovery target was reached" >/dev/null; then
    echo "{target_time_label} is not on the newest timeline: restoring along the backup's own timeline"
    timeout 60 systemctl stop {p.unit} || true
    attempt "--target-timeline=current" || {{ echo "the restored server stopped (see {log})" >&2; exit 1; }}
  else
    echo "the restored server stopped (see {log})" >&2; exit 1
  fi
fi
# A DROP DATABASE marks the database invalid before its commit, outside any transaction:
# a target time between that mark and the next commit replays the mark.
invalid=$(runuser -u postgres -- psql -XAtq -c "select string_agg(datname, ', ') from pg_database where datconnlimit = -2")
if [ -n "$invalid" ]; then
  echo "at {target_time_label} the database(s) $invalid were being dropped (PostgreSQL replays the first, \
non-transactional step of DROP DATABASE up to the next commit): restore to an earlier moment" >&2
  exit 1
fi
# pgBackRest wrote the recovery settings into postgresql.auto.conf: a replica copied from this
# node (pg_basebackup, pg_rewind) would take them along and promote itself at the target.
runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
ALTER SYSTEM RESET restore_command;
ALTER SYSTEM RESET recovery_target_time;
ALTER SYSTEM RESET recovery_target_action;
ALTER SYSTEM RESET recovery_target_timeline;
ALTER SYSTEM RESET recovery_target_inclusive;
SELECT pg_reload_conf();
SQL
echo "restored and promoted"
"""


def info_as_postgres() -> str:
    """The repository's backups, read from a DB node (which reaches the repository host)."""
    return f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={STANZA} info --output=json"


def histories_script(first: int, extra: int = 3) -> str:
    """The timeline history files from `first` up (and a few beyond, in case the newest
    timeline has archived no segment yet), each as '== N' then its lines."""
    return f"""\
cd /tmp
d=$(runuser -u postgres -- mktemp -d); trap 'rm -rf "$d"' EXIT
for n in $(seq {first} {first + extra}); do
  h=$(printf '%08X.history' "$n")
  if runuser -u postgres -- pgbackrest --stanza={STANZA} archive-get "$h" "$d/$h" >/dev/null 2>&1; then
    echo "== $n"; cat "$d/$h"
  fi
done
"""


def choose_backup(info_json: str, histories: str, target_epoch: float | None) -> tuple[str | None, str]:
    """The backup a restore must start from: the newest that finished before the target
    and lies on the timeline the site lives on now (the newest), i.e. on it or on one of
    its ancestors before the point it branched off. pgBackRest 2.45 picks by time alone, so
    after an earlier point-in-time restore it may pick a backup of an abandoned timeline,
    from which the newest timeline cannot be reached. Returns (label, why)."""
    from .probe import lsn

    data = json.loads(info_json or "[]")
    backups = [b for stanza in data for b in stanza.get("backup", [])]
    if not backups:
        return None, "the repository holds no backup"
    tli_of = lambda segment: int(segment[:8], 16)  # noqa: E731
    latest = max(tli_of(a["max"]) for stanza in data for a in stanza.get("archive", []) if a.get("max"))
    blocks: dict[int, list[str]] = {}
    for line in histories.splitlines():
        if line.startswith("== "):
            blocks[int(line[3:])] = []
        elif blocks:
            blocks[max(blocks)].append(line)
    latest = max([latest, *blocks])
    # Where each ancestor of the newest timeline ended (its own history file lists them all).
    ends = {
        int(parts[0]): lsn(parts[1])
        for parts in (line.split() for line in blocks.get(latest, []))
        if len(parts) >= 2 and parts[0].isdigit()
    }

    def on_lineage(b: dict) -> bool:
        tli, start = tli_of(b["archive"]["start"]), lsn(b["lsn"]["start"])
        end = ends.get(tli)
        return tli == latest or (start is not None and end is not None and start < end)

    usable = [b for b in backups if on_lineage(b) and (target_epoch is None or b["timestamp"]["stop"] <= target_epoch)]
    if not usable:
        return None, (
            f"no backup finished before the target on timeline {latest}'s history "
            f"({len(backups)} backup(s) in the repository)"
        )
    best = max(usable, key=lambda b: b["timestamp"]["stop"])
    skipped = [b["label"] for b in backups if not on_lineage(b)]
    return best["label"], (
        f"backup {best['label']} on timeline {latest}'s history"
        + (f" (not {', '.join(skipped)}: an abandoned timeline)" if skipped else "")
    )
