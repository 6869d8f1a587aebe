"""PostgreSQL from Debian's own packages: one primary, streaming replicas, and the dbtier
Engine that reads and moves that topology.

Two components, because a replica can only be seeded once the primary is configured:
`postgresql` (package, cluster, config, pg_hba, users and slots on the primary) and then
`postgresql-replication` (each node's place in the topology: replicas seeded with
pg_basebackup and streaming, the primary waiting for ANY 1 of them). Both read the live
roles of every DB host in prepare(), so a deploy after a failover keeps the new primary and
never re-seeds a healthy replica.

Paths follow Debian's layout (cluster `main` of version V):
  /etc/postgresql/V/main (config)   /var/lib/postgresql/V/main (data)   postgresql@V-main
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

from ..component import Check, Component, Context
from ..dbtier import NodeState, sync_set
from ..errors import MMDeployError
from ..facts import Fact
from ..inventory import Host, Inventory
from ..ops import SQL, Command, Directory, File, Packages, Service, unit
from ..remote import Remote
from ..step import Change, run_checked

DATABASE, USER, REPLICATION_USER = "mattermost", "mmuser", "replicator"
PGPASS = "/var/lib/postgresql/.pgpass"
# Outside the data directory, so neither pg_basebackup nor pg_rewind copies it.
FENCED = "/var/lib/postgresql/mmdeploy-fenced"
TOPOLOGY = "mmdeploy-topology.conf"
SLOT_KEEP_MB = 8192


@dataclass(frozen=True)
class Paths:
    version: str

    @property
    def conf(self) -> str:
        return f"/etc/postgresql/{self.version}/main"

    @property
    def data(self) -> str:
        return f"/var/lib/postgresql/{self.version}/main"

    @property
    def bin(self) -> str:
        return f"/usr/lib/postgresql/{self.version}/bin"

    @property
    def unit(self) -> str:
        return f"postgresql@{self.version}-main"


def paths(host: Host) -> Paths:
    return Paths(host.settings.database.postgresql_version)


def db_hosts(inventory: Inventory) -> list[Host]:
    return [h for h in inventory.with_role("db") if h.settings.database.engine == "postgresql"]


def slot_name(host: Host) -> str:
    return host.name.replace("-", "_")  # slot names allow [a-z0-9_] only


# --- sizing and rendering (pure, unit-tested) -------------------------------------------


def sizing(memory_mb: int) -> dict:
    """Memory settings after Mattermost's database guidance: about 1024 connections on a
    dedicated DB server (SqlSettings.MaxOpenConns of several app servers), the planner told
    that about 65% of memory caches data, work_mem 16 MB; fewer connections and smaller
    work_mem on small hosts. shared_buffers at 25% (20% below 12 GB) is PostgreSQL's own
    advice."""
    gb = memory_mb / 1024
    if gb >= 12:
        connections, work_mem, share = 1024, 16, 0.25
    elif gb >= 4:
        connections, work_mem, share = 500, 8, 0.20
    else:
        connections, work_mem, share = 200, 4, 0.20
    return {
        "memory_mb": memory_mb,
        "max_connections": connections,
        "shared_buffers_mb": max(128, int(memory_mb * share)),
        "effective_cache_size_mb": max(256, int(memory_mb * 0.65)),
        "work_mem_mb": work_mem,
        "maintenance_work_mem_mb": max(64, min(1024, memory_mb // 16)),
        "slot_keep_mb": SLOT_KEEP_MB,
    }


def sync_names(replicas: list[Host], synchronous: bool) -> str:
    if not synchronous or not replicas:
        return ""
    return "ANY 1 (" + ", ".join(sorted(h.name for h in replicas)) + ")"


def conninfo(primary: Host, application_name: str | None = None, dbname: str | None = None) -> str:
    parts = [f"host={primary.private_address}", "port=5432", f"user={REPLICATION_USER}",
             f"passfile={PGPASS}", "connect_timeout=5"]
    if application_name:
        parts.append(f"application_name={application_name}")
    if dbname:
        parts.append(f"dbname={dbname}")
    return " ".join(parts)


def topology_conf(host: Host, primary: Host, replicas: list[Host]) -> str:
    """This node's place in the replication topology. Written by deploy and by failover /
    rejoin alike, so that a deploy after a failover finds nothing to change."""
    lines = ["# Managed by mmdeploy (deploy, failover-db, db.rejoin): the replication topology.",
             f"# mmdeploy-primary: {primary.name}"]
    if host.name == primary.name:
        names = sync_names(replicas, host.settings.database.synchronous)
        lines.append(f"synchronous_standby_names = '{names}'")
    else:
        lines.append(f"primary_conninfo = '{conninfo(primary, application_name=host.name)}'")
        lines.append(f"primary_slot_name = '{slot_name(host)}'")
    return "\n".join(lines) + "\n"


def hba_addresses(inventory: Inventory, host: Host) -> tuple[list[str], list[str]]:
    """(Mattermost clients, replication peers) as pg_hba addresses."""
    def cidr(address: str) -> str:
        return address if "/" in address else f"{address}/32"

    clients = [cidr(h.private_address) for h in inventory.hosts if h.has("app") or h.has("jobserver")]
    clients += [cidr(a) for a in host.settings.database.extra_clients]
    peers = [cidr(h.private_address) for h in db_hosts(inventory) if h.name != host.name]
    return list(dict.fromkeys(clients)), peers


# --- reading a node -------------------------------------------------------------------


def probe(p: Paths) -> str:
    """One read-only script; prints key=value lines that parse_probe reads."""
    return f"""\
