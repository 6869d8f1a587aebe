"""The MySQL family: MariaDB (Debian's mariadb-server) or Oracle MySQL 8.0/8.4, one primary
and GTID replicas with semi-synchronous replication, and the dbtier Engine that reads and
moves that topology.

Two components, because a replica can only be seeded once the primary is configured:
`mysql` (package, config, and on the primary: database, users, writable, semi-sync) and
then `mysql-replication` (each replica seeded from, or re-pointed to, the primary). Both
read the live roles of every DB host in prepare(), so a deploy after a failover keeps the
new primary and never re-seeds a healthy replica.

Both flavors' SQL comes from `Flavor` (MARIADB, ORACLE) and nowhere else. Every node's
config says read_only: a server that restarts never comes back as a second writer; the
deploy (or a promotion) makes the one primary writable at runtime. A primary that stays up
but is cut off while another is promoted (`failover-db --force`) learns it when it can
reach its peers again: every promotion records an epoch in the replicated table
mmdeploy.promotions, and mmdeploy-mysql-fence on each node fences a writable node that
finds a higher epoch on a peer.

Passwords travel in scripts on standard input only: SQL statements through ops.SQL, and
the replication password from a root-only client file on each DB host
(/etc/mysql/mmdeploy-replication.cnf) that the seed, re-point and rejoin scripts read.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from ..component import Check, Component, Context
from ..dbtier import NodeState
from ..errors import MMDeployError
from ..facts import Fact
from ..inventory import Host, Inventory
from ..ops import SQL, Command, File, Packages, Service, unit
from ..remote import Remote
from ..step import Change, Step, run_checked

DATABASE, USER, REPLICATION_USER = "mattermost", "mmuser", "mmrepl"
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
REPLICATION_CNF = "/etc/mysql/mmdeploy-replication.cnf"
# Outside the data directory, so a re-seed keeps it; removed by db.rejoin only.
FENCED = "/etc/mysql/mmdeploy-fenced"
EPOCH_SCHEMA = "mmdeploy"
PROMOTIONS = f"`{EPOCH_SCHEMA}`.`promotions`"
# What Mattermost's schema migrations and queries use, on its own database only.
APP_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES",
                  "CREATE TEMPORARY TABLES", "LOCK TABLES", "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE",
                  "ALTER ROUTINE", "EXECUTE", "TRIGGER")
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


# --- GTID positions ---------------------------------------------------------------------


@dataclass(frozen=True)
class MariaPos:
    """A MariaDB GTID position: per replication domain, the last (server_id, seq_no)."""

    domains: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MariaPos:
        domains: dict[int, tuple[int, int]] = {}
        for part in (text or "").replace("\\n", ",").replace("\n", ",").split(","):
            part = part.strip()
            if part:
                d, s, n = (int(x) for x in part.split("-"))
                if d not in domains or n > domains[d][1]:
                    domains[d] = (s, n)
        return cls(domains)

    def merge(self, other: MariaPos) -> MariaPos:
        """Per domain, the higher of the two."""
        out = dict(self.domains)
        for d, (s, n) in other.domains.items():
            if d not in out or n > out[d][1]:
                out[d] = (s, n)
        return MariaPos(out)

    def __bool__(self) -> bool:
        return bool(self.domains)

    def __lt__(self, other: MariaPos) -> bool:
        """Behind: at most as far in every domain, and not equal."""
        keys = set(self.domains) | set(other.domains)
        return self != other and all(self.seq(d) <= other.seq(d) for d in keys)

    def seq(self, domain: int) -> int:
        return self.domains.get(domain, (0, 0))[1]

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domains.items()))


def maria_state_map(*texts: str) -> dict[tuple[int, int], int]:
    """(domain, server_id) -> highest seq_no, from gtid_binlog_state / positions."""
    out: dict[tuple[int, int], int] = {}
    for text in texts:
        for part in (text or "").replace("\\n", ",").replace("\n", ",").split(","):
            part = part.strip()
            if part:
                d, s, n = (int(x) for x in part.split("-"))
                out[(d, s)] = max(n, out.get((d, s), 0))
    return out


def maria_missing(pos: MariaPos, known: dict[tuple[int, int], int]) -> list[str]:
    """The GTIDs of `pos` that a server knowing `known` (maria_state_map) never had."""
    return [f"{d}-{s}-{n}" for d, (s, n) in sorted(pos.domains.items()) if known.get((d, s), 0) < n]


@dataclass(frozen=True)
class GtidSet:
    """An Oracle MySQL GTID set: source uuid -> sorted, merged [start, end] intervals."""

    sets: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> GtidSet:
        raw: dict[str, list[tuple[int, int]]] = {}
        for part in (text or "").replace("\\n", "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            for r in ranges:
                a, _, b = r.partition("-")
                raw.setdefault(uuid.lower(), []).append((int(a), int(b or a)))
        return cls({u: _merge_intervals(iv) for u, iv in raw.items()})

    def union(self, other: GtidSet) -> GtidSet:
        keys = set(self.sets) | set(other.sets)
        return GtidSet({u: _merge_intervals([*self.sets.get(u, ()), *other.sets.get(u, ())]) for u in keys})

    def issubset(self, other: GtidSet) -> bool:
        return not (self - other)

    def __sub__(self, other: GtidSet) -> GtidSet:
        out = {}
        for uuid, intervals in self.sets.items():
            left = []
            for a, b in intervals:
                for c, d in other.sets.get(uuid, ()):
                    if d < a or c > b:
                        continue
                    if c > a:
                        left.append((a, c - 1))
                    a = max(a, d + 1)
                    if a > b:
                        break
                if a <= b:
                    left.append((a, b))
            if left:
                out[uuid] = tuple(left)
        return GtidSet(out)

    def __bool__(self) -> bool:
        return bool(self.sets)

    def __lt__(self, other: GtidSet) -> bool:
        """Behind: a proper subset."""
        return self != other and self.issubset(other)

    def __str__(self) -> str:
        return ",".join(f"{u}:" + ":".join(f"{a}-{b}" if a != b else str(a) for a, b in iv)
                        for u, iv in sorted(self.sets.items()))


def _merge_intervals(intervals) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


# --- the two flavors' SQL, in one place --------------------------------------------------


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

    def packages(self) -> list[str]:
        # Oracle MySQL: Ubuntu's own packages, or the same names from MySQL's APT repository.
        return ["mariadb-server", "mariadb-client"] if self.mariadb else ["mysql-server", "mysql-client"]

    # statements

    def read_only(self) -> str:
        # super_read_only keeps even administrative accounts from writing on Oracle MySQL.
        return "SET GLOBAL read_only = ON;" if self.mariadb else "SET GLOBAL super_read_only = ON;"

    def writable(self) -> str:
        return ("SET GLOBAL read_only = OFF;" if self.mariadb
                else "SET GLOBAL super_read_only = OFF;\nSET GLOBAL read_only = OFF;")

    def semi_sync_source(self, on: bool) -> str:
        return f"SET GLOBAL {self.semi_source}_enabled = {'ON' if on else 'OFF'};"

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"

    def create_user(self, user: str, host: str, password: str) -> str:
        return f"CREATE USER IF NOT EXISTS {account(user, host)} IDENTIFIED BY {_lit(password)};"

    def grant_app(self, host: str) -> str:
        who = account(USER, host)
        return (f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
                f"GRANT {', '.join(APP_PRIVILEGES)} ON `{DATABASE}`.* TO {who};")

    def grant_replication(self, host: str) -> str:
        who = account(REPLICATION_USER, host)
        return (f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
                f"GRANT {', '.join(self.replication_privileges)} ON *.* TO {who};")

    def grant_monitoring(self, user: str) -> str:
        who = account(user, "localhost")  # the exporter connects through the socket
        return (f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n"
                f"GRANT {', '.join(self.monitoring_privileges)} ON *.* TO {who};")

    def change_source(self, primary: str, password_sql: str) -> str:
        """Point this replica at `primary` with GTID auto-positioning. `password_sql` is an
        SQL literal (or a shell expansion producing one inside a script)."""
        if self.mariadb:
            return (f"CHANGE MASTER TO MASTER_HOST={_lit(primary)}, MASTER_PORT=3306, "
                    f"MASTER_USER={_lit(REPLICATION_USER)}, MASTER_PASSWORD={password_sql}, "
                    "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;")
        return (f"CHANGE REPLICATION SOURCE TO SOURCE_HOST={_lit(primary)}, SOURCE_PORT=3306, "
                f"SOURCE_USER={_lit(REPLICATION_USER)}, SOURCE_PASSWORD={password_sql}, "
                "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1;")

    def follow(self, primary: str, password_sql: str, keep_position: bool = False) -> str:
        """Become a read-only replica of `primary`. A former primary (keep_position False)
        first takes its own executed GTIDs as its replication position (MariaDB)."""
        position = "" if keep_position or not self.mariadb else "SET GLOBAL gtid_slave_pos = @@global.gtid_current_pos;\n"
        return (f"{self.stop_replica}\n{self.read_only()}\n{self.semi_sync_source(False)}\n{position}"
                f"{self.change_source(primary, password_sql)}\n{self.start_replica}")

    def promotions_table(self) -> str:
        """The promotion epochs: replicated, so a node cut off during a failover finds a
        newer epoch on a peer when it is back, and fences itself (mmdeploy-mysql-fence)."""
        return (f"CREATE DATABASE IF NOT EXISTS `{EPOCH_SCHEMA}`;\n"
                f"CREATE TABLE IF NOT EXISTS {PROMOTIONS} (epoch INT UNSIGNED PRIMARY KEY, "
                "host VARCHAR(255) NOT NULL, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);")

    def promote(self, semi_sync: bool) -> str:
        """Writable as soon as the applier stops: stopping the receiver can block for
        seconds while it retries a dead primary, and nothing it could still receive is
        applied (the old primary is fenced; the relay log is discarded). Then the next
        promotion epoch (the table is made here too, for a site deployed without it)."""
        thread = self.stop_replica.replace(";", " SQL_THREAD;")
        return (f"{thread}\n{self.semi_sync_source(semi_sync)}\n{self.writable()}\n"
                f"{self.promotions_table()}\n"
                f"INSERT INTO {PROMOTIONS} (epoch, host) SELECT COALESCE(MAX(epoch), 0) + 1, @@global.report_host "
                f"FROM {PROMOTIONS};\n"
                f"{self.stop_replica}\n{self.reset_replica}")

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
            return (f"{common} --gtid --master-data=1 --system=users --insert-ignore --databases $("
                    f"mysql --defaults-extra-file={cnf} -NB -e {shlex.quote(_user_schemas_sql())})")
        return f"{common} --source-data=1 --set-gtid-purged=ON --all-databases --flush-privileges"

    def kill_clients_sql(self) -> str:
        """A query whose rows are KILL statements for every client connection: the server's
        own threads, replication streams and this session are kept."""
        return ("SELECT CONCAT('KILL ', id, ';') FROM information_schema.processlist "
                "WHERE id <> CONNECTION_ID() AND user NOT IN ('system user', 'event_scheduler') "
                "AND command NOT LIKE 'Binlog Dump%' AND command <> 'Daemon'")

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
            common += ["SELECT 'gtid_current_pos', @@global.gtid_current_pos",
                       "SELECT 'gtid_binlog_state', @@global.gtid_binlog_state",
                       "SELECT 'gtid_slave_pos', @@global.gtid_slave_pos"]
        else:
            common += ["SELECT 'super_read_only', @@global.super_read_only",
                       "SELECT 'gtid_executed', REPLACE(@@global.gtid_executed, '\\n', '')"]
        queries = ";\n".join(common) + ";"
        return (f"echo \"fenced=$(test -f {FENCED} && echo 1 || echo 0)\"\n"
                f"echo \"unit=$(systemctl is-enabled {self.service} 2>/dev/null)/"
                f"$(systemctl is-active {self.service} 2>/dev/null)\"\n"
                f"mysql --protocol=socket -NB <<'SQL' | sed 's/\\t/=/'\n{queries}\nSQL\n"
                f"echo '[replication]'\nmysql --protocol=socket -e '{self.replica_status}\\G'\n")


MARIADB = Flavor(
    name="mariadb", service="mariadb", conf_path="/etc/mysql/mariadb.conf.d/90-mmdeploy.cnf",
    dump="mariadb-dump", replica_status="SHOW SLAVE STATUS", stop_replica="STOP SLAVE;",
    start_replica="START SLAVE;", reset_replica="RESET SLAVE ALL;", source_key="Master_Host",
    lag_key="Seconds_Behind_Master", io_key="Slave_IO_Running", sql_key="Slave_SQL_Running",
    semi_source="rpl_semi_sync_master", semi_replica="rpl_semi_sync_slave",
    replication_privileges=("SELECT", "RELOAD", "LOCK TABLES", "REPLICATION SLAVE", "BINLOG MONITOR",
                            "SHOW VIEW", "EVENT", "TRIGGER"),
    monitoring_privileges=("PROCESS", "BINLOG MONITOR", "SLAVE MONITOR", "SELECT"),
)
ORACLE = Flavor(
    name="mysql", service="mysql", conf_path="/etc/mysql/mysql.conf.d/90-mmdeploy.cnf",
    dump="mysqldump", replica_status="SHOW REPLICA STATUS", stop_replica="STOP REPLICA;",
    start_replica="START REPLICA;", reset_replica="RESET REPLICA ALL;", source_key="Source_Host",
    lag_key="Seconds_Behind_Source", io_key="Replica_IO_Running", sql_key="Replica_SQL_Running",
    semi_source="rpl_semi_sync_source", semi_replica="rpl_semi_sync_replica",
    replication_privileges=("SELECT", "RELOAD", "LOCK TABLES", "REPLICATION SLAVE", "REPLICATION CLIENT",
                            "SHOW VIEW", "EVENT", "TRIGGER"),
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
    table, scope = (("schema_privileges", f" AND table_schema = {_lit(schema)}") if schema
                    else ("user_privileges", ""))
    wanted = ", ".join(_lit(p) for p in privileges)
    return (f"SELECT 1 FROM information_schema.{table} WHERE grantee = {grantee}{scope} "
            f"HAVING COUNT(*) = {len(privileges)} AND SUM(privilege_type IN ({wanted})) = {len(privileges)}")


def user_guard(user: str, host: str) -> str:
    return f"SELECT 1 FROM mysql.user WHERE user = {_lit(user)} AND host = {_lit(host)}"


# --- probe parsing ----------------------------------------------------------------------


def parse_probe(flavor: Flavor, host: Host, fact: Fact) -> NodeState:
    values: dict[str, str] = {}
    clients: list[str] = []
    status: dict[str, str] = {}
    head, _, replication = fact.out.partition("[replication]\n")
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "replica_client":
            clients.append(value)
        else:
            values[key.lower()] = value
    last = None
    for line in replication.splitlines():
        m = re.match(r"^\s*(\w+): ?(.*)$", line)
        if m:
            last = m.group(1)
            status[last] = m.group(2).strip()
        elif last and line.strip() and not line.startswith("*"):
            status[last] += line.strip()  # a GTID set continued on the next line
    running = "read_only" in values
    fenced = values.get("fenced") == "1"
    writable = running and values.get("read_only") == "0" and values.get("super_read_only", "0") == "0"
    upstream = status.get(flavor.source_key) or None
    role = "replica" if upstream else ("primary" if writable else "unknown")
    state = NodeState(host=host, reachable=True, running=running, role=role, writable=writable,
                      upstream=upstream, fenced=fenced)
    io, sql = status.get(flavor.io_key, ""), status.get(flavor.sql_key, "")
    state.extra = {
        "unit": values.get("unit", ""), "user_schemas": int(values.get("user_schemas") or 0),
        "io": io, "sql": sql, "sql_error": status.get("Last_SQL_Error", ""),
        "io_error": status.get("Last_IO_Error", ""),
    }
    if flavor.mariadb:
        current = MariaPos.parse(values.get("gtid_current_pos", ""))
        state.applied = current
        state.received = current.merge(MariaPos.parse(status.get("Gtid_IO_Pos", "")))
        state.extra["known"] = maria_state_map(values.get("gtid_binlog_state", ""),
                                               values.get("gtid_slave_pos", ""), values.get("gtid_current_pos", ""))
    else:
        executed = GtidSet.parse(status.get("Executed_Gtid_Set") or values.get("gtid_executed", ""))
        state.applied = executed
        state.received = executed.union(GtidSet.parse(status.get("Retrieved_Gtid_Set", "")))
    if running:
        state.replicas = clients
        lag = status.get(flavor.lag_key, "")
        state.lag_seconds = float(lag) if lag.isdigit() else (0.0 if role == "primary" else None)
        if role == "primary":
            on = values.get(f"{flavor.semi_source}_status") == "ON"
            count = values.get(f"{flavor.semi_source}_clients", "0")
            state.sync = f"semi-sync {'on' if on else 'off'} ({count} semi-sync replica(s))"
        elif role == "replica":
            on = values.get(f"{flavor.semi_replica}_status") == "ON"
            state.sync = f"semi-sync replica {'on' if on else 'off'}"
    detail = [f"applied {state.applied or '-'}"]
    if role == "replica":
        detail.append(f"io {io or '?'} sql {sql or '?'}")
    for key in ("sql_error", "io_error"):
        if state.extra[key]:
            detail.append(f"{key.replace('_', ' ')}: {state.extra[key]}")
    if fenced:
        detail.append("FENCED")
    detail.append(f"unit {state.extra['unit'] or '?'}")
    state.detail = ", ".join(detail)
    return state


def unreachable(host: Host, why: str) -> NodeState:
    return NodeState(host=host, reachable=False, running=False, role="unknown", writable=False, detail=why)


def db_hosts(inventory: Inventory) -> list[Host]:
    return [h for h in inventory.with_role("db") if h.settings.database.engine == "mysql"]


def flavor_of(host: Host) -> Flavor:
    return FLAVORS[host.settings.database.flavor]


def read_states(hosts: list[Host], facts_of) -> dict[str, NodeState]:
    """facts_of(host, commands) -> facts; an unreachable host reads as such."""
    states = {}
    for h in hosts:
        command = flavor_of(h).probe()
        try:
            states[h.name] = parse_probe(flavor_of(h), h, facts_of(h, [command])[command])
        except MMDeployError as e:
            states[h.name] = unreachable(h, str(e))
    return states


# --- topology decided from the live roles -----------------------------------------------


@dataclass
class Topology:
    primary: Host
    states: dict[str, NodeState]

    def plan_replica(self, host: Host) -> str | None:
        """What `host` needs to follow the primary: None, "start", "repoint" or "seed".
        Never re-seeds a node holding data: a node with transactions the primary lacks is
        left to `inv db.rejoin`."""
        mine, primary = self.states[host.name], self.states[self.primary.name]
        if mine.upstream == self.primary.private_address:
            if mine.extra.get("sql_error"):
                raise MMDeployError(
                    f"{host.name}: replication from {self.primary.name} stopped on an error "
                    f"({mine.extra['sql_error']}); re-seed it with `inv db.rejoin {host.name}`")
            return None if "No" not in (mine.extra.get("io"), mine.extra.get("sql")) else "start"
        if not mine.extra.get("user_schemas"):
            return "seed"
        errant = missing_on(mine, primary)
        if errant:
            raise MMDeployError(
                f"{host.name} has transactions the primary {self.primary.name} lacks ({errant}); "
                f"left alone: `inv db.rejoin {host.name}` re-seeds it from {self.primary.name}")
        return "repoint"


def missing_on(node: NodeState, primary: NodeState) -> str:
    """The node's executed transactions the primary never had ('' when a subset)."""
    if isinstance(node.applied, GtidSet):
        return str(node.applied - primary.applied)
    return ", ".join(maria_missing(node.applied, primary.extra.get("known", {})))


