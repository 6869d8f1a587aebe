"""The database tier, engine-neutral: live topology, status, failover, rejoin.

CONTRACT (shared by components/postgresql.py and components/mysql.py; the orchestration
below it is written once, here):

- `NodeState` is what one DB host looks like right now, read without changing anything.
- An `Engine` knows how to read and act on its own server; everything that decides
  (which node is primary, which replica is most advanced, in what order to fence, wait,
  promote and re-point) lives in this module and calls the engine.

Additions to the contract (all additive):
- `NodeState.fenced`: the node was fenced by a failover and waits for `db.rejoin`; it is
  never primary, never in a sync/semi-sync set, and never re-seeded by a deploy.
- `NodeState.extra`: engine-specific raw values (e.g. PostgreSQL's system identifier).
- `Engine.attach(remote, peers, replicas)` (optional): the primary side of re-pointing,
  called on the new primary after promote and after a rejoin: let `peers` replicate from it
  (PostgreSQL: a slot each) and make commits wait for one of `replicas` (sync/semi-sync).
- `Engine.wait_streaming(remote, timeout) -> bool` (optional): the replica on `remote`
  replicates from its primary again.
- Each engine's component module has `engine(settings) -> Engine` (settings: the
  inventory's DatabaseSettings); `engine_for` imports components/<engine>.py and calls it.

The orchestration (status, failover, rejoin) runs every command through Remote.run, on
one Remote per DB host, with a short SSH connect timeout so that a dead host costs seconds.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from .errors import InventoryError, MMDeployError
from .facts import Fact, FactCache
from .inventory import Host, Inventory
from .remote import Remote
from .runner import run_dir
from .secrets import Redactor, Secrets


@dataclass
class NodeState:
    host: Host
    reachable: bool  # SSH answers
    running: bool  # the DB server answers on the host
    role: str  # "primary" | "replica" | "unknown"
    writable: bool
    upstream: str | None = None  # address of the primary it replicates from (replicas)
    received: object = None  # engine-comparable position received (LSN int / GTID set)
    applied: object = None  # engine-comparable position applied
    lag_seconds: float | None = None
    replicas: list[str] = field(default_factory=list)  # addresses streaming from it (primary)
    sync: str = ""  # synchronous / semi-sync state, human readable
    detail: str = ""  # anything else worth showing in `inv db.status`
    fenced: bool = False  # fenced by a failover; waits for `inv db.rejoin`
    extra: dict = field(default_factory=dict)  # engine-specific raw values


class Engine(Protocol):
    name: str  # "postgresql" | "mysql"

    def probe(self) -> list[str]:
        """Read-only shell commands (batched as facts) that `state` parses."""

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState: ...

    def fence(self, remote: Remote) -> None:
        """The DB answers: make it refuse writes and drop client connections."""

    def stop_and_mask(self, remote: Remote) -> None:
        """Only SSH answers: stop the server and keep it from starting again."""

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        """The replica with everything any other received; raise MMDeployError when that
        is ambiguous (errant transactions)."""

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None: ...

    def promote(self, remote: Remote, node: NodeState) -> None: ...

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None: ...

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        """Bring a former primary back as a replica of `primary`, never as a writer."""


# --- orchestration, written once for every engine -------------------------------------

# A dead host must cost seconds, not the inventory's SSH timeout: write unavailability
# during a failover starts with this probe.
CONNECT_TIMEOUT = 2.0
APPLY_TIMEOUT = 60.0
Out = Callable[[str], None]


def engine_for(settings) -> Engine:
    """The Engine of settings.database.engine, from components/<engine>.py."""
    try:
        module = importlib.import_module(f"mmdeploy.components.{settings.engine}")
    except ModuleNotFoundError:
        raise MMDeployError(f"database engine {settings.engine!r} is not available in this build") from None
    return module.engine(settings)


class Tier:
    """The DB hosts of an inventory, one Remote each, for one status/failover/rejoin."""

    def __init__(self, inventory: Inventory, what: str, out: Out = print):
        self.hosts = inventory.with_role("db")
        if not self.hosts:
            raise InventoryError(["no host has the db role"])
        self.engine = engine_for(inventory.settings.database)
        self.out, self.started = out, time.monotonic()
        redactor = Redactor()
        Secrets(inventory.secrets_path, redactor)  # registers every known secret with the redactor
        self.log_dir = run_dir(what)
        self.remotes = {
            h.name: Remote(_quick(h), redactor, self.log_dir / f"{h.name}.log") for h in self.hosts
        }
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.hosts)))
        self._unreachable: dict[str, str] = {}  # asked once per command: each try costs the timeout

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def say(self, message: str) -> None:
        self.out(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    def states(self, hosts: list[Host] | None = None) -> dict[str, NodeState]:
        """Every (or the given) DB host's state, read in parallel; inventory order."""
        def read(h: Host) -> NodeState:
            try:
                if h.name in self._unreachable:
                    raise MMDeployError(self._unreachable[h.name])
                facts = FactCache(self.remotes[h.name]).get(self.engine.probe())
            except MMDeployError as e:
                self._unreachable[h.name] = str(e)
                return NodeState(host=h, reachable=False, running=False, role="unknown", writable=False,
                                 detail=str(e))
            return self.engine.state(h, facts)

        chosen = hosts or self.hosts
        return {s.host.name: s for s in self._pool.map(read, chosen)}

    def parallel(self, fn, items) -> list:
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.shutdown()
        for r in self.remotes.values():
            r.close()


