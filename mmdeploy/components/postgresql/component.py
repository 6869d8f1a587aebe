"""PostgreSQL's two components: `postgresql` (package, cluster, config, pg_hba, and on the
primary users, database and slots) and then `postgresql-replication` (each node's place in
the topology: replicas seeded with pg_basebackup and streaming, the primary waiting for
ANY 1 of them). A replica can only be seeded once the primary is configured, hence two.
Both act on the live topology (dbtier.decide, read once per run in prepare()), so a
deploy after a failover keeps the new primary and never re-seeds a healthy replica."""

from __future__ import annotations

from urllib.parse import quote as quote_url

from ... import distros
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
from ...inventory import Host
from ...ops import SQL, Command, Directory, File, Packages, Service, unit
from ...ops.sql import AccountPassword
from ...ops.exporter import env_file, exporter_handlers, exporter_steps, listen_flag, restart_handler
from ...ops.secretfile import SecretFile
from .config import (
    DATABASE,
    FENCED,
    PGPASS,
    REPLICATION_USER,
    TOPOLOGY,
    USER,
    Paths,
    hba_addresses,
    paths,
    sizing,
    slot_name,
    topology_conf,
)
from .engine import PGEngine
from .scripts import SEED_TIMEOUT, quote, role_steps, seed_script, slots_sql

EXPORTER_PORT = 9187  # the Debian package's default
QUERIES = "/etc/prometheus-postgres-exporter/mmdeploy-queries.yaml"


def exporter(ctx: Context) -> str:
    """The postgres exporter's package (and unit) on this host's distribution."""
    return distros.of(ctx.facts.host("os")).exporter("postgres")


