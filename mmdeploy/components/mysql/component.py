"""The MySQL family's two components: `mysql` (package, config, and on the primary:
database, users, writable, semi-sync) and then `mysql-replication` (each replica seeded
from, or re-pointed to, the primary). Both act on the live topology (dbtier.decide, read
once per run in prepare()), so a deploy after a failover keeps the new primary and never
re-seeds a healthy replica.

Every node's config says read_only: a server that restarts never comes back as a second
writer; the deploy (or a promotion) makes the one primary writable at runtime. A primary
that stays up but is cut off while another is promoted (`failover-db --force`) learns it
when it can reach its peers again: every promotion records an epoch in the replicated
table mmdeploy.promotions, and mmdeploy-mysql-fence on each node fences a writable node that
finds a higher epoch on a peer.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections import Counter
from typing import Mapping

from ... import distros, releases
from ...component import Context, Metrics, Port
from ...dbtier import Topology
from ...dbtier.component import (
    DB_MONITORING_PASSWORD,
    DB_PASSWORD,
    DB_REPLICATION_PASSWORD,
    DBComponent,
    replication_check,
)
from ...errors import MMDeployError
from ...facts import Fact
from ...inventory import Host, Inventory
from ...ops import SQL, Command, File, Packages, Service, unit
from ...ops.exporter import env_file, exporter_handlers, exporter_steps, listen_flag, restart_handler
from ...ops.sql import AccountPassword
from ...ops.secretfile import SecretFile
from ...remote import Remote
from ...secrets import option_file_value
from ...step import Change, Step, run_checked
from .flavor import (
    APP_PRIVILEGES,
    CONNECTIONS_PER_CLIENT,
    DATABASE,
    EPOCH_SCHEMA,
    FENCED,
    FLAVORS,
    PROMOTIONS,
    REPLICATION_CNF,
    REPLICATION_USER,
    USER,
    Flavor,
    _lit,
    client_host,
    privileges_guard,
    user_guard,
)
from .gtid import missing_on
from .probe import parse_probe
from .scripts import SEED_TIMEOUT, fence_script, follow_script, seed_script

EXPORTER_CNF = "/etc/mysql/mmdeploy-exporter.cnf"
EXPORTER_PORT = 9104  # the Debian package's default


def db_hosts(inventory: Inventory) -> list[Host]:
    return [h for h in inventory.with_role("db") if h.settings.database.engine == "mysql"]


def exporter(ctx: Context) -> str:
    """The mysqld exporter's package (and unit) on this host's distribution."""
    return distros.of(ctx.facts.host("os")).exporter("mysqld")


def flavor_of(host: Host) -> Flavor:
    return FLAVORS[host.settings.database.flavor]


def plan_replica(topo: Topology, host: Host) -> str | None:
    """What `host` needs to follow the primary: None, "start", "repoint" or "seed".
    Never re-seeds a node holding data: a node with transactions the primary lacks is
    left to `inv db.rejoin`."""
    primary_host = topo.require_primary()
    mine, primary = topo.states[host.name], topo.states[primary_host.name]
    if mine.upstream == primary_host.private_address:
        if mine.extra.get("sql_error"):
            raise MMDeployError(
                f"{host.name}: replication from {primary_host.name} stopped on an error "
                f"({mine.extra['sql_error']}); re-seed it with `inv db.rejoin {host.name}`"
            )
        return None if "No" not in (mine.extra.get("io"), mine.extra.get("sql")) else "start"
    if not mine.extra.get("user_schemas"):
        return "seed"
    errant = missing_on(mine, primary)
    if errant:
        raise MMDeployError(
            f"{host.name} has transactions the primary {primary_host.name} lacks ({errant}); "
            f"left alone: `inv db.rejoin {host.name}` re-seeds it from {primary_host.name}"
        )
    return "repoint"


def server_id(host: Host, inventory: Inventory) -> int:
    """Stable and unique: the private IPv4 address as a number (a name: its CRC32)."""

    def sid(h: Host) -> int:
        try:
            return int(ipaddress.IPv4Address(h.private_address))
        except ValueError:
            return zlib.crc32(h.private_address.encode()) or 1

    ids = Counter(sid(h) for h in db_hosts(inventory))
    if ids[sid(host)] > 1:
        raise MMDeployError(
            f"{host.name}: two DB hosts would share server_id {sid(host)}; give them distinct private addresses"
        )
    return sid(host)


def app_clients(inventory: Inventory, host: Host) -> list[str]:
    """Account hosts for the Mattermost user: every app and job host, plus extra_clients."""
    addresses = [h.private_address for h in inventory.hosts if h.has("app") or h.has("jobserver")]
    addresses += host.settings.database.extra_clients
    return list(dict.fromkeys(client_host(a) for a in addresses))


def account_password(flavor: Flavor, user: str, host: str, password: str) -> AccountPassword:
    """The account's password is the secret's: set again when the secret changed."""
    from .engine import MySQLEngine

    engine = MySQLEngine(flavor.name)
    return AccountPassword(
        f"{user}@{host}",
        "mysql",
        flavor.alter_password(user, host, password),
        probe=engine.account_probe(),
        matches=lambda fact: engine.account_matches(fact, user, host, password),
    )


def source_password(flavor: Flavor, password: str) -> AccountPassword:
    """A replica keeps the replication password it was pointed at its source with; after a
    rotation (the accounts changed on the primary first) it is given the new one."""

    def matches(fact: Fact) -> bool | None:
        stored = fact.out.strip()
        return None if not stored else bytes.fromhex(stored) == password.encode()

    return AccountPassword(
        f"{REPLICATION_USER} kept by this replica",
        "mysql",
        flavor.set_source_password(password),
        probe=flavor.source_password_probe(),
        matches=matches,
    )


def semi_sync(inventory: Inventory, host: Host) -> bool:
    return host.settings.database.synchronous and len(db_hosts(inventory)) > 1


def render_config(ctx: Context) -> str:
    memory_mb = ctx.settings.database.memory_mb or int(ctx.facts.host("mem_kb")) // 1024
    clients = len(app_clients(ctx.inventory, ctx.host))
    return ctx.render(
        "mysql/mmdeploy.cnf.j2",
        flavor=flavor_of(ctx.host).name,
        server_id=server_id(ctx.host, ctx.inventory),
        semi_sync=semi_sync(ctx.inventory, ctx.host),
        buffer_pool_mb=max(128, memory_mb // 2),
        max_connections=max(151, CONNECTIONS_PER_CLIENT * clients + 50),
    )


def render_fence(ctx: Context) -> str:
    flavor = flavor_of(ctx.host)
    peers = [h.private_address for h in db_hosts(ctx.inventory) if h.name != ctx.host.name]
    return ctx.render(
        "mysql/mmdeploy-mysql-fence.j2",
        peers=" ".join(peers),
        fenced=FENCED,
        cnf=REPLICATION_CNF,
        replica_status=flavor.replica_status,
        promotions=PROMOTIONS,
        fence=fence_script(flavor, "mmdeploy-mysql-fence: $why"),
    )


def _oracle_repo_steps(ctx: Context) -> list[Step]:
    """Oracle MySQL on Debian comes from MySQL's own APT repository (Ubuntu ships it)."""
    series = ctx.settings.database.mysql_series
    codename = ctx.facts.host("os").split()[-1]
    keyring = "/usr/share/keyrings/mysql-apt.gpg"
    component = "mysql-8.4-lts" if series == "8.4" else "mysql-8.0"
    return [
        Command(
            "MySQL APT signing key",
            f"set -e\ncurl -fsSL {MYSQL_KEY_URL} | gpg --dearmor > {keyring}.tmp\n"
            f"gpg --show-keys --with-colons {keyring}.tmp | grep '^fpr:*{MYSQL_KEY_FPR}:'\n"
            f"mv {keyring}.tmp {keyring}",
            unless=f"gpg --show-keys --with-colons {keyring} | grep '^fpr:*{MYSQL_KEY_FPR}:'",
        ),
        File(
            "/etc/apt/sources.list.d/mysql.list",
            f"deb [signed-by={keyring}] http://repo.mysql.com/apt/debian {codename} {component}\n",
            then="apt-get -q update",
        ),
    ]


