"""Patroni (Debian's package, 3.0) on the DB hosts: automatic PostgreSQL failover
(database.ha: patroni, the cluster pattern's default), with its state in etcd
(components/etcd.py) and the clients routed to the leader by HAProxy on the proxies.

What it decides, and why:
- Patroni runs each node's PostgreSQL (Debian's cluster layout: config in
  /etc/postgresql/V/main, data in /var/lib/postgresql/V/main) under its own unit
  patroni@V-main; postgresql@V-main is never started again. Only the node holding the
  leader lock in etcd takes writes: a leader that cannot renew its lock demotes itself,
  and any node starts read-only until it holds the lock, so a leader that comes back
  after a failover rejoins as a replica (pg_rewind, else a fresh copy), never as a
  second writer.
- Synchronous mode: commits wait for a synchronous standby Patroni picks, and only that
  standby may be promoted, so no acknowledged commit is lost on failover.
- Timing (the `patroni` settings): a dead leader's lock expires `ttl` seconds after its
  last renewal, which it makes every `loop_wait`; the replicas watch the lock in etcd and
  race at once. Patroni's documented rule `loop_wait + 2 * retry_timeout <= ttl` is
  enforced; the defaults (ttl 5, loop_wait 1, retry_timeout 2) keep a failover's write
  unavailability under eight seconds. Patroni's documentation names 20 as ttl's smallest
  value since 3.2 (3.0 in Debian 12 takes smaller ones): a site that prefers fewer
  failovers on a slow network sets ttl 20 or more (a failover then takes about as long).
- The clients: HAProxy listens on the site's internal address at `primary_port` (the
  leader: Patroni's REST API answers /primary with 200 on the leader only) and
  `replicas_port` (/replica on the running replicas). Mattermost's DataSource and
  DataSourceReplicas name these routes, so a failover changes nothing on the app servers.
- The REST API listens on the private address only; its unsafe endpoints (switchover,
  restart, reinitialize, configuration) need a password (secret patroni_rest_password)
  and come only from the DB hosts. Its read-only endpoints answer HAProxy's checks.
- Conversion of a running streaming-replication tier (Patroni's "Convert a Standalone to
  a Patroni Cluster"): the users exist, postgresql@V-main is disabled but left running,
  Patroni starts on the primary first (it takes the running server over and initialises
  the cluster in etcd with its system id), then on the replicas, and every node's server
  is restarted once, by Patroni, replicas first, so that Patroni runs it.
"""

from __future__ import annotations

import json
import shlex
from typing import Mapping

import yaml
from pydantic import Field

from ...component import PEERS, Balanced, Check, Context, Port, Warn, down_hosts, live
from ...dbtier import Topology
from ...dbtier.component import (
    DB_MONITORING_PASSWORD,
    DB_PASSWORD,
    DB_REPLICATION_PASSWORD,
    DBComponent,
)
from ...errors import MMDeployError
from ...facts import Fact
from ...inventory import Host, Inventory
from ...ops import Command, Directory, File, Packages
from ...ops.secretfile import SecretFile
from ...remote import Remote
from ...secrets import Secret
from ...settings import Section
from ...step import Change, Step, run_checked
from .config import REPLICATION_USER, Paths, hba_addresses, paths, sizing
from .scripts import SEED_TIMEOUT, role_steps

REST_PASSWORD = Secret("patroni_rest_password", "the password of Patroni's REST API (switchover, restart, ...)")
REST_USER = "mmdeploy"
NAMESPACE = "/mmdeploy/"
START_WAIT = 300  # seconds a node waits for the cluster to be initialised by its first node