def pgpass_escape(value: str) -> str:
    """A .pgpass field: backslash and colon escaped with a backslash."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def role_password(role: str, password: str) -> AccountPassword:
    """The role's password is the secret's: set again when the secret changed (rotation)."""
    engine = PGEngine()
    return AccountPassword(
        f"role {role}",
        "postgresql",
        f"ALTER ROLE {role} WITH PASSWORD '{quote(password)}';",
        probe=engine.account_probe(),
        matches=lambda fact: engine.account_matches(fact, role, None, password),
    )


def needs_seed(topo: Topology, host: Host) -> bool:
    """A replica is seeded only when it holds no data of this cluster: never re-seed a
    healthy replica, and refuse to wipe a former primary (that is db.rejoin's job)."""
    mine, primary = topo.states[host.name], topo.states[topo.require_primary().name]
    same_cluster = mine.extra.get("sysid") and mine.extra.get("sysid") == primary.extra.get("sysid")
    if not same_cluster:
        return True
    if mine.role != "replica":
        raise MMDeployError(
            f"{host.name} holds data of this cluster but is not a replica (a former primary?); "
            f"bring it back with `inv db.rejoin {host.name}`"
        )
    return False


class PostgreSQL(DBComponent):
    """Package, cluster, config, pg_hba, fence watcher; on the primary: users, database,
    slots."""

    name = "postgresql"
    engine = "postgresql"
    # Mattermost on the app and job hosts, replication between the DB hosts, and the
    # addresses of database.extra_clients (with Patroni, HAProxy on the proxies too: that
    # route is derived from Patroni's Balanced layers). On every DB host, MySQL's too:
    # `inv db.migrate` brings PostgreSQL up beside MySQL and cuts Mattermost over to it
    # without a firewall deploy in between.
    ports = (
        Port(
            "postgresql",
            5432,
            ("app", "jobserver", "db", "settings.database.extra_clients"),
            on=lambda inventory: inventory.with_role("db"),
        ),
    )
    after = ("base",)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, p = ctx.host, paths(ctx.host, ctx.facts.host("os"))
        memory_mb = ctx.settings.database.memory_mb or int(ctx.facts.host("mem_kb")) // 1024
        if host.settings.database.ha == "patroni":
            return self._under_patroni(ctx, p, memory_mb)
        clients, peers = hba_addresses(ctx.inventory, host)
        monitor = ctx.settings.monitoring.db_user
        repl_password = ctx.secrets.get(DB_REPLICATION_PASSWORD)
        fence_vars = dict(
            data_dir=p.data,
            fenced=FENCED,
            peers=" ".join(a.split("/")[0] for a in peers),
            replication_user=REPLICATION_USER,
            bin_dir=p.bin,
            unit=p.unit,
            pgpass=PGPASS,
        )
        steps = [
            Directory("/etc/postgresql-common/createcluster.d"),
            File(
                "/etc/postgresql-common/createcluster.d/mmdeploy.conf", ctx.render("postgresql/createcluster.conf.j2")
            ),
            Packages(f"postgresql-{p.version}"),
            # A cluster whose creation was interrupted (config written, initdb cut short)
            # has no pg_control: nothing in it can be data, it is made again.
            Command(
                f"create cluster {p.version}/main",
                f"set -e\nif [ -e {p.conf} ] && [ ! -f {p.data}/global/pg_control ]; then\n"
                f"  pg_dropcluster --stop {p.version} main || rm -rf {p.conf} {p.data}\nfi\n"
                f"pg_createcluster {p.version} main -- --data-checksums\n",
                unless=f"test -f {p.conf}/postgresql.conf && test -f {p.data}/global/pg_control",
            ),
            File(
                f"{p.conf}/conf.d/mmdeploy.conf",
                ctx.render("postgresql/mmdeploy.conf.j2", size=sizing(memory_mb), patroni=False),
                owner="postgres",
                group="postgres",
                notify=("restart",),
            ),
            File(
                f"{p.conf}/pg_hba.conf",
                ctx.render(
                    "postgresql/pg_hba.conf.j2",
                    clients=clients,
                    peers=peers,
                    database=DATABASE,
                    user=USER,
                    replication_user=REPLICATION_USER,
                    monitor_user=monitor,
                    extra_clients=host.settings.database.extra_clients,
                ),
                owner="postgres",
                group="postgres",
                mode="0640",
                notify=("reload",),
            ),
            # pg_basebackup, pg_rewind, streaming and the fence check authenticate with it.
            SecretFile(
                PGPASS,
                f"*:5432:*:{REPLICATION_USER}:{pgpass_escape(repl_password)}\n",
                owner="postgres",
                group="postgres",
                mode="0600",
            ),
            File(
                "/usr/local/sbin/mmdeploy-pg-fence",
                ctx.render("postgresql/mmdeploy-pg-fence.j2", **fence_vars),
                mode="0755",
                notify=("restart fence",),
            ),
            Directory(f"/etc/systemd/system/{p.unit}.service.d"),
            File(
                f"/etc/systemd/system/{p.unit}.service.d/mmdeploy-fence.conf",
                ctx.render("postgresql/fence-check.conf.j2"),
                then="systemctl daemon-reload",
            ),
            unit(
                "mmdeploy-pg-fence.service",
                ctx.render("postgresql/mmdeploy-pg-fence.service.j2", unit=p.unit),
                notify=("restart fence",),
            ),
            Service("mmdeploy-pg-fence"),
        ]
        if topo.primary is None or host.name != topo.primary.name:  # the replication step says why
            return steps
        others = [h for h in self.hosts(ctx.inventory) if h.name != host.name]
        password, monitor_password = ctx.secrets.get(DB_PASSWORD), ctx.secrets.get(DB_MONITORING_PASSWORD)
        # A changed db_password: the role first, then (the mattermost component, later) the
        # servers, which keep their open connections meanwhile.
        steps += [
            Service(p.unit),
            *role_steps(ctx),
            role_password(USER, password),
            role_password(monitor, monitor_password),
        ]
        steps += [
            SQL(
                f"replication slot {slot_name(h)}",
                "postgresql",
                slots_sql([h]),
                guard=f"select 1 from pg_replication_slots where slot_name = '{slot_name(h)}'",
            )
            for h in others
        ]
        return steps

    def _under_patroni(self, ctx: Context, p: Paths, memory_mb: int) -> list:
        """database.ha patroni: the package and Debian's cluster layout (its configuration
        directory; Patroni creates the data or copies it from the leader), the settings
        Patroni leaves to postgresql.conf, and postgresql@V-main no longer started.
        pg_hba.conf is Patroni's (its configuration lists the same rules). Leftovers of
        streaming replication (a tier being converted) go: Patroni fences and follows."""
        fence_files = [
            "/etc/systemd/system/mmdeploy-pg-fence.service",
            "/usr/local/sbin/mmdeploy-pg-fence",
            f"/etc/systemd/system/{p.unit}.service.d/mmdeploy-fence.conf",
            f"{p.conf}/conf.d/{TOPOLOGY}",
        ]
        return [
            Directory("/etc/postgresql-common/createcluster.d"),
            File(
                "/etc/postgresql-common/createcluster.d/mmdeploy.conf", ctx.render("postgresql/createcluster.conf.j2")
            ),
            Packages(f"postgresql-{p.version}"),
            Command(
                f"create cluster {p.version}/main's configuration (Patroni makes its data)",
                f"set -e\npg_createcluster --start-conf=manual {p.version} main\nfind {p.data} -mindepth 1 -delete\n",
                unless=f"test -f {p.conf}/postgresql.conf || test -f {p.conf}/postgresql.base.conf",
            ),
            File(
                f"{p.conf}/conf.d/mmdeploy.conf",
                ctx.render("postgresql/mmdeploy.conf.j2", size=sizing(memory_mb), patroni=True),
                owner="postgres",
                group="postgres",
                notify=("reload under patroni",),
            ),
            # Not started at boot by postgresql.service, nor by its own unit: Patroni runs it.
            File(f"{p.conf}/start.conf", "manual\n", owner="postgres", group="postgres"),
            Command(
                f"disable {p.unit} (Patroni runs the server)",
                f"systemctl disable {p.unit}",
                unless=f"! systemctl is-enabled {p.unit} >/dev/null 2>&1",
            ),
            Command(
                "remove the streaming-replication fence and topology (Patroni's job now)",
                "systemctl disable --now mmdeploy-pg-fence 2>/dev/null || true\n"
                f"rm -f {' '.join(fence_files)}\nsystemctl daemon-reload\n",
                unless=" && ".join(f"test ! -e {f}" for f in fence_files),
            ),
        ]

    def handlers(self, ctx: Context):
        u = paths(ctx.host, ctx.facts.host("os")).unit
        # try-*: a stopped (not yet seeded, or fenced) server is not started by a config change.
        return {
            "reload under patroni": Command(
                "reload PostgreSQL's configuration",
                "runuser -u postgres -- psql -XAtq -c 'select pg_reload_conf()' >/dev/null 2>&1 || true",
            ),
            "restart": Command(f"restart {u}", f"systemctl try-restart {u}"),
            "reload": Command(f"reload {u}", f"systemctl try-reload-or-restart {u}"),
            "restart fence": Command("restart mmdeploy-pg-fence", "systemctl restart mmdeploy-pg-fence"),
        }

    def checks(self, inventory):
        return replication_check(inventory, "postgresql") if self.hosts(inventory) else []


class PostgreSQLReplication(DBComponent):
    """Each node's place in the topology: replicas seeded and streaming, the primary
    waiting for ANY 1 of them; then the postgres exporter (its role now replicated)."""

    name = "postgresql-replication"
    engine = "postgresql"
    # Under Patroni (database.ha patroni) the topology is Patroni's: only the exporter.
    after = ("postgresql", "patroni")
    metrics = (Metrics("postgres", EXPORTER_PORT),)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, p = ctx.host, paths(ctx.host, ctx.facts.host("os"))
        exporter = self._exporter(ctx)
        if host.settings.database.ha == "patroni":
            return exporter
        if topo.states[host.name].fenced:
            return exporter  # a former primary stays down until `inv db.rejoin`
        primary = topo.require_primary()
        path = f"{p.conf}/conf.d/{TOPOLOGY}"
        content = topology_conf(host, primary, topo.replicas)
        if host.name != primary.name and needs_seed(topo, host):
            return [
                File(path, content, owner="postgres", group="postgres"),
                Command(
                    f"seed from {primary.name} (pg_basebackup)", seed_script(p, primary, host), timeout=SEED_TIMEOUT
                ),
                Service(p.unit),
                *exporter,
            ]
        steps = [File(path, content, owner="postgres", group="postgres", notify=("reload",)), Service(p.unit)]
        if host.name == primary.name:
            # A changed replication password: every node's .pgpass has it by now (the
            # postgresql component, before this one on every host), so the replicas'
            # next connection uses it; their running streams are not affected.
            steps.append(role_password(REPLICATION_USER, ctx.secrets.get(DB_REPLICATION_PASSWORD)))
        return steps + exporter

    def _exporter(self, ctx: Context):
        s = ctx.settings
        password = ctx.secrets.get(DB_MONITORING_PASSWORD)
        # The password from a password file (libpq's format, which lib/pq reads too), not in
        # the DSN: the exporter turns a URL into key=value pairs it cannot parse back when
        # the password holds a quote or a backslash, and logs the whole DSN when it fails.
        user, name = s.monitoring.db_user, exporter(ctx)
        passfile = f"/etc/default/{name}.pgpass"
        secret = SecretFile(
            passfile,
            f"*:*:*:{user}:{pgpass_escape(password)}\n",
            owner="prometheus",
            group="prometheus",
            mode="0600",
            notify=(restart_handler(name),),
        )
        dsn = f"postgresql://{quote_url(user)}@127.0.0.1:5432/postgres?sslmode=disable"
        # The role and the lag the alert rules (components/alerting.py) read.
        queries = File(QUERIES, ctx.render("postgresql/exporter-queries.yaml.j2"), notify=(restart_handler(name),))
        return [
            Directory(QUERIES.rsplit("/", 1)[0]),
            queries,
            *exporter_steps(
                name,
                env_file(
                    "components/postgresql",
                    DATA_SOURCE_NAME=dsn,
                    PGPASSFILE=passfile,
                    ARGS=f"--extend.query-path={QUERIES} {listen_flag(ctx.host.private_address, EXPORTER_PORT)}",
                ),
                files=(secret,),
            ),
        ]

    def handlers(self, ctx: Context):
        u = paths(ctx.host, ctx.facts.host("os")).unit
        return {
            "reload": Command(f"reload {u}", f"systemctl try-reload-or-restart {u}"),
            **exporter_handlers(exporter(ctx)),
        }
