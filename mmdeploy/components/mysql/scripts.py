"""Scripts shared by deploy, failover and rejoin. The replication password is read on
the host from a root-only client file, so it never travels on a command line."""

from __future__ import annotations

import shlex

from ...inventory import Host
from .flavor import FENCED, REPLICATION_CNF, Flavor, _user_schemas_sql

# A dump and load copies the whole database: hours on a large site, not minutes.
SEED_TIMEOUT = 6 * 3600

# Reads the replication password from the root-only client file into an SQL literal, so it
# goes to the server on stdin and never on a command line. The file is read by the client
# library's own option-file reader (my_print_defaults), so its quoting and escapes are
# undone exactly as the clients undo them (Oracle MySQL masks a password as ***** unless
# asked with --show, which MariaDB's does not know); then backslashes and quotes are
# doubled for the SQL literal.
_PASSWORD = f"""pw=$(my_print_defaults --defaults-file={REPLICATION_CNF} client | sed -n 's/^--password=//p')
if [ "$pw" = '*****' ]; then
  pw=$(my_print_defaults --defaults-file={REPLICATION_CNF} --show client | sed -n 's/^--password=//p')
fi
[ -n "$pw" ] || {{ echo "no replication password in {REPLICATION_CNF}" >&2; exit 1; }}
pw=${{pw//\\\\/\\\\\\\\}}; pw=${{pw//\\'/\\'\\'}}
"""


def follow_script(flavor: Flavor, primary: Host, keep_position: bool) -> str:
    return (
        f"set -e\n{_PASSWORD}mysql --protocol=socket <<SQL\n"
        f"{flavor.follow(primary.private_address, chr(39) + '$pw' + chr(39), keep_position)}\nSQL\n"
    )


def seed_script(flavor: Flavor, primary: Host, series: str) -> str:
    """Replace this node's data with a dump of the primary and start it as a replica. The
    dump goes to a file first: nothing is dropped before a complete copy is here."""
    cnf = "$cnf"
    drop = (
        f"mysql --protocol=socket -NB -e {shlex.quote(_user_schemas_sql())} | while read -r db; do\n"
        '  mysql --protocol=socket -e "SET SESSION sql_log_bin = 0; DROP DATABASE \\`$db\\`;"\n'
        "done\n"
    )
    return f"""\
set -e
umask 077
cnf=$(mktemp); dump=$(mktemp /var/tmp/mmdeploy-seed.XXXXXX)
trap 'rm -f "$cnf" "$dump"' EXIT
{{ cat {REPLICATION_CNF}; echo 'host={primary.private_address}'; }} > "$cnf"
{flavor.dump_command(cnf)} > "$dump"
mysql --protocol=socket <<'SQL'
{flavor.stop_replica}
{flavor.reset_replica}
{flavor.read_only()}
{flavor.semi_sync_source(False)}
{flavor.reset_binlog(series)}
SQL
{drop}{{ echo 'SET SESSION sql_log_bin = 0;'; cat "$dump"; }} | mysql --protocol=socket
{_PASSWORD}mysql --protocol=socket <<SQL
{flavor.change_source(primary.private_address, chr(39) + "$pw" + chr(39))}
{flavor.start_replica}
SQL
"""


def fence_script(flavor: Flavor, by: str) -> str:
    """Mark this node fenced; kill clients, make it read-only (which waits for commits in
    flight), kill what slipped in. Replication streams stay, so replicas still receive
    everything committed. Run with `set -e`."""
    kill = (
        f"mysql --protocol=socket -NB -e {shlex.quote(flavor.kill_clients_sql())} "
        "| mysql --protocol=socket -f 2>/dev/null || true\n"
    )
    return f"""\
echo "fenced by {by} at $(date -Is)" > {FENCED}
{kill}mysql --protocol=socket <<'SQL'
SET SESSION lock_wait_timeout = 10;
{flavor.read_only()}
SQL
{kill}test "$(mysql --protocol=socket -NB -e 'SELECT @@global.read_only')" = 1
"""


def primary_known_script(flavor: Flavor, primary: Host) -> str:
    """Read the primary's GTID history from this node, with the replication account."""
    query = (
        "SELECT @@global.gtid_binlog_state, @@global.gtid_slave_pos, @@global.gtid_current_pos"
        if flavor.mariadb
        else "SELECT REPLACE(@@global.gtid_executed, '\\n', '')"
    )
    return f"mysql --defaults-extra-file={REPLICATION_CNF} --host={primary.private_address} -NB -e {shlex.quote(query)}"