MYSQL_KEY_URL = "https://repo.mysql.com/RPM-GPG-KEY-mysql-2023"
MYSQL_KEY_FPR = "BCA43417C3B485DD128EC6D4B7B3B788A8D3785C"


class MySQL(DBComponent):
    """Package, config, fence watcher; on the primary: writable, semi-sync, database,
    users; then the mysqld exporter."""

    name = "mysql"
    engine = "mysql"
    # Mattermost on the app and job hosts, replication between the DB hosts, and the
    # addresses of database.extra_clients.
    ports = (Port("mysql", 3306, ("app", "jobserver", "db", "settings.database.extra_clients")),)
    after = ("base",)

    def validate(self, settings):
        version = settings.mattermost.version
        problem = releases.mysql_problem(version) if settings.database.engine == "mysql" else None
        return [("database.engine", f"mysql is not supported by Mattermost {version}: {problem}")] if problem else []

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, flavor = ctx.host, flavor_of(ctx.host)
        repl_password = ctx.secrets.get(DB_REPLICATION_PASSWORD)
        steps: list[Step] = []
        os_id = ctx.facts.host("os").split()[0]
        if not flavor.mariadb and os_id != "ubuntu":
            steps += _oracle_repo_steps(ctx)
        pid = "/run/mysqld/mysqld.pid"
        steps += [
            Packages(*flavor.packages(distros.of(ctx.facts.host("os")))),
            File(flavor.conf_path, render_config(ctx)),
            # The option file's own quoting: any password reads back as it is (scripts.py).
            SecretFile(
                REPLICATION_CNF, f"[client]\nuser={REPLICATION_USER}\npassword={option_file_value(repl_password)}\n"
            ),
            File("/usr/local/sbin/mmdeploy-mysql-fence", render_fence(ctx), mode="0755", notify=("restart fence",)),
            unit(
                "mmdeploy-mysql-fence.service",
                ctx.render("mysql/mmdeploy-mysql-fence.service.j2", service=flavor.service),
                notify=("restart fence",),
            ),
            Service("mmdeploy-mysql-fence"),
        ]
        if topo.states[host.name].fenced:
            return steps  # stopped or fenced by failover-db: it waits for `inv db.rejoin`
        # A step, not a handler: the primary must be made writable after the restart.
        steps += [
            Command(
                f"restart {flavor.service} (config changed)",
                f"systemctl restart {flavor.service}",
                unless=f"test {pid} -nt {flavor.conf_path}",
            ),
            Service(flavor.service),
        ]
        guard_on = f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 1"
        if topo.primary is None or host.name != topo.primary.name:  # the replication step says why
            return steps + [
                SQL(
                    "semi-sync source off on a replica",
                    "mysql",
                    flavor.semi_sync_source(False),
                    guard=f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 0",
                )
            ]
        password = ctx.secrets.get(DB_PASSWORD)
        on = semi_sync(ctx.inventory, host)
        steps += [
            SQL(
                "primary writable", "mysql", flavor.writable(), guard="SELECT 1 FROM DUAL WHERE @@global.read_only = 0"
            ),
            SQL(
                f"semi-sync source {'on' if on else 'off'}",
                "mysql",
                flavor.semi_sync_source(on),
                guard=guard_on if on else f"SELECT 1 FROM DUAL WHERE @@global.{flavor.semi_source}_enabled = 0",
            ),
            SQL(
                f"database {DATABASE}",
                "mysql",
                flavor.create_database(),
                guard=f"SELECT 1 FROM information_schema.schemata WHERE schema_name = {_lit(DATABASE)}",
            ),
            SQL(
                "promotion epochs",
                "mysql",
                flavor.promotions_table(),
                guard=f"SELECT 1 FROM information_schema.tables WHERE table_schema = {_lit(EPOCH_SCHEMA)} "
                "AND table_name = 'promotions'",
            ),
        ]
        for client in app_clients(ctx.inventory, host):
            steps += [
                SQL(
                    f"user {USER}@{client}",
                    "mysql",
                    flavor.create_user(USER, client, password),
                    guard=user_guard(USER, client),
                ),
                account_password(flavor, USER, client, password),
                SQL(
                    f"grants {USER}@{client}",
                    "mysql",
                    flavor.grant_app(client),
                    guard=privileges_guard(USER, client, APP_PRIVILEGES, DATABASE),
                ),
            ]
        monitor = ctx.settings.monitoring.db_user
        steps += [
            SQL(
                f"user {monitor}@localhost",
                "mysql",
                flavor.create_user(monitor, "localhost", ctx.secrets.get(DB_MONITORING_PASSWORD)),
                guard=user_guard(monitor, "localhost"),
            ),
            account_password(flavor, monitor, "localhost", ctx.secrets.get(DB_MONITORING_PASSWORD)),
            SQL(
                f"grants {monitor}@localhost",
                "mysql",
                flavor.grant_monitoring(monitor),
                guard=privileges_guard(monitor, "localhost", flavor.monitoring_privileges, None),
            ),
        ]
        # Every DB host, the primary too: after a failover any of them replicates.
        for peer in db_hosts(ctx.inventory):
            a = peer.private_address
            steps += [
                SQL(
                    f"user {REPLICATION_USER}@{a}",
                    "mysql",
                    flavor.create_user(REPLICATION_USER, a, repl_password),
                    guard=user_guard(REPLICATION_USER, a),
                ),
                account_password(flavor, REPLICATION_USER, a, repl_password),
                SQL(
                    f"grants {REPLICATION_USER}@{a}",
                    "mysql",
                    flavor.grant_replication(a),
                    guard=privileges_guard(REPLICATION_USER, a, flavor.replication_privileges, None),
                ),
            ]
        return steps

    def handlers(self, ctx: Context):
        return {"restart fence": Command("restart mmdeploy-mysql-fence", "systemctl restart mmdeploy-mysql-fence")}

    def checks(self, inventory):
        return replication_check(inventory, "mysql") if self.hosts(inventory) else []