class PatroniSettings(Section):
    """Automatic PostgreSQL failover (database.ha: patroni; components/postgresql/patroni.py)."""

    # The cluster's name in etcd and in patronictl.
    scope: str = Field(default="mattermost", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    rest_port: int = Field(default=8008, ge=1, le=65535)
    # Seconds: the leader lock's lifetime; the HA loop's period; how long a DCS or
    # PostgreSQL hiccup may last before the leader gives up its lock.
    ttl: int = Field(default=5, ge=2, le=3600)
    loop_wait: int = Field(default=1, ge=1, le=600)
    retry_timeout: int = Field(default=2, ge=1, le=600)
    # Bytes a replica may lag and still be promoted (in synchronous mode only the
    # synchronous standby is, which has every acknowledged commit).
    maximum_lag_on_failover: int = Field(default=1048576, ge=0)
    # true: commits wait even when no standby is left (no writes until one is back).
    synchronous_strict: bool = False
    # Where HAProxy on the proxies serves the leader and the replicas.
    primary_port: int = Field(default=5432, ge=1, le=65535)
    replicas_port: int = Field(default=5433, ge=1, le=65535)


def unit(p: Paths) -> str:
    return f"patroni@{p.version}-main"


def conf_path(p: Paths) -> str:
    return f"/etc/patroni/{p.version}-main.yml"


def members(inventory: Inventory) -> list[Host]:
    return [h for h in inventory.with_role("db") if managed(h)]


def managed(host: Host) -> bool:
    return host.settings.database.engine == "postgresql" and host.settings.database.ha == "patroni"


def rest_url(host: Host, path: str = "") -> str:
    return f"http://{host.private_address}:{host.settings.patroni.rest_port}{path}"


def ctl(p: Paths) -> str:
    """patronictl with this node's configuration (the REST API's password comes from it)."""
    return f"patronictl -c {conf_path(p)}"


def hba_lines(inventory: Inventory, host: Host) -> list[str]:
    """pg_hba.conf as Patroni writes it: the streaming tier's rules, with HAProxy's sources
    (the proxies: the clients' connections arrive from them) among Mattermost's."""
    from ...component import render

    clients, peers = hba_addresses(inventory, host)
    clients += [f"{h.private_address}/32" for h in inventory.with_role("proxy")]
    text = render(
        inventory,
        "postgresql/pg_hba.conf.j2",
        host=host,
        settings=host.settings,
        clients=list(dict.fromkeys(clients)),
        peers=peers,
        database="mattermost",
        user="mmuser",
        replication_user=REPLICATION_USER,
        monitor_user=host.settings.monitoring.db_user,
        extra_clients=host.settings.database.extra_clients,
    )
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    # Patroni asks its own server for the timeline and position over a local replication
    # connection (to decide whether it is healthy enough to be promoted).
    return lines + [f"host    replication     {REPLICATION_USER}      127.0.0.1/32            scram-sha-256"]


def dynamic(settings, memory_mb: int) -> dict:
    """The cluster-wide configuration Patroni keeps in etcd: timing, synchronous mode, and
    the PostgreSQL parameters every node must share (Patroni passes them on the server's
    command line, over postgresql.conf)."""
    p, size = settings.patroni, sizing(memory_mb)
    return {
        "ttl": p.ttl,
        "loop_wait": p.loop_wait,
        "retry_timeout": p.retry_timeout,
        "maximum_lag_on_failover": p.maximum_lag_on_failover,
        "synchronous_mode": settings.database.synchronous,
        "synchronous_mode_strict": p.synchronous_strict,
        "check_timeline": True,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "max_connections": size["max_connections"],
                "wal_level": "replica",
                "wal_log_hints": "on",
                "hot_standby": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_keep_size": "1024MB",
                "max_slot_wal_keep_size": f"{size['slot_keep_mb']}MB",
                "hot_standby_feedback": "on",
                "wal_receiver_status_interval": "1s",
                "password_encryption": "scram-sha-256",
            },
        },
    }