def decide(hosts: list[Host], states: dict[str, NodeState]) -> Topology:
    """The primary, from the live roles: the one writable node; when none is writable, the
    node the replicas follow, or the only node holding data; on a fresh install the first
    DB host in inventory order. Two writable nodes is split brain: refuse."""
    live = [states[h.name] for h in hosts if not states[h.name].fenced]
    writable = [s for s in live if s.writable]
    if len(writable) > 1:
        raise MMDeployError(
            f"two writable MySQL-family nodes ({', '.join(s.host.name for s in writable)}): refusing to "
            "touch the database tier. Fence the one that must not take writes (inv failover-db, or stop "
            "it), then run again.")
    if writable:
        return Topology(writable[0].host, states)
    by_address = {h.private_address: h for h in hosts}
    followed = Counter(s.upstream for s in live if s.upstream in by_address)
    if followed:
        return Topology(by_address[followed.most_common(1)[0][0]], states)
    holding = [s for s in live if s.extra.get("user_schemas")]
    if len(holding) > 1:
        raise MMDeployError(
            f"no writable MySQL-family node and {len(holding)} hold data "
            f"({', '.join(s.host.name for s in holding)}): which one is the primary is not clear; "
            "name it with `inv failover-db --to HOST`")
    return Topology(holding[0].host if holding else hosts[0], states)