D={p.data}; C={p.conf}
echo "installed=$(test -x {p.bin}/postgres && echo 1 || echo 0)"
echo "data=$(test -f $D/PG_VERSION && echo 1 || echo 0)"
echo "standby_signal=$(test -f $D/standby.signal && echo 1 || echo 0)"
echo "fenced=$(test -f {FENCED} && echo 1 || echo 0)"
echo "unit=$(systemctl is-enabled {p.unit} 2>/dev/null)/$(systemctl is-active {p.unit} 2>/dev/null)"
if [ -f $D/PG_VERSION ]; then
  runuser -u postgres -- {p.bin}/pg_controldata -D $D 2>/dev/null | awk -F': *' '
    /^Database system identifier/ {{print "sysid=" $2}}
    /^Database cluster state/ {{print "cluster_state=" $2}}'
fi
sed -n -e 's/^# mmdeploy-primary: /conf_primary=/p' \\
  -e "s/^primary_conninfo = 'host=\\([^ ]*\\) .*/conf_upstream=\\1/p" $C/conf.d/{TOPOLOGY} 2>/dev/null
runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' 2>/dev/null
select 'recovery=' || pg_is_in_recovery();
select 'read_only=' || current_setting('default_transaction_read_only');
select 'sync_names=' || current_setting('synchronous_standby_names');
select 'sync_commit=' || current_setting('synchronous_commit');
select 'lsn=' || case when pg_is_in_recovery() then '' else pg_current_wal_lsn()::text end;
select 'timeline=' || case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint())
  else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end;
select 'received=' || coalesce(pg_last_wal_receive_lsn()::text, '');
select 'replayed=' || coalesce(pg_last_wal_replay_lsn()::text, '');
select 'replay_age=' || coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::text, '');
select 'receiver=' || coalesce(sender_host, '') || ',' || status from pg_stat_wal_receiver;
select 'replica=' || application_name || ',' || coalesce(host(client_addr), '') || ',' || state || ','
  || sync_state || ',' || coalesce(flush_lsn::text, '') from pg_stat_replication;