def config(ctx: Context, pg: Paths, memory_mb: int) -> str:
    """/etc/patroni/V-main.yml for this node (secrets inside: a 0600 file of postgres)."""
    host, inv, p = ctx.host, ctx.inventory, ctx.settings.patroni
    repl = {"username": REPLICATION_USER, "password": ctx.secrets.get(DB_REPLICATION_PASSWORD)}
    etcd_hosts = [f"{h.private_address}:{h.settings.etcd.client_port}" for h in members(inv)]
    own = f"{host.private_address}:{host.settings.etcd.client_port}"
    document = {
        "scope": p.scope,
        "namespace": NAMESPACE,
        "name": host.name,
        "restapi": {
            "listen": f"{host.private_address}:{p.rest_port}",
            "connect_address": f"{host.private_address}:{p.rest_port}",
            "authentication": {"username": REST_USER, "password": ctx.secrets.get(REST_PASSWORD)},
            # Unsafe endpoints (POST, PATCH, ...) only from the DB hosts themselves.
            "allowlist": ["127.0.0.1", *[h.private_address for h in members(inv)]],
            "allowlist_include_members": True,
        },
        # This node's member first: Patroni asks the others when it does not answer.
        "etcd3": {"hosts": [own] + [h for h in etcd_hosts if h != own], "protocol": "http"},
        "bootstrap": {
            "dcs": dynamic(ctx.settings, memory_mb),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"127.0.0.1,{host.private_address}:5432",
            "connect_address": f"{host.private_address}:5432",
            "data_dir": pg.data,
            "bin_dir": pg.bin,
            "config_dir": pg.conf,
            "pgpass": f"/var/lib/postgresql/{pg.version}-main.pgpass",
            "use_unix_socket": True,
            "authentication": {
                # Over the local socket with peer authentication: no password.
                "superuser": {"username": "postgres"},
                "replication": repl,
                # The replication user also runs pg_rewind (Patroni grants it the functions).
                "rewind": dict(repl),
            },
            "pg_hba": hba_lines(inv, host),
            "parameters": {"unix_socket_directories": "/var/run/postgresql"},
            "create_replica_methods": ["basebackup"],
            "basebackup": [{"checkpoint": "fast"}],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }
    header = "# Managed by mmdeploy (components/postgresql/patroni.py). Holds passwords: 0600.\n"
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


class Patroni(DBComponent):
    """Patroni's configuration and unit on every DB host; started on the first node before
    the others; the cluster-wide configuration kept as wanted; then the database's roles
    and its database on the leader."""

    name = "patroni"
    engine = "postgresql"
    after = ("postgresql", "etcd")
    waits_for = ("etcd",)
    settings = {"patroni": PatroniSettings}
    secrets = (DB_PASSWORD, DB_REPLICATION_PASSWORD, DB_MONITORING_PASSWORD, REST_PASSWORD)
    # No scrape of Patroni's /metrics: 3.0.2 prints a replica's timeline as "None", which
    # fails the whole page in Prometheus. The postgres exporter shows each node's role.
    balanced = (
        # OPTIONS: Patroni answers with the status code alone (a GET's body would be cut
        # off by the check closing its connection, and logged as an error every second).
        Balanced(
            "postgresql",
            lambda s: s.patroni.primary_port,
            "OPTIONS /primary",
            server_port=5432,
            check_port=lambda s: s.patroni.rest_port,
            sessions="long",
            up="one",
        ),
        Balanced(
            "postgresql-replicas",
            lambda s: s.patroni.replicas_port,
            "OPTIONS /replica",
            server_port=5432,
            check_port=lambda s: s.patroni.rest_port,
            sessions="long",
            up="any",
        ),
    )

    # The members ask each other's REST API (leader race, failover); HAProxy's health
    # checks on the proxies are derived from the Balanced layers above.
    ports = (Port("patroni REST API", lambda h: h.settings.patroni.rest_port, (PEERS,)),)

    def enabled(self, host: Host) -> bool:
        return managed(host)

    def validate(self, settings) -> list[tuple[str, str]]:
        p = settings.patroni
        if p.loop_wait + 2 * p.retry_timeout > p.ttl:
            return [
                (
                    "settings.patroni.ttl",
                    f"Patroni's rule loop_wait + 2 * retry_timeout <= ttl does not hold: "
                    f"{p.loop_wait} + 2 * {p.retry_timeout} > {p.ttl}",
                )
            ]
        if p.primary_port == p.replicas_port:
            return [("settings.patroni.replicas_port", "expected a port other than primary_port")]
        return []

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        return layout_problems(inventory)

    def steps(self, ctx: Context):
        topo: Topology = ctx.shared
        host, p = ctx.host, paths(ctx.host, ctx.facts.host("os"))
        memory_mb = ctx.settings.database.memory_mb or int(ctx.facts.host("mem_kb")) // 1024
        first = topo.primary.name if topo.primary is not None else members(ctx.inventory)[0].name
        steps: list[Step] = [
            Packages("patroni", "curl"),
            Directory("/etc/patroni"),
            SecretFile(conf_path(p), config(ctx, p, memory_mb), owner="postgres", group="postgres", notify=("reload",)),
            Directory(f"/etc/systemd/system/{unit(p)}.service.d"),
            File(
                f"/etc/systemd/system/{unit(p)}.service.d/mmdeploy.conf",
                ctx.render("patroni/unit.conf.j2"),
                then="systemctl daemon-reload",
            ),
            Command(
                f"start {unit(p)}" + ("" if host.name == first else f" (after {first})"),
                start_script(host, p, wait_for_init=host.name != first),
                unless=f"systemctl is-active {unit(p)} >/dev/null && systemctl is-enabled {unit(p)} >/dev/null",
                timeout=START_WAIT + SEED_TIMEOUT + 60,
            ),
            Command(
                f"{host.name} runs under Patroni",
                running_script(host, p),
                unless=f"curl -s -o /dev/null -w '%{{http_code}}' -m 5 {rest_url(host, '/health')} | grep 200 >/dev/null",
                timeout=SEED_TIMEOUT + 60,
            ),
        ]
        if host.name == first:
            steps.append(DynamicConfig(p, dynamic(ctx.settings, memory_mb)))
        # Written by the leader only; on a replica each guard finds the node in recovery.
        steps += role_steps(ctx, on_replica="skip")
        steps.append(HandOver(host, p))
        return steps

    def handlers(self, ctx: Context):
        u = unit(paths(ctx.host, ctx.facts.host("os")))
        return {"reload": Command(f"reload {u}", f"systemctl try-reload-or-restart {u}")}

    def checks(self, inventory: Inventory):
        if not members(inventory):
            return []
        return [
            Check(
                "patroni: one leader, a synchronous standby, every member running", lambda: cluster_problem(inventory)
            )
        ]


def layout_problems(inventory: Inventory) -> list[tuple[str, str]]:
    """database.ha patroni needs PostgreSQL and no proxy that is also a DB host (HAProxy's
    route and the server would both listen on 5432); the cluster pattern needs it."""
    problems = []
    db = inventory.settings.database
    if inventory.pattern == "cluster" and db.engine != "postgresql":
        problems.append(
            (
                "settings.database.engine",
                "the cluster pattern fails over the database automatically, which here only "
                "PostgreSQL has (Patroni); the MySQL family has no packaged automatic failover, "
                "and Mattermost v11 requires PostgreSQL. Use engine postgresql, or the multi or "
                "single pattern (with inv failover-db)",
            )
        )
        return problems
    if inventory.pattern == "cluster" and db.ha != "patroni":
        problems.append(
            ("settings.database.ha", "the cluster pattern has no human in the failover loop: expected patroni")
        )
    if db.ha == "patroni" and db.engine != "postgresql":
        problems.append(("settings.database.ha", "patroni manages PostgreSQL only: use engine postgresql, or ha none"))
    if db.ha != "patroni" or db.engine != "postgresql":
        return problems
    for i, h in enumerate(inventory.hosts):
        if h.has("proxy") and h.has("db"):
            problems.append(
                (
                    f"hosts.{i}.roles",
                    f"{h.name} is a proxy and a DB host: HAProxy's PostgreSQL route "
                    "and the server would both listen on it; keep them apart",
                )
            )
    return problems


def start_script(host: Host, p: Paths, wait_for_init: bool) -> str:
    """Start Patroni on this node. A node other than the first waits until the first one
    has initialised the cluster in etcd (a new cluster, or the running primary taken
    over): started before that, a replica with data would abort, and one without data
    could race to bootstrap a cluster of its own."""
    key = f"{NAMESPACE}{host.settings.patroni.scope}/initialize"
    wait = ""
    if wait_for_init:
        from ..etcd import ETCDCTL

        get = (
            f"{ETCDCTL} --endpoints=http://127.0.0.1:{host.settings.etcd.client_port} "
            f"get --print-value-only {key} 2>/dev/null"
        )
        wait = (
            f"for i in $(seq {START_WAIT}); do\n"
            f'  [ -n "$({get})" ] && break\n'
            "  sleep 1\n"
            "done\n"
            f"[ -n \"$({get})\" ] || {{ echo 'the cluster was not initialised in etcd within {START_WAIT} s' >&2; "
            "exit 1; }\n"
        )
    return f"""set -e
{wait}systemctl enable {unit(p)}
systemctl start {unit(p)}
"""


def running_script(host: Host, p: Paths) -> str:
    """Wait until Patroni reports this node's PostgreSQL running: the leader right after
    its start, a new replica once its copy of the leader is made (pg_basebackup)."""
    return f"""for i in $(seq {SEED_TIMEOUT}); do
  [ "$(curl -s -o /dev/null -w '%{{http_code}}' -m 5 {rest_url(host, "/health")})" = 200 ] && exit 0
  systemctl is-active {unit(p)} >/dev/null || {{ echo "{unit(p)} stopped: see journalctl -u {unit(p)}" >&2; exit 1; }}
  sleep 1
done
echo "PostgreSQL on {host.name} was not running under Patroni within {SEED_TIMEOUT} s" >&2
exit 1
"""


CONFIG_WAIT = 60  # seconds for a new leader to write the cluster's configuration


class DynamicConfig(Step):
    """Patroni's cluster-wide configuration in etcd as wanted (bootstrap.dcs applies only
    when a cluster is initialised): read with `patronictl show-config`, changed with
    `patronictl edit-config --apply -` (a merge). A parameter that needs a restart is
    then pending on every node (shown by db.status)."""

    def __init__(self, p: Paths, wanted: dict):
        self.paths, self.wanted = p, wanted
        self.name = "patroni cluster configuration"
        self._probe = f"{ctl(p)} show-config 2>/dev/null"
        self.timeout = CONFIG_WAIT + 60

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        fact = facts[self._probe]
        current = (yaml.safe_load(fact.out) if fact.ok else None) or {}
        differ = config_differences(current, self.wanted)
        if not differ:
            return None
        return Change("set " + ", ".join(differ))

    def apply(self, remote: Remote, change: Change) -> None:
        body = yaml.safe_dump(self.wanted, sort_keys=True)
        # The leader writes the cluster's configuration once it holds the initialize key.
        # A tier handed over from streaming replication answers /health at once (its
        # PostgreSQL already runs), before that: edit-config would find no configuration.
        wait = (
            f"for i in $(seq {CONFIG_WAIT}); do {self._probe} | grep -q . && break; sleep 1; done\n"
            f"{self._probe} | grep -q . || {{ echo 'Patroni wrote no cluster configuration within "
            f"{CONFIG_WAIT} s' >&2; exit 1; }}\n"
        )
        run_checked(
            remote,
            f"{wait}{ctl(self.paths)} edit-config --force --apply - <<'MMDEPLOY_YAML'\n{body}MMDEPLOY_YAML\n",
            self.name,
            timeout=self.timeout,
        )


def config_differences(current: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The keys of `wanted` whose value differs in `current` (numbers and strings compared
    as PostgreSQL shows them: 10 and "10" are the same)."""
    found = []
    for key, value in wanted.items():
        have = current.get(key) if isinstance(current, dict) else None
        if isinstance(value, dict):
            found += config_differences(have or {}, value, f"{prefix}{key}.")
        elif str(have).lower() != str(value).lower():
            found.append(f"{prefix}{key}={value}")
    return found


class HandOver(Step):
    """A node whose PostgreSQL is still the one postgresql@V-main started (a tier converted
    from streaming replication) is restarted once by Patroni, so that Patroni runs it
    from now on (Patroni's conversion procedure). Replicas go first: each records its
    hand-over in etcd, and the leader waits for every other running member's record."""

    def __init__(self, host: Host, p: Paths):
        self.host, self.paths = host, p
        self.name = "PostgreSQL handed over to Patroni"
        self._probe = f"systemctl show -p MainPID --value {p.unit}"
        self.timeout = 420

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        pid = facts[self._probe].out.strip()
        return (
            Change(f"restart through Patroni (postgresql@ unit still runs it, pid {pid})")
            if pid not in ("", "0")
            else None
        )

    def apply(self, remote: Remote, change: Change) -> None:
        from ..etcd import ETCDCTL

        h, p = self.host, self.paths
        etcdctl = f"{ETCDCTL} --endpoints=http://127.0.0.1:{h.settings.etcd.client_port}"
        marks = f"/mmdeploy-handover/{h.settings.patroni.scope}"
        field = "import json,sys; d=json.load(sys.stdin); "
        run_checked(
            remote,
            f"""set -e
role=$(curl -s -m 5 {rest_url(h, "/patroni")} | python3 -c '{field}print(d.get("role", ""))')
if [ "$role" = master ] || [ "$role" = primary ]; then
  others=$(curl -s -m 5 {rest_url(h, "/cluster")} | python3 -c '{field}print(" ".join(
    m["name"] for m in d["members"] if m["name"] != "{h.name}" and m.get("state") == "running"))')
  for i in $(seq 240); do
    left=""
    for m in $others; do [ -n "$({etcdctl} get --print-value-only {marks}/$m)" ] || left="$left $m"; done
    [ -z "$left" ] && break
    sleep 1
  done
fi
{ctl(p)} restart {h.settings.patroni.scope} {h.name} --force
for i in $(seq 120); do
  if [ "$(systemctl show -p MainPID --value {p.unit})" = 0 ] && \\
     [ "$(curl -s -o /dev/null -w '%{{http_code}}' -m 5 {rest_url(h, "/health")})" = 200 ]; then
    {etcdctl} put {marks}/{h.name} "$(date -Is)" >/dev/null
    exit 0
  fi
  sleep 1
done
echo "{h.name} did not come back under Patroni within 120 s" >&2
exit 1
""",
            self.name,
            timeout=self.timeout,
        )


# --- verify -------------------------------------------------------------------------------


def cluster_view(inventory: Inventory) -> tuple[dict | None, str]:
    """Patroni's /cluster as one reachable member sees it, and what was tried."""
    from ...api import session

    redact = session(inventory)[0]
    tried = []
    for h in live(members(inventory)):
        remote = Remote(h, redact)
        try:
            result = remote.run(
                f"curl -s -f -m 5 {shlex.quote(rest_url(h, '/cluster'))}", timeout=20, what="Patroni's cluster view"
            )
        except MMDeployError as e:
            tried.append(f"{h.name}: {e}")
            continue
        finally:
            remote.close()
        try:
            return json.loads(result.stdout), ""
        except ValueError:
            tried.append(f"{h.name}: Patroni does not answer on {rest_url(h)}")
    return None, "; ".join(tried)


def cluster_problem(inventory: Inventory) -> str | None:
    view, tried = cluster_view(inventory)
    if view is None:
        return f"no Patroni member answers ({tried})"
    names = [h.name for h in members(inventory)]
    return view_problem(view, names, inventory.settings.database.synchronous, down_hosts())


def view_problem(view: dict, names: list[str], synchronous: bool, gone: frozenset[str] = frozenset()) -> str | None:
    """From Patroni's /cluster: exactly one leader, running; in synchronous mode a
    synchronous standby streaming; every other member running. Members missing from the
    view (their host is down) are named. The members in `gone` are on hosts verify found
    down: not expected in the view (Patroni keeps a dead member until its key expires),
    named in a warning."""
    by_name = {m["name"]: m for m in view.get("members", []) if m["name"] not in gone}
    leaders = [m for m in by_name.values() if m.get("role") in ("leader", "master")]
    if len(leaders) != 1:
        return f"{len(leaders)} leaders in Patroni's view, expected one"
    leader = leaders[0]
    if leader.get("state") != "running":
        return f"the leader {leader['name']} is {leader.get('state')}"
    problems = []
    if synchronous and not any(
        m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming") for m in by_name.values()
    ):
        problems.append("no synchronous standby: commits wait for none")
    missing = [n for n in names if n not in by_name and n not in gone]
    stopped = [
        f"{m['name']} ({m.get('state')})"
        for m in by_name.values()
        if m is not leader and m.get("state") not in ("running", "streaming")
    ]
    if missing:
        problems.append(f"not in the cluster: {', '.join(missing)}")
    if stopped:
        problems.append(f"not running: {', '.join(stopped)}")
    dead = [n for n in names if n in gone]
    if not problems and dead:
        return Warn(f"{leader['name']} leads, {', '.join(dead)} down")
    return "; ".join(problems) or None