# --- scripts shared by deploy, failover and rejoin --------------------------------------

# Reads the replication password from the root-only client file into an SQL literal, so it
# goes to the server on stdin and never on a command line.
_PASSWORD = f"""pw=$(sed -n 's/^password=//p' {REPLICATION_CNF})
pw=${{pw//\\\\/\\\\\\\\}}; pw=${{pw//\\'/\\'\\'}}
"""


def follow_script(flavor: Flavor, primary: Host, keep_position: bool) -> str:
    return (f"set -e\n{_PASSWORD}mysql --protocol=socket <<SQL\n"
            f"{flavor.follow(primary.private_address, chr(39) + '$pw' + chr(39), keep_position)}\nSQL\n")


def seed_script(flavor: Flavor, primary: Host, series: str) -> str:
    """Replace this node's data with a dump of the primary and start it as a replica. The
    dump goes to a file first: nothing is dropped before a complete copy is here."""
    cnf = "$cnf"
    drop = (f"mysql --protocol=socket -NB -e {shlex.quote(_user_schemas_sql())} | while read -r db; do\n"
            "  mysql --protocol=socket -e \"SET SESSION sql_log_bin = 0; DROP DATABASE \\`$db\\`;\"\n"
            "done\n")
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
{flavor.change_source(primary.private_address, chr(39) + '$pw' + chr(39))}
{flavor.start_replica}
SQL
"""


def fence_script(flavor: Flavor, by: str) -> str:
    """Mark this node fenced; kill clients, make it read-only (which waits for commits in
    flight), kill what slipped in. Replication streams stay, so replicas still receive
    everything committed. Run with `set -e`."""
    kill = (f"mysql --protocol=socket -NB -e {shlex.quote(flavor.kill_clients_sql())} "
            "| mysql --protocol=socket -f 2>/dev/null || true\n")
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
    query = ("SELECT @@global.gtid_binlog_state, @@global.gtid_slave_pos, @@global.gtid_current_pos"
             if flavor.mariadb else "SELECT REPLACE(@@global.gtid_executed, '\\n', '')")
    return (f"mysql --defaults-extra-file={REPLICATION_CNF} --host={primary.private_address} -NB "
            f"-e {shlex.quote(query)}")


# --- components -------------------------------------------------------------------------


def server_id(host: Host, inventory: Inventory) -> int:
    """Stable and unique: the private IPv4 address as a number (a name: its CRC32)."""
    def sid(h: Host) -> int:
        try:
            return int(ipaddress.IPv4Address(h.private_address))
        except ValueError:
            return zlib.crc32(h.private_address.encode()) or 1

    ids = Counter(sid(h) for h in db_hosts(inventory))
    if ids[sid(host)] > 1:
        raise MMDeployError(f"{host.name}: two DB hosts would share server_id {sid(host)}; give them distinct "
                            "private addresses")
    return sid(host)


def app_clients(inventory: Inventory, host: Host) -> list[str]:
    """Account hosts for the Mattermost user: every app and job host, plus extra_clients."""
    addresses = [h.private_address for h in inventory.hosts if h.has("app") or h.has("jobserver")]
    addresses += host.settings.database.extra_clients
    return list(dict.fromkeys(client_host(a) for a in addresses))


def semi_sync(inventory: Inventory, host: Host) -> bool:
    return host.settings.database.synchronous and len(db_hosts(inventory)) > 1


def render_config(ctx: Context) -> str:
    memory_mb = ctx.settings.database.memory_mb or int(ctx.facts.host("mem_kb")) // 1024
    clients = len(app_clients(ctx.inventory, ctx.host))
    return ctx.render("mysql/mmdeploy.cnf.j2", flavor=flavor_of(ctx.host).name,
                      server_id=server_id(ctx.host, ctx.inventory), semi_sync=semi_sync(ctx.inventory, ctx.host),
                      buffer_pool_mb=max(128, memory_mb // 2),
                      max_connections=max(151, CONNECTIONS_PER_CLIENT * clients + 50))


def render_fence(ctx: Context) -> str:
    flavor = flavor_of(ctx.host)
    peers = [h.private_address for h in db_hosts(ctx.inventory) if h.name != ctx.host.name]
    return ctx.render("mysql/mmdeploy-mysql-fence.j2", peers=" ".join(peers), fenced=FENCED, cnf=REPLICATION_CNF,
                      promotions=PROMOTIONS, fence=fence_script(flavor, "mmdeploy-mysql-fence: $why"))


def _oracle_repo_steps(ctx: Context) -> list[Step]:
    """Oracle MySQL on Debian comes from MySQL's own APT repository (Ubuntu ships it)."""
    series = ctx.settings.database.mysql_series
    codename = ctx.facts.host("os").split()[-1]
    keyring = "/usr/share/keyrings/mysql-apt.gpg"
    component = "mysql-8.4-lts" if series == "8.4" else "mysql-8.0"
    return [
        Command("MySQL APT signing key",
                f"set -e\ncurl -fsSL {MYSQL_KEY_URL} | gpg --dearmor > {keyring}.tmp\n"
                f"gpg --show-keys --with-colons {keyring}.tmp | grep -q '^fpr:*{MYSQL_KEY_FPR}:'\n"
                f"mv {keyring}.tmp {keyring}",
                unless=f"gpg --show-keys --with-colons {keyring} | grep -q '^fpr:*{MYSQL_KEY_FPR}:'"),
        File("/etc/apt/sources.list.d/mysql.list",
             f"deb [signed-by={keyring}] http://repo.mysql.com/apt/debian {codename} {component}\n",
             then="apt-get -q update"),
    ]


