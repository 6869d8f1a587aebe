"""The dbtier Engine for PostgreSQL streaming replication."""

from __future__ import annotations

import shlex
from typing import Mapping

from ...dbtier import NodeState
from ...errors import MMDeployError
from ...facts import HOST_FACTS, Fact
from ...inventory import Host
from ...passwords import postgres_matches
from ...remote import Remote
from ...step import run_checked
from .config import DATABASE, FENCED, Paths, conninfo, paths
from .probe import parse_probe, probe
from .scripts import SEED_TIMEOUT, psql, seed_script, slots_sql, stop_script, write_topology


ACCOUNTS_PROBE = (
    "runuser -u postgres -- psql -XAtq -F ' ' -c "
    "\"select rolname, coalesce(rolpassword, '-') from pg_authid where rolcanlogin\""
)


class PGEngine:
    """dbtier.Engine for PostgreSQL streaming replication."""

    name = "postgresql"
    label = "PostgreSQL"
    port = 5432

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}  # host -> the version its probe found

    def account_probe(self) -> str:
        """Read-only: every login role and its stored verifier (never logged: a fact)."""
        return ACCOUNTS_PROBE

    def account_matches(self, fact: Fact, user: str, client: str | None, password: str) -> bool | None:
        """Whether role `user` has `password` (None: no such role). `client` is unused:
        a PostgreSQL role is the same from every address."""
        for line in fact.out.splitlines():
            name, _, verifier = line.partition(" ")
            if name == user:
                return postgres_matches(verifier, user, password)
        return None

    # Mattermost's schema version (X.Y.0), kept in its Systems table.
    schema_version_sql = "select value from systems where name = 'Version'"

    def app_query(self, sql: str) -> str:
        """A script that runs `sql` on Mattermost's database as the superuser, on the
        host; rows come back tab-separated, without headers."""
        return (
            f"cd /tmp && runuser -u postgres -- psql -XAtq -F $'\\t' -v ON_ERROR_STOP=1 -d {DATABASE} "
            f"<<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"
        )

    def probe(self, host: Host) -> list[str]:
        return [probe(host)]

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState:
        state = parse_probe(host, facts[probe(host)])
        if state.extra.get("version"):
            self._versions[host.name] = state.extra["version"]
        return state

    def _paths(self, remote: Remote) -> Paths:
        """The host's paths: its version as its probe found it, else from its os-release."""
        host = remote.host
        if host.name in self._versions and not host.settings.database.postgresql_version:
            return Paths(self._versions[host.name])
        os_fact = None
        if not host.settings.database.postgresql_version:
            os_fact = run_checked(remote, HOST_FACTS["os"], f"read {host.name}'s distribution", timeout=30).stdout
        return paths(host, os_fact)

    def fence(self, remote: Remote) -> None:
        # A fast shutdown cuts every client and first streams all WAL (up to the shutdown
        # checkpoint) to the replicas; masked, it cannot come back as a writer. Stopped
        # rather than restarted read-only: a standby restart of a just-promoted node can
        # leave its control file on an old timeline, which pg_rewind then misreads.
        self.stop_and_mask(remote)

    def stop_and_mask(self, remote: Remote) -> None:
        p = self._paths(remote)
        run_checked(
            remote,
            f"""\
set -e
echo "fenced (stopped) by mmdeploy failover-db at $(date -Is)" > {FENCED}
{stop_script(p.unit)}
if [ -f {p.data}/PG_VERSION ]; then touch {p.data}/standby.signal; chown postgres:postgres {p.data}/standby.signal; fi
systemctl mask {p.unit}
""",
            f"stop and mask {remote.host.name}",
        )

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        known = [s for s in replicas if s.received is not None]
        if not known:
            raise MMDeployError("no replica reports a WAL position: cannot tell which one is most advanced")
        best = max(s.received for s in known)
        return next(s for s in known if s.received == best)  # ties: inventory order

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None:
        run_checked(
            remote,
            f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(runuser -u postgres -- psql -XAtq -c \\
  "select coalesce(pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), true)")" = t ]; do
  [ $SECONDS -lt $end ] || {{ echo "replay did not catch up with received WAL in {int(timeout)} s" >&2; exit 1; }}
  sleep 0.05
done
""",
            f"wait for {remote.host.name} to apply its WAL",
            timeout=timeout + 10,
        )

    def promote(self, remote: Remote, node: NodeState) -> None:
        out = psql(remote, "select pg_promote(true, 60);", f"promote {remote.host.name}")
        if out != "t":
            raise MMDeployError(f"promote {remote.host.name}: pg_promote did not finish in 60 s")
        # Until a checkpoint, the control file still names the old timeline and pg_rewind,
        # reading it as a source, finds the wrong divergence point (see pg_rewind's notes).
        psql(remote, "checkpoint;", f"checkpoint {remote.host.name} after promotion")

    def attach(self, remote: Remote, peers: list[Host], replicas: list[Host]) -> None:
        """Primary side: a slot for every other DB host; commits wait for ANY 1 of `replicas`."""
        write_topology(remote, self._paths(remote), remote.host, replicas)
        psql(remote, slots_sql(peers) + "\nselect pg_reload_conf();", f"slots and sync on {remote.host.name}")

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None:
        # primary_conninfo is reloadable; the replica follows the new timeline by streaming.
        p = self._paths(remote)
        write_topology(remote, p, primary, [])
        run_checked(remote, f"systemctl reload {p.unit}", f"re-point {remote.host.name}")

    def wait_streaming(self, remote: Remote, timeout: float) -> bool:
        result = remote.run(
            f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(runuser -u postgres -- psql -XAtq -c "select status from pg_stat_wal_receiver")" = streaming ]; do
  [ $SECONDS -lt $end ] || exit 1
  sleep 0.1
done
""",
            timeout=timeout + 10,
            what="wait for streaming",
        )
        return result.ok

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        p = self._paths(remote)
        source = shlex.quote(conninfo(primary, dbname="postgres"))
        # Stopped with its own unit (a fast shutdown; once masked, systemd would only send
        # SIGTERM, a smart shutdown that waits for every client), then masked while it is
        # rewound, so nothing starts it as a writer; standby.signal only after the rewind (a
        # crashed node's recovery runs in single-user mode, which refuses standby mode).
        result = remote.run(
            f"""\
set -e
{stop_script(p.unit)}
systemctl mask {p.unit}
case "$(runuser -u postgres -- {p.bin}/pg_controldata -D {p.data} | sed -n 's/^Database cluster state: *//p')" in
  "shut down"|"shut down in recovery") ;;
  *) rm -f {p.data}/standby.signal ;;
esac
cd /tmp  # runuser keeps root's working directory, which postgres cannot enter
runuser -u postgres -- {p.bin}/pg_rewind -D {p.data} --config-file={p.conf}/postgresql.conf --source-server={source}
""",
            timeout=SEED_TIMEOUT,
            what="pg_rewind",
        )
        write_topology(remote, p, primary, [])
        if not result.ok:  # e.g. the WAL it needs is gone: a fresh copy (pg_rewind's output is in the log)
            run_checked(
                remote,
                seed_script(p, primary, remote.host),
                f"re-seed {remote.host.name} (pg_rewind failed)",
                timeout=SEED_TIMEOUT,
            )
        else:
            run_checked(
                remote,
                f"""\
set -e
rm -rf {p.data}/pg_replslot/*
touch {p.data}/standby.signal && chown postgres:postgres {p.data}/standby.signal
rm -f {FENCED}
systemctl unmask {p.unit}
systemctl start {p.unit}
""",
                f"start {remote.host.name} as a replica",
            )
        if not self.wait_streaming(remote, 60):
            raise MMDeployError(f"{remote.host.name} was rejoined but does not stream from {primary.name}")