def _quick(host: Host) -> Host:
    timeout = min(host.ssh.connect_timeout, CONNECT_TIMEOUT)
    return dataclasses.replace(host, ssh=dataclasses.replace(host.ssh, connect_timeout=timeout))


def current_primary(hosts: list[Host], states: dict[str, NodeState]) -> NodeState | None:
    """The node acting as primary: the one writable node; else a stopped primary or an
    unreachable one, as the replicas name it (their upstream). None when every node is a
    replica (a failover that stopped after fencing). Two writable nodes: refuse."""
    writable = [states[h.name] for h in hosts if states[h.name].writable and not states[h.name].fenced]
    if len(writable) > 1:
        raise MMDeployError(
            f"two writable nodes ({', '.join(s.host.name for s in writable)}): split brain. "
            "Refusing to choose; stop the one that must not take writes, then run again.")
    if writable:
        return writable[0]
    upstreams = [s.upstream for s in states.values() if s.role == "replica" and s.upstream]
    for h in hosts:
        s = states[h.name]
        if s.fenced or s.role == "replica" and s.reachable:
            continue
        if h.private_address in upstreams or h.address in upstreams:
            return s
    return next((states[h.name] for h in hosts
                 if states[h.name].role == "primary" and not states[h.name].fenced), None)


def sync_set(hosts: list[Host], states: dict[str, NodeState], primary: Host) -> list[Host]:
    """The replicas a primary's commits wait for: the other reachable, unfenced nodes (the
    same rule the components apply at deploy, so a deploy after a failover changes nothing)."""
    return [h for h in hosts if h.name != primary.name and states[h.name].reachable and not states[h.name].fenced]


def status(inventory: Inventory, out: Out | None = None) -> list[NodeState]:
    """Every DB node's state; reads only."""
    tier = Tier(inventory, "db-status", out or (lambda _: None))
    try:
        states = tier.states()
    finally:
        tier.close()
    return [states[h.name] for h in tier.hosts]


