"""Whose backups pgBackRest's stanza holds: this cluster's, none yet, or another cluster's
(the DB hosts were lost and deployed afresh onto new machines, so their cluster is a new
one while the repository keeps the old one's backups and WAL). Pure: the facts are read by
components/backup.py (deploy, verify) and mmdeploy/backups.py (restore).

pgBackRest itself refuses WAL and backups of another cluster (its system identifier is
checked on every archive-push and backup), so nothing is ever mixed into the stanza; what
mmdeploy adds is never creating, upgrading or overwriting a stanza that belongs to
another cluster, and saying what to do: `inv restore` makes the new hosts the old cluster
again, after which archiving resumes by itself (the fresh cluster's WAL stays in its
pg_wal until then, and goes with the restore).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

# The cluster's identity, on a primary or a replica (a replica has its primary's).
SYSTEM_ID = "cd /tmp && runuser -u postgres -- psql -XAtq -c 'select system_identifier from pg_control_system()'"


@dataclass(frozen=True)
class Owner:
    kind: str  # none (no stanza or no cluster data yet) | ours | other
    repository: int | None  # the stanza's current system identifier
    cluster: int | None  # the DB hosts' system identifier
    message: str

    @property
    def other(self) -> bool:
        return self.kind == "other"


def initdb_time(system_id: int) -> int:
    """When a cluster was made (initdb): PostgreSQL builds the system identifier from that
    time's seconds in its high 32 bits."""
    return system_id >> 32


def stanza_system_id(info_json: str) -> int | None:
    """The system identifier of the cluster the stanza is for now (`info --output=json`)."""
    try:
        data = json.loads(info_json or "[]")
    except ValueError:
        return None
    for stanza in data if isinstance(data, list) else []:
        dbs = [d for d in stanza.get("db") or [] if d.get("system-id") is not None]
        if dbs:  # a stanza-upgrade adds the next id: the newest is the current one
            return int(max(dbs, key=lambda d: d.get("id", 0))["system-id"])
    return None


def owner(info_json: str, cluster_ids: dict[str, str], repo: str = "the backup repository") -> Owner:
    """Compare the stanza with the DB hosts' answers to SYSTEM_ID (host -> output; a host
    that did not answer, or whose server is down, gives an empty one)."""
    stanza = stanza_system_id(info_json)
    ids = {int(v.strip()) for v in cluster_ids.values() if v.strip().isdigit()}
    if stanza is None or not ids:
        return Owner("none", stanza, None, "")
    if stanza in ids:
        return Owner("ours", stanza, stanza, "")
    cluster = min(ids)  # several means a tier already split: any of them differs from the stanza
    return Owner(
        "other",
        stanza,
        cluster,
        f"{repo} holds the backups of another PostgreSQL cluster (system identifier {stanza}; the DB hosts "
        f"run {cluster}, a new one): left as it is, and WAL archiving and backups stay refused until "
        "`inv restore` brings that cluster back onto the DB hosts (disaster recovery; README, Backups)",
    )


def archive_id(info_json: str) -> str | None:
    """The stanza's current WAL archive (e.g. "15-1"), from `info --output=json`."""
    try:
        data = json.loads(info_json or "[]")
    except ValueError:
        return None
    ids = [a["id"] for stanza in data for a in stanza.get("archive", []) if a.get("id")]
    return ids[-1] if ids else None


def histories_script(archive: str) -> str:
    """On the backup host: every timeline history file of the archive, each as '== N' then
    its lines (as backup.histories_script prints them). Read from the repository itself:
    archive-get on a DB host refuses while that host runs another cluster."""
    from .backup import STANZA, as_repo

    where = shlex.quote(f"archive/{STANZA}/{archive}")
    return f"""\
set -e
for h in $({as_repo(f"repo-ls {where} --filter='[.]history$'")}); do
  echo "== $((16#${{h%.history}}))"
  {as_repo(f'repo-get {where}/"$h"')}
done
"""