class Replicate(Step):
    """This replica follows the live primary: started, re-pointed (its transactions are all
    on the primary) or seeded (it holds no data), as `plan_replica` decides from
    the node's live state."""

    def __init__(self, topology: Topology, host: Host, series: str):
        self.topology, self.host, self.flavor, self.series = topology, host, flavor_of(host), series
        self.primary = topology.require_primary()
        self.name = f"replicate from {self.primary.name}"
        self._probe = self.flavor.probe()

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        states = dict(self.topology.states)
        states[self.host.name] = parse_probe(self.flavor, self.host, facts[self._probe])
        action = plan_replica(
            Topology(self.topology.hosts, states, self.topology.primary, self.topology.reason), self.host
        )
        primary = f"{self.primary.name} ({self.primary.private_address})"
        return {
            None: None,
            "start": Change("start replication"),
            "repoint": Change(f"re-point to {primary}"),
            "seed": Change(f"seed from {primary} and replicate"),
        }[action]

    def apply(self, remote: Remote, change: Change) -> None:
        primary = self.primary
        if change.summary == "start replication":
            script = f"mysql --protocol=socket -e '{self.flavor.start_replica}'"
        elif change.summary.startswith("re-point"):
            script = follow_script(self.flavor, primary, keep_position=False)
        else:
            script = seed_script(self.flavor, primary, self.series)
        run_checked(remote, script, self.name, timeout=SEED_TIMEOUT)


