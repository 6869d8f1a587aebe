"""The two flavors' SQL (MariaDB, Oracle MySQL), in one place: statements, privileges,
guards and the node probe."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from ...distros import Distro

DATABASE, USER, REPLICATION_USER = "mattermost", "mmuser", "mmrepl"
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
REPLICATION_CNF = "/etc/mysql/mmdeploy-replication.cnf"
# Outside the data directory, so a re-seed keeps it; removed by db.rejoin only.
FENCED = "/etc/mysql/mmdeploy-fenced"
EPOCH_SCHEMA = "mmdeploy"
PROMOTIONS = f"`{EPOCH_SCHEMA}`.`promotions`"
# What Mattermost's schema migrations and queries use, on its own database only.
APP_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "REFERENCES",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EXECUTE",
    "TRIGGER",
)
# Mattermost's SqlSettings.MaxOpenConns default, per app or job server.
CONNECTIONS_PER_CLIENT = 300


def _lit(value: str) -> str:
    """An SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def account(user: str, host: str) -> str:
    return f"{_lit(user)}@{_lit(host)}"


def client_host(address: str) -> str:
    """An inventory address or CIDR as a MySQL account host ('10.0.0.0/255.255.255.0')."""
    if "/" not in address:
        return address
    net = ipaddress.ip_network(address, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else f"{net.network_address}/{net.netmask}"


@dataclass(frozen=True)
class Flavor:
    name: str  # "mariadb" | "mysql"
    service: str
    conf_path: str
    dump: str  # the dump client
    # Replica vocabulary: MariaDB keeps the SLAVE statements; Oracle 8.4 removed them.
    replica_status: str
    stop_replica: str
    start_replica: str
    reset_replica: str
    source_key: str  # the upstream's column in the status
    lag_key: str
    io_key: str
    sql_key: str
    semi_source: str  # semi-sync source/master variable and status prefixes
    semi_replica: str
    # Global privileges of the replication user: stream the binlog, and read everything
    # once to seed a replica (the binlog it may stream carries the same data).
    replication_privileges: tuple[str, ...]
    # What the mysqld exporter reads (components/exporters.py), by the names
    # information_schema.user_privileges shows: MariaDB calls REPLICATION CLIENT
    # BINLOG MONITOR, and its SHOW SLAVE STATUS needs SLAVE MONITOR.
    monitoring_privileges: tuple[str, ...]

    @property
    def mariadb(self) -> bool:
        return self.name == "mariadb"

    def packages(self, distro: Distro) -> list[str]:
        # MariaDB: the distribution's own (distros.py). Oracle MySQL: Ubuntu's own packages,
        # or the same names from MySQL's APT repository.
        return list(distro.mariadb_packages) if self.mariadb else ["mysql-server", "mysql-client"]

    # statements

    def read_only(self) -> str:
        # super_read_only keeps even administrative accounts from writing on Oracle MySQL.
        return "SET GLOBAL read_only = ON;" if self.mariadb else "SET GLOBAL super_read_only = ON;"

    def writable(self) -> str:
        return (
            "SET GLOBAL read_only = OFF;"
            if self.mariadb
            else "SET GLOBAL super_read_only = OFF;\nSET GLOBAL read_only = OFF;"
        )

    def semi_sync_source(self, on: bool) -> str:
        return f"SET GLOBAL {self.semi_source}_enabled = {'ON' if on else 'OFF'};"

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"

    def create_user(self, user: str, host: str, password: str) -> str:
        return f"CREATE USER IF NOT EXISTS {account(user, host)} IDENTIFIED BY {_lit(password)};"

    def alter_password(self, user: str, host: str, password: str) -> str:
        return f"ALTER USER {account(user, host)} IDENTIFIED BY {_lit(password)};"

    def source_password_probe(self) -> str:
        """Read-only: the replication password this replica keeps for its source (never
        logged: a fact), hex-encoded; empty when it replicates from nothing."""
        if self.mariadb:  # MariaDB keeps it in master.info, line 6
            return "sed -n 6p /var/lib/mysql/master.info | tr -d '\\n' | od -An -tx1 | tr -d ' \\n'"
        return "mysql --protocol=socket -NB -e 'SELECT HEX(User_password) FROM mysql.slave_master_info'"

    def set_source_password(self, password: str) -> str:
        key = "MASTER_PASSWORD" if self.mariadb else "SOURCE_PASSWORD"
        change = "CHANGE MASTER TO" if self.mariadb else "CHANGE REPLICATION SOURCE TO"
        return f"{self.stop_replica}\n{change} {key}={_lit(password)};\n{self.start_replica}"

    def grant_app(self, host: str) -> str:
        who = account(USER, host)
        return (
            f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
            f"GRANT {', '.join(APP_PRIVILEGES)} ON `{DATABASE}`.* TO {who};"
        )

    def grant_replication(self, host: str) -> str:
        who = account(REPLICATION_USER, host)
        return (
            f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
            f"GRANT {', '.join(self.replication_privileges)} ON *.* TO {who};"
        )

    def grant_monitoring(self, user: str) -> str:
        who = account(user, "localhost")  # the exporter connects through the socket
        return (
            f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
            f"GRANT {', '.join(self.monitoring_privileges)} ON *.* TO {who};"
        )

    def change_source(self, primary: str, password_sql: str) -> str:
        """Point this replica at `primary` with GTID auto-positioning. `password_sql` is an
        SQL literal (or a shell expansion producing one inside a script)."""
        if self.mariadb:
            return (
                f"CHANGE MASTER TO MASTER_HOST={_lit(primary)}, MASTER_PORT=3306, "
                f"MASTER_USER={_lit(REPLICATION_USER)}, MASTER_PASSWORD={password_sql}, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;"
            )
        return (
            f"CHANGE REPLICATION SOURCE TO SOURCE_HOST={_lit(primary)}, SOURCE_PORT=3306, "
            f"SOURCE_USER={_lit(REPLICATION_USER)}, SOURCE_PASSWORD={password_sql}, "
            "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1;"
        )

    def follow(self, primary: str, password_sql: str, keep_position: bool = False) -> str:
        """Become a read-only replica of `primary`. A former primary (keep_position False)
        first takes its own executed GTIDs as its replication position (MariaDB)."""
        position = (
            "" if keep_position or not self.mariadb else "SET GLOBAL gtid_slave_pos = @@global.gtid_current_pos;\n"
        )
        return (
            f"{self.stop_replica}\n{self.read_only()}\n{self.semi_sync_source(False)}\n{position}"
            f"{self.change_source(primary, password_sql)}\n{self.start_replica}"
        )

    def promotions_table(self) -> str:
        """The promotion epochs: replicated, so a node cut off during a failover finds a
        newer epoch on a peer when it is back, and fences itself (mmdeploy-mysql-fence)."""
        return (
            f"CREATE DATABASE IF NOT EXISTS `{EPOCH_SCHEMA}`;\n"
            f"CREATE TABLE IF NOT EXISTS {PROMOTIONS} (epoch INT UNSIGNED PRIMARY KEY, "
            "host VARCHAR(255) NOT NULL, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);"
        )

    def promote(self, semi_sync: bool) -> str:
        """Writable as soon as the applier stops: stopping the receiver can block for
        seconds while it retries a dead primary, and nothing it could still receive is
        applied (the old primary is fenced; the relay log is discarded). Then the next
        promotion epoch (the table is made here too, for a site deployed without it)."""
        thread = self.stop_replica.replace(";", " SQL_THREAD;")
        return (
            f"{thread}\n{self.semi_sync_source(semi_sync)}\n{self.writable()}\n"
            f"{self.promotions_table()}\n"
            f"INSERT INTO {PROMOTIONS} (epoch, host) SELECT COALESCE(MAX(epoch), 0) + 1, @@global.report_host "
            f"FROM {PROMOTIONS};\n"
            f"{self.stop_replica}\n{self.reset_replica}"
        )

    def reset_binlog(self, series: str) -> str:
        # A node about to be seeded forgets its own history, so the seed's GTIDs can apply.
        if self.mariadb or series == "8.0":
            return "RESET MASTER;"
        return "RESET BINARY LOGS AND GTIDS;"

    def dump_command(self, cnf: str) -> str:
        """The seed dump, read from the primary with the replication account."""
        common = f"{self.dump} --defaults-extra-file={cnf} --single-transaction --routines --events --triggers"
        if self.mariadb:
            # Users as CREATE USER IF NOT EXISTS statements; the GTID position goes at the end.
            return (
                f"{common} --gtid --master-data=1 --system=users --insert-ignore --databases $("
                f"mysql --defaults-extra-file={cnf} -NB -e {shlex.quote(_user_schemas_sql())})"
            )
        return f"{common} --source-data=1 --set-gtid-purged=ON --all-databases --flush-privileges"

    def kill_clients_sql(self) -> str:
        """A query whose rows are KILL statements for every client connection: the server's
        own threads, replication streams and this session are kept."""
        return (
            "SELECT CONCAT('KILL ', id, ';') FROM information_schema.processlist "
            "WHERE id <> CONNECTION_ID() AND user NOT IN ('system user', 'event_scheduler') "
            "AND command NOT LIKE 'Binlog Dump%' AND command <> 'Daemon'"
        )

    def probe(self) -> str:
        """One read-only script; `parse_probe` reads its output."""
        common = [
            "SELECT 'read_only', @@global.read_only",
            f"SELECT 'user_schemas', COUNT(*) FROM information_schema.schemata WHERE {_user_schemas_where()}",
            "SELECT 'replica_client', SUBSTRING_INDEX(host, ':', 1) FROM information_schema.processlist "
            "WHERE command LIKE 'Binlog Dump%'",
            f"SHOW GLOBAL STATUS WHERE variable_name IN ('{self.semi_source}_status', '{self.semi_replica}_status', "
            f"'{self.semi_source}_clients')",
        ]
        if self.mariadb:
            common += [
                "SELECT 'gtid_current_pos', @@global.gtid_current_pos",
                "SELECT 'gtid_binlog_state', @@global.gtid_binlog_state",
                "SELECT 'gtid_slave_pos', @@global.gtid_slave_pos",
            ]
        else:
            common += [
                "SELECT 'super_read_only', @@global.super_read_only",
                "SELECT 'gtid_executed', REPLACE(@@global.gtid_executed, '\\n', '')",
            ]
        queries = ";\n".join(common) + ";"
        return (
            f'echo "fenced=$(test -f {FENCED} && echo 1 || echo 0)"\n'
            f'echo "unit=$(systemctl is-enabled {self.service} 2>/dev/null)/'
            f'$(systemctl is-active {self.service} 2>/dev/null)"\n'
            f"mysql --protocol=socket -NB <<'SQL' | sed 's/\\t/=/'\n{queries}\nSQL\n"
            f"echo '[replication]'\nmysql --protocol=socket -e '{self.replica_status}\\G'\n"
        )


MARIADB = Flavor(
    name="mariadb",
    service="mariadb",
    conf_path="/etc/mysql/mariadb.conf.d/90-mmdeploy.cnf",
    dump="mariadb-dump",
    replica_status="SHOW SLAVE STATUS",
    stop_replica="STOP SLAVE;",
    start_replica="START SLAVE;",
    reset_replica="RESET SLAVE ALL;",
    source_key="Master_Host",
    lag_key="Seconds_Behind_Master",
    io_key="Slave_IO_Running",
    sql_key="Slave_SQL_Running",
    semi_source="rpl_semi_sync_master",
    semi_replica="rpl_semi_sync_slave",
    replication_privileges=(
        "SELECT",
        "RELOAD",
        "LOCK TABLES",
        "REPLICATION SLAVE",
        "BINLOG MONITOR",
        "SHOW VIEW",
        "EVENT",
        "TRIGGER",
    ),
    monitoring_privileges=("PROCESS", "BINLOG MONITOR", "SLAVE MONITOR", "SELECT"),
)
ORACLE = Flavor(
    name="mysql",
    service="mysql",
    conf_path="/etc/mysql/mysql.conf.d/90-mmdeploy.cnf",
    dump="mysqldump",
    replica_status="SHOW REPLICA STATUS",
    stop_replica="STOP REPLICA;",
    start_replica="START REPLICA;",
    reset_replica="RESET REPLICA ALL;",
    source_key="Source_Host",
    lag_key="Seconds_Behind_Source",
    io_key="Replica_IO_Running",
    sql_key="Replica_SQL_Running",
    semi_source="rpl_semi_sync_source",
    semi_replica="rpl_semi_sync_replica",
    replication_privileges=(
        "SELECT",
        "RELOAD",
        "LOCK TABLES",
        "REPLICATION SLAVE",
        "REPLICATION CLIENT",
        "SHOW VIEW",
        "EVENT",
        "TRIGGER",
    ),
    monitoring_privileges=("PROCESS", "REPLICATION CLIENT", "SELECT"),
)
FLAVORS = {f.name: f for f in (MARIADB, ORACLE)}


def _user_schemas_where() -> str:
    return "schema_name NOT IN (" + ", ".join(_lit(s) for s in SYSTEM_SCHEMAS) + ")"


def _user_schemas_sql() -> str:
    return f"SELECT schema_name FROM information_schema.schemata WHERE {_user_schemas_where()}"


def privileges_guard(user: str, host: str, privileges: tuple[str, ...], schema: str | None) -> str:
    """A query that returns a row when the account holds exactly `privileges`."""
    grantee = _lit(f"'{user}'@'{host}'")
    table, scope = ("schema_privileges", f" AND table_schema = {_lit(schema)}") if schema else ("user_privileges", "")
    wanted = ", ".join(_lit(p) for p in privileges)
    return (
        f"SELECT 1 FROM information_schema.{table} WHERE grantee = {grantee}{scope} "
        f"HAVING COUNT(*) = {len(privileges)} AND SUM(privilege_type IN ({wanted})) = {len(privileges)}"
    )


def user_guard(user: str, host: str) -> str:
    return f"SELECT 1 FROM mysql.user WHERE user = {_lit(user)} AND host = {_lit(host)}"