MYSQL_KEY_URL = "https://repo.mysql.com/RPM-GPG-KEY-mysql-2023"
MYSQL_KEY_FPR = "BCA43417C3B485DD128EC6D4B7B3B788A8D3785C"


class _OnLiveTopology(Component):
    """Both MySQL-family components run on the DB hosts and act on the live roles."""

    def hosts(self, inventory):
        return db_hosts(inventory)

    def prepare(self, inventory, view):
        hosts = db_hosts(inventory)
        return decide(hosts, read_states(hosts, view.facts))


class MySQL(_OnLiveTopology):
    name = "mysql"
    after = ("base",)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, flavor = ctx.host, flavor_of(ctx.host)
        repl_password = ctx.secrets.get("db_replication_password")
        steps: list[Step] = []
        os_id = ctx.facts.host("os").split()[0]
        if not flavor.mariadb and os_id != "ubuntu":
            steps += _oracle_repo_steps(ctx)
        pid = "/run/mysqld/mysqld.pid"
        steps += [
            Packages(*flavor.packages()),
            File(flavor.conf_path, render_config(ctx)),
            File(REPLICATION_CNF, f"[client]\nuser={REPLICATION_USER}\npassword={repl_password}\n", mode="0600"),
            File("/usr/local/sbin/mmdeploy-mysql-fence", render_fence(ctx), mode="0755", notify=("restart fence",)),
            unit("mmdeploy-mysql-fence.service", ctx.render("mysql/mmdeploy-mysql-fence.service.j2",
                                                             service=flavor.service), notify=("restart fence",)),
            Service("mmdeploy-mysql-fence"),
        ]
        if topo.states[host.name].fenced:
            return steps  # stopped or fenced by failover-db: it waits for `inv db.rejoin`
        # A step, not a handler: the primary must be made writable after the restart.
        steps += [
            Command(f"restart {flavor.service} (config changed)", f"systemctl restart {flavor.service}",
                    unless=f"test {pid} -nt {flavor.conf_path}"),
            Service(flavor.service),
        ]
        guard_on = f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 1"
        if host.name != topo.primary.name:
            return steps + [SQL("semi-sync source off on a replica", "mysql", flavor.semi_sync_source(False),
                                guard=f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 0")]
        password = ctx.secrets.get("db_password")
        on = semi_sync(ctx.inventory, host)
        steps += [
            SQL("primary writable", "mysql", flavor.writable(), guard="SELECT 1 FROM DUAL WHERE @@global.read_only = 0"),
            SQL(f"semi-sync source {'on' if on else 'off'}", "mysql", flavor.semi_sync_source(on),
                guard=guard_on if on else f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 0"),
            SQL(f"database {DATABASE}", "mysql", flavor.create_database(),
                guard=f"SELECT 1 FROM information_schema.schemata WHERE schema_name = {_lit(DATABASE)}"),
            SQL("promotion epochs", "mysql", flavor.promotions_table(),
                guard=f"SELECT 1 FROM information_schema.tables WHERE table_schema = {_lit(EPOCH_SCHEMA)} "
                      "AND table_name = 'promotions'"),
        ]
        for client in app_clients(ctx.inventory, host):
            steps += [
                SQL(f"user {USER}@{client}", "mysql", flavor.create_user(USER, client, password),
                    guard=user_guard(USER, client)),
                SQL(f"grants {USER}@{client}", "mysql", flavor.grant_app(client),
                    guard=privileges_guard(USER, client, APP_PRIVILEGES, DATABASE)),
            ]
        monitor = ctx.settings.monitoring.db_user
        steps += [
            SQL(f"user {monitor}@localhost", "mysql",
                flavor.create_user(monitor, "localhost", ctx.secrets.get("db_monitoring_password")),
                guard=user_guard(monitor, "localhost")),
            SQL(f"grants {monitor}@localhost", "mysql", flavor.grant_monitoring(monitor),
                guard=privileges_guard(monitor, "localhost", flavor.monitoring_privileges, None)),
        ]
        # Every DB host, the primary too: after a failover any of them replicates.
        for peer in db_hosts(ctx.inventory):
            a = peer.private_address
            steps += [
                SQL(f"user {REPLICATION_USER}@{a}", "mysql", flavor.create_user(REPLICATION_USER, a, repl_password),
                    guard=user_guard(REPLICATION_USER, a)),
                SQL(f"grants {REPLICATION_USER}@{a}", "mysql", flavor.grant_replication(a),
                    guard=privileges_guard(REPLICATION_USER, a, flavor.replication_privileges, None)),
            ]
        return steps

    def handlers(self, ctx: Context):
        return {"restart fence": Command("restart mmdeploy-mysql-fence", "systemctl restart mmdeploy-mysql-fence")}

    def checks(self, inventory):
        if not db_hosts(inventory):
            return []
        return [Check("mysql: one writable node, every replica replicating from it",
                      lambda: _replication_problem(inventory))]


class Replicate(Step):
    """This replica follows the live primary: started, re-pointed (its transactions are all
    on the primary) or seeded (it holds no data), as `Topology.plan_replica` decides from
    the node's live state."""

    def __init__(self, topology: Topology, host: Host, series: str):
        self.topology, self.host, self.flavor, self.series = topology, host, flavor_of(host), series
        self.name = f"replicate from {topology.primary.name}"
        self._probe = self.flavor.probe()

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        states = dict(self.topology.states)
        states[self.host.name] = parse_probe(self.flavor, self.host, facts[self._probe])
        action = Topology(self.topology.primary, states).plan_replica(self.host)
        primary = f"{self.topology.primary.name} ({self.topology.primary.private_address})"
        return {None: None, "start": Change("start replication"),
                "repoint": Change(f"re-point to {primary}"),
                "seed": Change(f"seed from {primary} and replicate")}[action]

    def apply(self, remote: Remote, change: Change) -> None:
        primary = self.topology.primary
        if change.summary == "start replication":
            script = f"mysql --protocol=socket -e '{self.flavor.start_replica}'"
        elif change.summary.startswith("re-point"):
            script = follow_script(self.flavor, primary, keep_position=False)
        else:
            script = seed_script(self.flavor, primary, self.series)
        run_checked(remote, script, self.name)


class MySQLReplication(_OnLiveTopology):
    name = "mysql-replication"
    after = ("mysql",)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        if ctx.host.name == topo.primary.name or topo.states[ctx.host.name].fenced:
            return []
        if not topo.states[topo.primary.name].running:
            raise MMDeployError(f"the primary {topo.primary.name} does not answer: cannot set up replication")
        return [Replicate(topo, ctx.host, ctx.settings.database.mysql_series)]


def _replication_problem(inventory: Inventory) -> str | None:
    from .. import dbtier

    states = dbtier.status(inventory)
    writable = [s for s in states if s.writable]
    if len(writable) != 1:
        return f"expected one writable node, found {len(writable)} ({', '.join(s.host.name for s in writable) or 'none'})"
    primary = writable[0]
    lost = [s.host.name for s in states if s is not primary and not (
        s.upstream == primary.host.private_address and s.extra.get("io") == "Yes" and s.extra.get("sql") == "Yes")]
    return f"not replicating from {primary.host.name}: {', '.join(lost)}" if lost else None


# --- the dbtier Engine ------------------------------------------------------------------


class MySQLEngine:
    """dbtier.Engine for MariaDB / Oracle MySQL GTID replication."""

    name = "mysql"

    def __init__(self, flavor: str = "mariadb", semi_sync: bool = True, series: str = "8.4"):
        self.flavor, self.semi_sync, self.series = FLAVORS[flavor], semi_sync, series

    def probe(self) -> list[str]:
        return [self.flavor.probe()]

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState:
        return parse_probe(self.flavor, host, facts[self.flavor.probe()])

    def _fresh(self, remote: Remote) -> NodeState:
        result = remote.run(self.flavor.probe())
        return parse_probe(self.flavor, remote.host, Fact(result.rc, result.stdout))

    def fence(self, remote: Remote) -> None:
        run_checked(remote, "set -e\n" + fence_script(self.flavor, "mmdeploy failover-db"),
                    f"fence {remote.host.name}")

    def stop_and_mask(self, remote: Remote) -> None:
        s = self.flavor.service
        run_checked(remote, f"""\
set -e
echo "fenced (stopped) by mmdeploy failover-db at $(date -Is)" > {FENCED}
systemctl mask {s}
systemctl stop {s}
""", f"stop and mask {remote.host.name}")

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        known = [s for s in replicas if s.running and s.received]
        if not known:
            raise MMDeployError("no replica reports a GTID position: cannot tell which one is most advanced")
        if isinstance(known[0].received, GtidSet):
            return _most_advanced_oracle(known)
        return _most_advanced_mariadb(known)

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None:
        state = self._fresh(remote)
        target = state.received or node.received
        if self.flavor.mariadb:
            query, ok = f"SELECT MASTER_GTID_WAIT({_lit(str(target))}, {float(timeout)})", "0"
        else:
            query, ok = f"SELECT WAIT_FOR_EXECUTED_GTID_SET({_lit(str(target))}, {float(timeout)})", "0"
        result = run_checked(remote, f"mysql --protocol=socket -NB -e {shlex.quote(query)}",
                             f"wait for {remote.host.name} to apply {target}")
        if result.stdout.strip() != ok:
            raise MMDeployError(f"{remote.host.name} did not apply {target} within {timeout:.0f} s")

    def promote(self, remote: Remote, node: NodeState) -> None:
        run_checked(remote, f"set -e\nmysql --protocol=socket <<'SQL'\n{self.flavor.promote(self.semi_sync)}\nSQL\n"
                            f"rm -f {FENCED}\n", f"promote {remote.host.name}")

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None:
        run_checked(remote, follow_script(self.flavor, primary, keep_position=True), f"re-point {remote.host.name}")

    def wait_streaming(self, remote: Remote, timeout: float) -> bool:
        f = self.flavor
        result = remote.run(f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(mysql --protocol=socket -e '{f.replica_status}\\G' | grep -cE '^ *({f.io_key}|{f.sql_key}): Yes$')" = 2 ]; do
  [ $SECONDS -lt $end ] || exit 1
  sleep 0.1
done
""")
        return result.ok

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        """Started read-only (the config says so), then re-pointed when every transaction it
        has is on the new primary, else re-seeded from it."""
        s = self.flavor.service
        run_checked(remote, f"set -e\nsystemctl unmask {s}\nsystemctl start {s}\n"
                            f"mysql --protocol=socket -e {shlex.quote(self.flavor.read_only())}\n",
                    f"start {remote.host.name} read-only")
        mine = self._fresh(remote)
        known = run_checked(remote, primary_known_script(self.flavor, primary),
                            f"read {primary.name}'s GTIDs from {remote.host.name}").stdout.strip()
        if self.flavor.mariadb:
            errant = maria_missing(mine.applied, maria_state_map(*known.split("\t")))
        else:
            errant = str(mine.applied - GtidSet.parse(known))
        if mine.extra.get("user_schemas") and not errant:
            script, what = follow_script(self.flavor, primary, keep_position=False), "re-point"
        else:
            script, what = seed_script(self.flavor, primary, self.series), "re-seed"
        run_checked(remote, script + f"rm -f {FENCED}\n", f"{what} {remote.host.name} from {primary.name}")


def _most_advanced_oracle(known: list[NodeState]) -> NodeState:
    """The replica whose received set contains every other's; errant transactions (sets
    that no single replica covers) are refused, not guessed."""
    for s in known:
        if all(o.received.issubset(s.received) for o in known):
            return s
    lines = []
    for s in known:
        for o in known:
            extra = o.received - s.received
            if o is not s and extra:
                lines.append(f"{o.host.name} has {extra} that {s.host.name} lacks")
    raise MMDeployError("errant transactions: no replica has received everything the others have ("
                        + "; ".join(lines) + "); resolve them before failing over")


def _most_advanced_mariadb(known: list[NodeState]) -> NodeState:
    """Highest received position (Gtid_IO_Pos), then highest applied (gtid_current_pos),
    compared per domain; a replica ahead in one domain and behind in another, or two
    different transactions at one position, is refused."""
    domains = {d for s in known for d in s.received.domains}
    for d in domains:
        at: dict[int, set[int]] = {}
        for s in known:
            if d in s.received.domains:
                server, seq = s.received.domains[d]
                at.setdefault(seq, set()).add(server)
        diverged = {seq: servers for seq, servers in at.items() if len(servers) > 1}
        if diverged:
            raise MMDeployError(f"replicas diverged in GTID domain {d} (different transactions at "
                                f"{', '.join(f'{d}-*-{seq}' for seq in diverged)}): refusing to choose")

    def ahead_everywhere(s: NodeState, pos: str) -> bool:
        return all(getattr(s, pos).domains.get(d, (0, 0))[1] >= getattr(o, pos).domains.get(d, (0, 0))[1]
                   for o in known for d in domains)

    best = [s for s in known if ahead_everywhere(s, "received")]
    if not best:
        raise MMDeployError("no replica has received the most in every GTID domain ("
                            + "; ".join(f"{s.host.name}: {s.received}" for s in known) + ")")
    return next((s for s in best if ahead_everywhere(s, "applied")), best[0])  # ties: inventory order


def engine(settings) -> MySQLEngine:
    """The dbtier entry point (settings: the inventory's DatabaseSettings)."""
    return MySQLEngine(settings.flavor, settings.synchronous, settings.mysql_series)