class MySQLReplication(DBComponent):
    """Each replica seeded from, or re-pointed to, the live primary; then the mysqld
    exporter (its account now replicated)."""

    name = "mysql-replication"
    engine = "mysql"
    after = ("mysql",)
    metrics = (Metrics("mysql", EXPORTER_PORT),)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        exporter = self._exporter(ctx)
        primary = topo.require_primary()
        if ctx.host.name == primary.name or topo.states[ctx.host.name].fenced:
            return exporter
        if not topo.states[primary.name].running:
            raise MMDeployError(f"the primary {primary.name} does not answer: cannot set up replication")
        return [
            Replicate(topo, ctx.host, ctx.settings.database.mysql_series),
            source_password(flavor_of(ctx.host), ctx.secrets.get(DB_REPLICATION_PASSWORD)),
            *exporter,
        ]

    def _exporter(self, ctx: Context) -> list[Step]:
        password, user = ctx.secrets.get(DB_MONITORING_PASSWORD), ctx.settings.monitoring.db_user
        unit = exporter(ctx)
        listen = listen_flag(ctx.host.private_address, EXPORTER_PORT)
        if distros.of(ctx.facts.host("os")).mysqld_exporter_reads_dsn:
            dsn = f"{user}:{password}@unix(/run/mysqld/mysqld.sock)/"
            return exporter_steps(unit, env_file("components/mysql", DATA_SOURCE_NAME=dsn, ARGS=listen))
        # 0.15 and later ignore DATA_SOURCE_NAME: the login is in a my.cnf file of its own.
        # The password is not in it: that file is read as INI with $VARIABLES expanded, which
        # would change a password holding '$', ';' or '#'; the exporter takes it as it is from
        # MYSQLD_EXPORTER_PASSWORD (in the root-only environment file).
        steps = exporter_steps(
            unit,
            env_file(
                "components/mysql", MYSQLD_EXPORTER_PASSWORD=password, ARGS=f"--config.my-cnf={EXPORTER_CNF} {listen}"
            ),
        )
        cnf = SecretFile(
            EXPORTER_CNF,
            f"[client]\nuser={user}\nsocket=/run/mysqld/mysqld.sock\n",
            owner="prometheus",
            group="prometheus",
            mode="0640",
            notify=(restart_handler(unit),),
        )
        steps.insert(2, cnf)  # once its user exists, before the package starts it
        return steps

    def handlers(self, ctx: Context):
        return exporter_handlers(exporter(ctx))