def format_status(states: list[NodeState]) -> str:
    rows = [("host", "role", "access", "position", "lag", "upstream / replicas", "sync", "detail")]
    for s in states:
        role = "FENCED" if s.fenced else s.role
        access = "unreachable" if not s.reachable else "down" if not s.running else \
            "writable" if s.writable else "read-only"
        position = _position(s)
        lag = "" if s.lag_seconds is None else f"{s.lag_seconds:g}s"
        links = ", ".join(s.replicas) if s.role == "primary" else (f"from {s.upstream}" if s.upstream else "")
        rows.append((s.host.name, role, access, position, lag, links, s.sync, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def _position(s: NodeState) -> str:
    if isinstance(s.received, int):  # an LSN
        def fmt(v):
            return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}" if isinstance(v, int) else "-"
        return fmt(s.received) if s.role == "primary" else f"recv {fmt(s.received)} replay {fmt(s.applied)}"
    return "" if s.received is None else str(s.received)


def failover(inventory: Inventory, to: str | None = None, force: bool = False, out: Out = print) -> dict:
    """Planned switchover when the primary answers, failover when it does not: fence the
    old primary, promote the most advanced replica (or `to`), re-point the others. A
    switchover also brings the old primary back as a replica. Returns what was done."""
    tier = Tier(inventory, "failover-db", out)
    try:
        return _failover(tier, to, force)
    finally:
        tier.close()


def _failover(tier: Tier, to: str | None, force: bool) -> dict:
    names = [h.name for h in tier.hosts]
    if to is not None and to not in names:
        raise InventoryError([f"--to: {to!r} is not a DB host (DB hosts: {', '.join(names)}); nothing was changed"])
    engine = tier.engine
    states = tier.states()
    old = current_primary(tier.hosts, states)
    candidates = [s for s in states.values() if s.role == "replica" and s.running and not s.fenced
                  and (old is None or s.host.name != old.host.name)]
    if to is not None and to not in [c.host.name for c in candidates]:
        what = "the primary" if old and old.host.name == to else _describe(states[to])
        raise InventoryError([f"--to: {to} is not a running replica (it is {what}); nothing was changed"])
    if not candidates:
        raise MMDeployError("no running replica to promote: " +
                            "; ".join(f"{s.host.name}: {_describe(s)}" for s in states.values()))
    tier.say(f"primary {old.host.name if old else '(none)'}; replicas {', '.join(c.host.name for c in candidates)}")

    fenced = "none (no primary)"
    if old is not None:
        remote = tier.remotes[old.host.name]
        if old.running:
            engine.fence(remote)
            fenced = "clients cut, no more writes"
        elif old.reachable:
            engine.stop_and_mask(remote)
            fenced = "stopped and masked"
        elif not force:
            raise MMDeployError(
                f"{old.host.name} (the primary) does not answer over SSH, so it cannot be fenced from here: "
                f"{old.detail}. If it is fenced by other means (powered off, cut from the network), "
                "run again with --force. Nothing was changed.")
        else:
            fenced = "unreachable; --force: fenced by other means"
        tier.say(f"fenced {old.host.name}: {fenced}")

    fresh = tier.states([c.host for c in candidates])  # positions after the fence flushed the last WAL
    live = [fresh[c.host.name] for c in candidates if fresh[c.host.name].running]
    best = engine.most_advanced(live)
    target = fresh[to] if to else best
    if target.received is not None and best.received is not None and target.received < best.received:
        raise MMDeployError(
            f"--to {to} is behind {best.host.name}; promoting it could lose acknowledged writes. "
            f"Run failover-db without --to (or --to {best.host.name}); {old.host.name if old else 'the old primary'} "
            "stays fenced.")
    tier.say(f"promoting {target.host.name} (most advanced: {best.host.name})")
    remote = tier.remotes[target.host.name]
    engine.wait_applied(remote, target, APPLY_TIMEOUT)
    engine.promote(remote, target)
    tier.say(f"promoted {target.host.name}")
    others = [s for s in live if s is not target]
    peers = [h for h in tier.hosts if h.name != target.host.name]
    attach = getattr(engine, "attach", None)
    if attach:
        attach(remote, peers, [s.host for s in others])
    tier.parallel(lambda s: engine.repoint(tier.remotes[s.host.name], s, target.host), others)
    if others:
        tier.say(f"re-pointed {', '.join(s.host.name for s in others)} to {target.host.name}")

    rejoined = None
    if old is not None and old.running:  # planned switchover: the old primary follows the new one
        engine.rejoin(tier.remotes[old.host.name], old, target.host)
        rejoined = old.host.name
        tier.say(f"{old.host.name} rejoined as a replica of {target.host.name}")
    final = tier.states()
    if attach:
        attach(remote, peers, sync_set(tier.hosts, final, target.host))
    waiting = getattr(engine, "wait_streaming", None)
    behind = []
    if waiting:
        behind = [h for h, ok in zip(peers, tier.parallel(
            lambda h: final[h.name].reachable and not final[h.name].fenced and waiting(tier.remotes[h.name], 30),
            peers)) if not ok and final[h.name].reachable and not final[h.name].fenced]
    for h in behind:
        tier.say(f"warning: {h.name} does not stream from {target.host.name} yet (see inv db.status)")
    tier.say(f"done: {target.host.name} is the primary")
    return {"old": old.host.name if old else None, "new": target.host.name, "fenced": fenced,
            "repointed": [s.host.name for s in others], "rejoined": rejoined,
            "seconds": round(time.monotonic() - tier.started, 2)}


def rejoin(inventory: Inventory, host: str, out: Out = print) -> None:
    """Bring a former primary (or any broken replica) back as a replica of the primary."""
    tier = Tier(inventory, "db-rejoin", out)
    try:
        names = [h.name for h in tier.hosts]
        if host not in names:
            raise InventoryError([f"{host!r} is not a DB host (DB hosts: {', '.join(names)})"])
        states = tier.states()
        primary = current_primary(tier.hosts, states)
        if primary is None or not primary.writable:
            raise MMDeployError("no writable primary to rejoin to: " +
                                "; ".join(f"{s.host.name}: {_describe(s)}" for s in states.values()))
        if primary.host.name == host:
            raise InventoryError([f"{host} is the primary; db.rejoin brings a former primary back as a replica"])
        node = states[host]
        if not node.reachable:
            raise MMDeployError(f"{host} does not answer over SSH: {node.detail}")
        tier.engine.rejoin(tier.remotes[host], node, primary.host)
        tier.say(f"{host} replicates from {primary.host.name}")
        attach = getattr(tier.engine, "attach", None)
        if attach:
            peers = [h for h in tier.hosts if h.name != primary.host.name]
            attach(tier.remotes[primary.host.name], peers, sync_set(tier.hosts, tier.states(), primary.host))
    finally:
        tier.close()


def _describe(s: NodeState) -> str:
    if not s.reachable:
        return "unreachable"
    if s.fenced:
        return "fenced, waiting for db.rejoin"
    return f"{s.role}, {'running' if s.running else 'not running'}"


def live_topology(inventory: Inventory, view) -> tuple[Host, list[Host]]:
    """(primary, replicas) as the DB nodes say right now, for components that connect to
    the database (Mattermost's DataSource and DataSourceReplicas); read through a
    component's ClusterView in prepare(). Before the database exists (a plan on new hosts),
    the first DB host is the primary-to-be."""
    hosts = inventory.with_role("db")
    if not hosts:
        raise MMDeployError("no host has the db role: Mattermost needs a database")
    engine = engine_for(inventory.settings.database)
    states = {}
    for h in hosts:
        try:
            states[h.name] = engine.state(h, view.facts(h, engine.probe()))
        except MMDeployError as e:
            states[h.name] = NodeState(host=h, reachable=False, running=False, role="unknown",
                                       writable=False, detail=str(e))
    primary = current_primary(hosts, states)
    primary_host = primary.host if primary else hosts[0]
    replicas = [h for h in sync_set(hosts, states, primary_host) if states[h.name].role == "replica"]
    return primary_host, replicas