select 'slot=' || slot_name || ',' || active from pg_replication_slots;
SQL
"""


def lsn(text: str) -> int | None:
    """'16/B374D848' -> an int that orders like the LSN."""
    if not text or "/" not in text:
        return None
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def parse_probe(host: Host, fact: Fact) -> NodeState:
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {"replica": [], "slot": [], "receiver": []}
    for line in fact.out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in lists:
            lists[key].append(value)
        else:
            values[key] = value
    running = "recovery" in values
    in_recovery = values.get("recovery") == "true"
    if running:
        role = "replica" if in_recovery else "primary"
    elif values.get("data") == "1":
        role = "replica" if values.get("standby_signal") == "1" else "primary"
    else:
        role = "unknown"
    fenced = values.get("fenced") == "1"
    replicas = []
    for row in lists["replica"]:
        name, address, state, sync_state, _flush = (row.split(",") + [""] * 5)[:5]
        replicas.append(f"{name}({address}) {state} {sync_state}")
    state = NodeState(host=host, reachable=True, running=running, role=role,
                      writable=running and not in_recovery and values.get("read_only") == "off",
                      fenced=fenced)
    state.extra = {k: values.get(k, "") for k in ("sysid", "cluster_state", "conf_primary", "conf_upstream",
                                                     "unit", "timeline", "installed", "data")}
    state.extra["slots"] = [s.split(",")[0] for s in lists["slot"]]
    state.extra["streaming"] = [r.split(",")[0] for r in lists["replica"] if ",streaming," in r]
    if role == "primary" and running:
        state.received = state.applied = lsn(values.get("lsn", ""))
        state.replicas = replicas
        names = values.get("sync_names", "")
        state.sync = f"synchronous: {names} (synchronous_commit={values.get('sync_commit')})" if names else "asynchronous"
        state.lag_seconds = 0.0
    elif role == "replica":
        state.upstream = values.get("conf_upstream") or None
        received, replayed = lsn(values.get("received", "")), lsn(values.get("replayed", ""))
        state.applied = replayed
        state.received = max(p for p in (received, replayed, -1) if p is not None) if running else None
        if running:
            age = values.get("replay_age") or "0"
            state.lag_seconds = 0.0 if received is None or replayed is None or received <= replayed else round(float(age), 1)
        receiver = (lists["receiver"] or [","])[0].split(",")
        state.sync = f"receiver {receiver[1] or 'down'} from {receiver[0] or '-'}"
    detail = [f"timeline {values['timeline']}" if values.get("timeline") else "",
              "FENCED" if fenced else "", f"unit {values.get('unit', '?')}"]
    if not running and values.get("cluster_state"):
        detail.append(f"state: {values['cluster_state']}")
    state.detail = ", ".join(d for d in detail if d)
    return state


def unreachable(host: Host, why: str) -> NodeState:
    return NodeState(host=host, reachable=False, running=False, role="unknown", writable=False,
                     detail=why)


# --- topology decided from the live roles ---------------------------------------------


@dataclass
class Topology:
    primary: Host
    states: dict[str, NodeState]

    def replicas(self, hosts: list[Host]) -> list[Host]:
        """The other DB hosts that are or will be replicas of the primary this run: not
        fenced (a former primary waits for db.rejoin) and reachable."""
        return sync_set(hosts, self.states, self.primary)

    def needs_seed(self, host: Host) -> bool:
        """A replica is seeded only when it holds no data of this cluster: never re-seed a
        healthy replica, and refuse to wipe a former primary (that is db.rejoin's job)."""
        mine, primary = self.states[host.name], self.states[self.primary.name]
        same_cluster = mine.extra.get("sysid") and mine.extra.get("sysid") == primary.extra.get("sysid")
        if not same_cluster:
            return True
        if mine.role != "replica":
            raise MMDeployError(
                f"{host.name} holds data of this cluster but is not a replica (a former primary?); "
                f"bring it back with `inv db.rejoin {host.name}`")
        return False


def decide(hosts: list[Host], states: dict[str, NodeState]) -> Topology:
    """Which node is the primary, from the live roles: the one writable node; when none
    answers, the primary the nodes' topology files name; on a fresh install, the first DB
    host in inventory order. Two writable nodes is split brain: refuse."""
    writable = [states[h.name] for h in hosts if states[h.name].writable and not states[h.name].fenced]
    if len(writable) > 1:
        names = ", ".join(s.host.name for s in writable)
        raise MMDeployError(
            f"two writable PostgreSQL nodes ({names}): refusing to touch the database tier. "
            "Fence the one that must not take writes (inv failover-db, or stop it), then run again.")
    if writable:
        return Topology(writable[0].host, states)
    by_name = {h.name: h for h in hosts}
    named = Counter(s.extra.get("conf_primary") for s in states.values()
                    if s.reachable and not s.fenced and s.extra.get("conf_primary") in by_name)
    if named:
        return Topology(by_name[named.most_common(1)[0][0]], states)
    return Topology(hosts[0], states)


def read_states(hosts: list[Host], facts_of) -> dict[str, NodeState]:
    """facts_of(host, commands) -> facts; an unreachable host reads as such."""
    states = {}
    for h in hosts:
        command = probe(paths(h))
        try:
            states[h.name] = parse_probe(h, facts_of(h, [command])[command])
        except MMDeployError as e:
            states[h.name] = unreachable(h, str(e))
    return states


# --- scripts shared by deploy, failover and rejoin ------------------------------------


def seed_script(p: Paths, primary: Host, replica: Host) -> str:
    """Replace this node's data with a base backup of the primary and start it as a replica."""
    source = shlex.quote(conninfo(primary))
    return f"""\
set -e
systemctl stop {p.unit} || true
find {p.data} -mindepth 1 -delete
runuser -u postgres -- {p.bin}/pg_basebackup -d {source} -D {p.data} -X stream -S {slot_name(replica)} --checkpoint=fast -w
touch {p.data}/standby.signal && chown postgres:postgres {p.data}/standby.signal
rm -f {FENCED}
systemctl unmask {p.unit}
systemctl start {p.unit}
"""


def write_topology(remote: Remote, primary: Host, replicas: list[Host]) -> None:
    host = remote.host
    File(f"{paths(host).conf}/conf.d/{TOPOLOGY}", topology_conf(host, primary, replicas),
         owner="postgres", group="postgres").apply(remote, Change("update"))


def _psql(remote: Remote, sql: str, what: str) -> str:
    script = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"
    return run_checked(remote, script, what).stdout.strip()


def slots_sql(peers: list[Host]) -> str:
    return "\n".join(
        f"select pg_create_physical_replication_slot('{slot_name(h)}', true) where not exists "
        f"(select 1 from pg_replication_slots where slot_name = '{slot_name(h)}');" for h in peers)


# --- the components -------------------------------------------------------------------


class _OnLiveTopology(Component):
    """Both PostgreSQL components run on the DB hosts and act on the live roles."""

    def hosts(self, inventory):
        return db_hosts(inventory)

    def prepare(self, inventory, view):
        return decide(db_hosts(inventory), read_states(db_hosts(inventory), view.facts))


class PostgreSQL(_OnLiveTopology):
    name = "postgresql"
    after = ("base",)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, p = ctx.host, paths(ctx.host)
        memory_mb = ctx.settings.database.memory_mb or int(ctx.facts.host("mem_kb")) // 1024
        clients, peers = hba_addresses(ctx.inventory, host)
        monitor = ctx.settings.monitoring.db_user
        repl_password = ctx.secrets.get("db_replication_password")
        fence_vars = dict(data_dir=p.data, fenced=FENCED, peers=" ".join(a.split("/")[0] for a in peers),
                          replication_user=REPLICATION_USER, bin_dir=p.bin, unit=p.unit)
        steps = [
            Directory("/etc/postgresql-common/createcluster.d"),
            File("/etc/postgresql-common/createcluster.d/mmdeploy.conf",
                 ctx.render("postgresql/createcluster.conf.j2")),
            Packages(f"postgresql-{p.version}"),
            Command(f"create cluster {p.version}/main",
                    f"pg_createcluster {p.version} main -- --data-checksums",
                    unless=f"test -f {p.conf}/postgresql.conf"),
            File(f"{p.conf}/conf.d/mmdeploy.conf", ctx.render("postgresql/mmdeploy.conf.j2", size=sizing(memory_mb)),
                 owner="postgres", group="postgres", notify=("restart",)),
            File(f"{p.conf}/pg_hba.conf",
                 ctx.render("postgresql/pg_hba.conf.j2", clients=clients, peers=peers, database=DATABASE,
                            user=USER, replication_user=REPLICATION_USER, monitor_user=monitor,
                            extra_clients=host.settings.database.extra_clients),
                 owner="postgres", group="postgres", mode="0640", notify=("reload",)),
            # pg_basebackup, pg_rewind, streaming and the fence check authenticate with it.
            File(PGPASS, f"*:5432:*:{REPLICATION_USER}:{repl_password}\n", owner="postgres", group="postgres",
                 mode="0600"),
            File("/usr/local/sbin/mmdeploy-pg-fence", ctx.render("postgresql/mmdeploy-pg-fence.j2", **fence_vars),
                 mode="0755", notify=("restart fence",)),
            Directory(f"/etc/systemd/system/{p.unit}.service.d"),
            File(f"/etc/systemd/system/{p.unit}.service.d/mmdeploy-fence.conf",
                 ctx.render("postgresql/fence-check.conf.j2"), then="systemctl daemon-reload"),
            unit("mmdeploy-pg-fence.service", ctx.render("postgresql/mmdeploy-pg-fence.service.j2", unit=p.unit),
                 notify=("restart fence",)),
            Service("mmdeploy-pg-fence"),
        ]
        if host.name != topo.primary.name:
            return steps
        password, monitor_password = ctx.secrets.get("db_password"), ctx.secrets.get("db_monitoring_password")
        others = [h for h in db_hosts(ctx.inventory) if h.name != host.name]
        steps += [
            Service(p.unit),
            SQL(f"role {REPLICATION_USER}", "postgresql",
                f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD '{_quote(repl_password)}';\n"
                # pg_rewind reads the new primary's files through these, without superuser.
                + "".join(f"GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {REPLICATION_USER};\n" for f in (
                    "pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
                    "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)")),
                guard=f"select 1 from pg_roles where rolname = '{REPLICATION_USER}'"),
            SQL(f"role {USER}", "postgresql", f"CREATE ROLE {USER} WITH LOGIN PASSWORD '{_quote(password)}';",
                guard=f"select 1 from pg_roles where rolname = '{USER}'"),
            SQL(f"database {DATABASE}", "postgresql",
                f"CREATE DATABASE {DATABASE} OWNER {USER} ENCODING 'UTF8' TEMPLATE template0;",
                guard=f"select 1 from pg_database where datname = '{DATABASE}'"),
            # The postgres exporter's login (components/exporters.py): read-only statistics.
            SQL(f"role {monitor}", "postgresql",
                f"CREATE ROLE {monitor} WITH LOGIN PASSWORD '{_quote(monitor_password)}';\n"
                f"GRANT pg_monitor TO {monitor};",
                guard=f"select 1 from pg_roles where rolname = '{monitor}'"),
        ]
        steps += [SQL(f"replication slot {slot_name(h)}", "postgresql", slots_sql([h]),
                      guard=f"select 1 from pg_replication_slots where slot_name = '{slot_name(h)}'")
                  for h in others]
        return steps

    def handlers(self, ctx: Context):
        u = paths(ctx.host).unit
        # try-*: a stopped (not yet seeded, or fenced) server is not started by a config change.
        return {
            "restart": Command(f"restart {u}", f"systemctl try-restart {u}"),
            "reload": Command(f"reload {u}", f"systemctl try-reload-or-restart {u}"),
            "restart fence": Command("restart mmdeploy-pg-fence", "systemctl restart mmdeploy-pg-fence"),
        }

    def checks(self, inventory):
        if not db_hosts(inventory):
            return []
        return [Check("postgresql: one writable node, every replica streaming", lambda: _replication_problem(inventory))]


class PostgreSQLReplication(_OnLiveTopology):
    name = "postgresql-replication"
    after = ("postgresql",)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, p = ctx.host, paths(ctx.host)
        if topo.states[host.name].fenced:
            return []  # a former primary stays down until `inv db.rejoin`
        replicas = topo.replicas(db_hosts(ctx.inventory))
        path = f"{p.conf}/conf.d/{TOPOLOGY}"
        content = topology_conf(host, topo.primary, replicas)
        if host.name != topo.primary.name and topo.needs_seed(host):
            return [File(path, content, owner="postgres", group="postgres"),
                    Command(f"seed from {topo.primary.name} (pg_basebackup)", seed_script(p, topo.primary, host)),
                    Service(p.unit)]
        return [File(path, content, owner="postgres", group="postgres", notify=("reload",)), Service(p.unit)]

    def handlers(self, ctx: Context):
        u = paths(ctx.host).unit
        return {"reload": Command(f"reload {u}", f"systemctl try-reload-or-restart {u}")}


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _replication_problem(inventory: Inventory) -> str | None:
    from .. import dbtier

    states = dbtier.status(inventory)
    writable = [s.host.name for s in states if s.writable]
    if len(writable) != 1:
        return f"expected one writable node, found {len(writable)} ({', '.join(writable) or 'none'})"
    primary = next(s for s in states if s.writable)
    missing = [s.host.name for s in states if s is not primary and s.host.name not in primary.extra["streaming"]]
    return f"not streaming from {primary.host.name}: {', '.join(missing)}" if missing else None


# --- the dbtier Engine ----------------------------------------------------------------


class PGEngine:
    """dbtier.Engine for PostgreSQL streaming replication."""

    name = "postgresql"

    def __init__(self, version: str = "15"):
        self.paths = Paths(version)

    def probe(self) -> list[str]:
        return [probe(self.paths)]

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState:
        return parse_probe(host, facts[probe(self.paths)])

    def fence(self, remote: Remote) -> None:
        # A fast shutdown cuts every client and first streams all WAL (up to the shutdown
        # checkpoint) to the replicas; masked, it cannot come back as a writer. Stopped
        # rather than restarted read-only: a standby restart of a just-promoted node can
        # leave its control file on an old timeline, which pg_rewind then misreads.
        self.stop_and_mask(remote)

    def stop_and_mask(self, remote: Remote) -> None:
        p = paths(remote.host)
        run_checked(remote, f"""\
set -e
echo "fenced (stopped) by mmdeploy failover-db at $(date -Is)" > {FENCED}
systemctl stop {p.unit}
if [ -f {p.data}/PG_VERSION ]; then touch {p.data}/standby.signal; chown postgres:postgres {p.data}/standby.signal; fi
systemctl mask {p.unit}
""", f"stop and mask {remote.host.name}")

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        known = [s for s in replicas if s.received is not None]
        if not known:
            raise MMDeployError("no replica reports a WAL position: cannot tell which one is most advanced")
        best = max(s.received for s in known)
        return next(s for s in known if s.received == best)  # ties: inventory order

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None:
        run_checked(remote, f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(runuser -u postgres -- psql -XAtq -c \\
  "select coalesce(pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), true)")" = t ]; do
  [ $SECONDS -lt $end ] || {{ echo "replay did not catch up with received WAL in {int(timeout)} s" >&2; exit 1; }}
  sleep 0.05
done
""", f"wait for {remote.host.name} to apply its WAL")

    def promote(self, remote: Remote, node: NodeState) -> None:
        out = _psql(remote, "select pg_promote(true, 60);", f"promote {remote.host.name}")
        if out != "t":
            raise MMDeployError(f"promote {remote.host.name}: pg_promote did not finish in 60 s")
        # Until a checkpoint, the control file still names the old timeline and pg_rewind,
        # reading it as a source, finds the wrong divergence point (see pg_rewind's notes).
        _psql(remote, "checkpoint;", f"checkpoint {remote.host.name} after promotion")

    def attach(self, remote: Remote, peers: list[Host], replicas: list[Host]) -> None:
        """Primary side: a slot for every other DB host; commits wait for ANY 1 of `replicas`."""
        write_topology(remote, remote.host, replicas)
        _psql(remote, slots_sql(peers) + "\nselect pg_reload_conf();", f"slots and sync on {remote.host.name}")

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None:
        # primary_conninfo is reloadable; the replica follows the new timeline by streaming.
        write_topology(remote, primary, [])
        run_checked(remote, f"systemctl reload {paths(remote.host).unit}", f"re-point {remote.host.name}")

    def wait_streaming(self, remote: Remote, timeout: float) -> bool:
        result = remote.run(f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(runuser -u postgres -- psql -XAtq -c "select status from pg_stat_wal_receiver")" = streaming ]; do
  [ $SECONDS -lt $end ] || exit 1
  sleep 0.1
done
""")
        return result.ok

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        p = paths(remote.host)
        source = shlex.quote(conninfo(primary, dbname="postgres"))
        # Masked while it is rewound, so nothing starts it as a writer; standby.signal
        # only after the rewind (a crashed node's recovery runs in single-user mode, which
        # refuses standby mode).
        result = remote.run(f"""\
set -e
systemctl mask {p.unit}
systemctl stop {p.unit}
case "$(runuser -u postgres -- {p.bin}/pg_controldata -D {p.data} | sed -n 's/^Database cluster state: *//p')" in
  "shut down"|"shut down in recovery") ;;
  *) rm -f {p.data}/standby.signal ;;
esac
cd /tmp  # runuser keeps root's working directory, which postgres cannot enter
runuser -u postgres -- {p.bin}/pg_rewind -D {p.data} --source-server={source}
""")
        write_topology(remote, primary, [])
        if not result.ok:  # e.g. the WAL it needs is gone: a fresh copy (pg_rewind's output is in the log)
            run_checked(remote, seed_script(p, primary, remote.host), f"re-seed {remote.host.name} (pg_rewind failed)")
        else:
            run_checked(remote, f"""\
set -e
rm -rf {p.data}/pg_replslot/*
touch {p.data}/standby.signal && chown postgres:postgres {p.data}/standby.signal
rm -f {FENCED}
systemctl unmask {p.unit}
systemctl start {p.unit}
""", f"start {remote.host.name} as a replica")
        if not self.wait_streaming(remote, 60):
            raise MMDeployError(f"{remote.host.name} was rejoined but does not stream from {primary.name}")


def engine(settings) -> PGEngine:
    """The dbtier entry point (settings: the inventory's DatabaseSettings)."""
    return PGEngine(settings.postgresql_version)
