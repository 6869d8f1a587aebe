"""Scripts shared by deploy, failover and rejoin."""

from __future__ import annotations

import shlex

from ...dbtier.component import DB_MONITORING_PASSWORD, DB_PASSWORD, DB_REPLICATION_PASSWORD
from ...inventory import Host
from ...ops import SQL, File
from ...remote import Remote
from ...step import Change, run_checked
from .config import DATABASE, FENCED, REPLICATION_USER, TOPOLOGY, USER, Paths, conninfo, slot_name, topology_conf

# A base backup copies the whole database: hours on a large site, not minutes.
SEED_TIMEOUT = 6 * 3600


def seed_script(p: Paths, primary: Host, replica: Host) -> str:
    """Replace this node's data with a base backup of the primary and start it as a replica."""
    source = shlex.quote(conninfo(primary))
    return f"""\
set -e
{stop_script(p.unit)}
find {p.data} -mindepth 1 -delete
runuser -u postgres -- {p.bin}/pg_basebackup -d {source} -D {p.data} -X stream -S {slot_name(replica)} --checkpoint=fast -w
touch {p.data}/standby.signal && chown postgres:postgres {p.data}/standby.signal
rm -f {FENCED}
systemctl unmask {p.unit}
systemctl start {p.unit}
"""


def write_topology(remote: Remote, p: Paths, primary: Host, replicas: list[Host]) -> None:
    host = remote.host
    File(
        f"{p.conf}/conf.d/{TOPOLOGY}", topology_conf(host, primary, replicas), owner="postgres", group="postgres"
    ).apply(remote, Change("update"))


def psql(remote: Remote, sql: str, what: str) -> str:
    script = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"
    return run_checked(remote, script, what).stdout.strip()


def slots_sql(peers: list[Host]) -> str:
    return "\n".join(
        f"select pg_create_physical_replication_slot('{slot_name(h)}', true) where not exists "
        f"(select 1 from pg_replication_slots where slot_name = '{slot_name(h)}');"
        for h in peers
    )


def role_steps(ctx, on_replica: str = "fail") -> list[SQL]:
    """The database's roles and the database itself, on the primary. With
    on_replica="skip" (Patroni: every node gets these steps, and which one leads is known
    only when they run) a node in recovery has nothing to do: the leader's roles reach it
    by replication."""
    monitor = ctx.settings.monitoring.db_user
    repl_password = ctx.secrets.get(DB_REPLICATION_PASSWORD)
    password, monitor_password = ctx.secrets.get(DB_PASSWORD), ctx.secrets.get(DB_MONITORING_PASSWORD)

    def guard(query: str) -> str:
        return f"select 1 where pg_is_in_recovery() or exists ({query})" if on_replica == "skip" else query

    return [
        SQL(
            f"role {REPLICATION_USER}",
            "postgresql",
            f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD '{quote(repl_password)}';\n"
            # pg_rewind reads the new primary's files through these, without superuser.
            + "".join(
                f"GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {REPLICATION_USER};\n"
                for f in (
                    "pg_ls_dir(text, boolean, boolean)",
                    "pg_stat_file(text, boolean)",
                    "pg_read_binary_file(text)",
                    "pg_read_binary_file(text, bigint, bigint, boolean)",
                )
            ),
            guard=guard(f"select 1 from pg_roles where rolname = '{REPLICATION_USER}'"),
        ),
        SQL(
            f"role {USER}",
            "postgresql",
            f"CREATE ROLE {USER} WITH LOGIN PASSWORD '{quote(password)}';",
            guard=guard(f"select 1 from pg_roles where rolname = '{USER}'"),
        ),
        SQL(
            f"database {DATABASE}",
            "postgresql",
            f"CREATE DATABASE {DATABASE} OWNER {USER} ENCODING 'UTF8' TEMPLATE template0;",
            guard=guard(f"select 1 from pg_database where datname = '{DATABASE}'"),
        ),
        # The postgres exporter's login: read-only statistics.
        SQL(
            f"role {monitor}",
            "postgresql",
            f"CREATE ROLE {monitor} WITH LOGIN PASSWORD '{quote(monitor_password)}';\nGRANT pg_monitor TO {monitor};",
            guard=guard(f"select 1 from pg_roles where rolname = '{monitor}'"),
        ),
    ]


def stop_script(unit: str, within: int = 60) -> str:
    """Stop the server with its unit (pg_ctlcluster's fast shutdown); if that does not end
    within `within` seconds (a backend stuck on a dead client), kill it: what it held is
    on the replicas already, and a killed node recovers (or is rewound) on start."""
    return (
        f"if ! timeout {within} systemctl stop {unit}; then\n"
        f"  echo '{unit} did not stop within {within} s: killed' >&2\n"
        f"  systemctl kill --signal=SIGKILL {unit} || true\n"
        f"  timeout 30 systemctl stop {unit}\n"
        "fi"
    )


def quote(value: str) -> str:
    """An SQL string literal's body."""
    return value.replace("'", "''")
