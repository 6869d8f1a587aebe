"""The DB tier's orchestration, engine-neutral: status, failover, rejoin.

Written once for every engine: it decides with topology.decide and acts through the
engine contract (engine.py). Every command goes through Remote.run, on one Remote per DB
host, with a short SSH connect timeout so that a dead host costs seconds; each step is
printed with the time since the command started.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, cast

from ..component import Warn, down_hosts
from ..errors import InventoryError, MMDeployError, Refused
from ..facts import FactCache
from ..inventory import Host, Inventory
from ..remote import Remote, impatient
from ..runner import run_dir
from ..secrets import Redactor
from .engine import Engine, ManagedEngine, engine_for
from .topology import NodeState, Topology, decide, describe, unreachable

# A dead host must cost seconds, not the inventory's SSH timeout: write unavailability
# during a failover starts with this probe.
CONNECT_TIMEOUT = 1.0
STATUS_CONNECT_TIMEOUT = 5.0
APPLY_TIMEOUT = 60.0
MANAGER_SETTLE = 45.0  # seconds failover-db asks Patroni again while it refuses
MANAGER_RETRY = 3.0
Out = Callable[[str], None]


class Tier:
    """The DB hosts of an inventory, one Remote each, for one status/failover/rejoin."""

    def __init__(
        self,
        inventory: Inventory,
        what: str,
        out: Out = print,
        redactor: Redactor | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ):
        self.hosts = inventory.with_role("db")
        if not self.hosts:
            raise InventoryError(["no host has the db role"])
        self.engine: Engine = engine_for(inventory.settings.database)
        self.out, self.started = out, time.monotonic()
        if redactor is None:
            from ..api import session

            redactor = session(inventory)[0]  # registers every known secret with the redactor
        self.redact = redactor
        self.log_dir = run_dir(what)
        self.remotes = {
            h.name: Remote(impatient(h, connect_timeout), redactor, self.log_dir / f"{h.name}.log") for h in self.hosts
        }
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.hosts)))
        # Asked once per command: each try costs the timeout. Those verify found down: not at all.
        self._unreachable: dict[str, str] = {
            h.name: f"{h.name} is down (no SSH answer)" for h in self.hosts if h.name in down_hosts()
        }
        self.lines: list[str] = []  # the timeline, as printed

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def say(self, message: str) -> None:
        line = self.redact(f"[{time.monotonic() - self.started:5.1f}s] {message}")
        self.lines.append(line)
        self.out(line)

    def states(self, hosts: list[Host] | None = None) -> dict[str, NodeState]:
        """Every (or the given) DB host's state, read in parallel; inventory order."""

        def read(h: Host) -> NodeState:
            try:
                if h.name in self._unreachable:
                    raise MMDeployError(self._unreachable[h.name])
                facts = FactCache(self.remotes[h.name]).get(self.engine.probe(h))
            except MMDeployError as e:
                self._unreachable[h.name] = str(e)
                return unreachable(h, str(e))
            return self.engine.state(h, facts)

        chosen = hosts or self.hosts
        return {s.host.name: s for s in self._pool.map(read, chosen)}

    def parallel(self, fn, items) -> list:
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.shutdown()
        for r in self.remotes.values():
            r.close()


def topology(tier: Tier, states: dict[str, NodeState]) -> Topology:
    return decide(tier.hosts, states, getattr(tier.engine, "label", "database"))


def current_primary(hosts: list[Host], states: dict[str, NodeState]) -> NodeState | None:
    """The node acting as primary, as topology.decide finds it; None when there is none
    (a fresh install, or every node holding data is a replica)."""
    topo = decide(hosts, states)
    return None if topo.fresh else topo.primary_state


def status(inventory: Inventory, out: Out | None = None, redactor: Redactor | None = None) -> list[NodeState]:
    """Every DB node's state; reads only. Not a failover: a busy host gets a few seconds
    to answer SSH before it is reported unreachable (verify's replication check, db.status)."""
    tier = Tier(inventory, "db-status", out or (lambda _: None), redactor, connect_timeout=STATUS_CONNECT_TIMEOUT)
    try:
        states = tier.states()
    finally:
        tier.close()
    return [states[h.name] for h in tier.hosts]


def format_status(states: list[NodeState]) -> str:
    rows = [("host", "role", "access", "position", "lag", "upstream / replicas", "sync", "detail")]
    for s in states:
        role = "FENCED" if s.fenced else s.role
        access = (
            "unreachable" if not s.reachable else "down" if not s.running else "writable" if s.writable else "read-only"
        )
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


@dataclass
class FailoverResult:
    """What failover-db did. `topology` is the tier as it is now (for re-pointing the
    database's clients); `timeline` the printed lines with their times."""

    old: str | None
    new: str
    fenced: str
    repointed: list[str]
    rejoined: str | None
    seconds: float
    topology: Topology
    behind: list[str] = field(default_factory=list)  # replicas not streaming yet
    timeline: list[str] = field(default_factory=list)


def failover(
    inventory: Inventory, to: str | None = None, force: bool = False, out: Out = print, redactor: Redactor | None = None
) -> FailoverResult:
    """Planned switchover when the primary answers, failover when it does not: fence the
    old primary, promote the most advanced replica (or `to`), re-point the others. A
    switchover also brings the old primary back as a replica."""
    tier = Tier(inventory, "failover-db", out, redactor)
    try:
        return _failover(tier, to, force)
    finally:
        tier.close()


def _failover(tier: Tier, to: str | None, force: bool) -> FailoverResult:
    if getattr(tier.engine, "manages_failover", False):
        return _managed_failover(tier, to, force)
    names = [h.name for h in tier.hosts]
    if to is not None and to not in names:
        raise InventoryError([f"--to: {to!r} is not a DB host (DB hosts: {', '.join(names)}); nothing was changed"])
    engine = tier.engine
    states = tier.states()
    old = topology(tier, states)
    old_state = None if old.fresh else old.primary_state
    candidates = [
        s
        for s in states.values()
        if s.role == "replica"
        and s.running
        and not s.fenced
        and (old_state is None or s.host.name != old_state.host.name)
    ]
    if to is not None and to not in [c.host.name for c in candidates]:
        what = "the primary" if old_state and old_state.host.name == to else describe(states[to])
        raise InventoryError([f"--to: {to} is not a running replica (it is {what}); nothing was changed"])
    if not candidates:
        raise MMDeployError(
            "no running replica to promote: " + "; ".join(f"{s.host.name}: {describe(s)}" for s in states.values())
        )
    tier.say(
        f"primary {old_state.host.name if old_state else '(none)'}; "
        f"replicas {', '.join(c.host.name for c in candidates)}"
    )

    fenced = "none (no primary)"
    if old_state is not None:
        remote = tier.remotes[old_state.host.name]
        if old_state.running:
            engine.fence(remote)
            fenced = "clients cut, no more writes"
        elif old_state.reachable:
            engine.stop_and_mask(remote)
            fenced = "stopped and masked"
        elif not force:
            raise MMDeployError(
                f"{old_state.host.name} (the primary) does not answer over SSH, so it cannot be fenced from here: "
                f"{old_state.detail}. If it is fenced by other means (powered off, cut from the network), "
                "run again with --force. Nothing was changed."
            )
        else:
            fenced = "unreachable; --force: fenced by other means"
        tier.say(f"fenced {old_state.host.name}: {fenced}")

    fresh = tier.states([c.host for c in candidates])  # positions after the fence flushed the last WAL
    live = [fresh[c.host.name] for c in candidates if fresh[c.host.name].running]
    best = engine.most_advanced(live)
    target = fresh[to] if to else best
    if target.received is not None and best.received is not None and target.received < best.received:
        raise MMDeployError(
            f"--to {to} is behind {best.host.name}; promoting it could lose acknowledged writes. "
            f"Run failover-db without --to (or --to {best.host.name}); "
            f"{old_state.host.name if old_state else 'the old primary'} stays fenced."
        )
    tier.say(f"promoting {target.host.name} (most advanced: {best.host.name})")
    remote = tier.remotes[target.host.name]
    engine.wait_applied(remote, target, APPLY_TIMEOUT)
    engine.promote(remote, target)
    tier.say(f"promoted {target.host.name}")
    others = [s for s in live if s is not target]
    peers = [h for h in tier.hosts if h.name != target.host.name]
    engine.attach(remote, peers, [s.host for s in others])
    tier.parallel(lambda s: engine.repoint(tier.remotes[s.host.name], s, target.host), others)
    if others:
        tier.say(f"re-pointed {', '.join(s.host.name for s in others)} to {target.host.name}")

    rejoined = None
    if old_state is not None and old_state.running:  # planned switchover: the old primary follows
        engine.rejoin(tier.remotes[old_state.host.name], old_state, target.host)
        rejoined = old_state.host.name
        tier.say(f"{old_state.host.name} rejoined as a replica of {target.host.name}")
    final = topology(tier, tier.states())
    engine.attach(remote, peers, final.replicas)
    reachable = [h for h in peers if h in final.replicas]
    behind = [
        h.name
        for h, ok in zip(reachable, tier.parallel(lambda h: engine.wait_streaming(tier.remotes[h.name], 30), reachable))
        if not ok
    ]
    for name in behind:
        tier.say(f"warning: {name} does not stream from {target.host.name} yet (see inv db.status)")
    tier.say(f"database done: {target.host.name} is the primary")
    return FailoverResult(
        old=old_state.host.name if old_state else None,
        new=target.host.name,
        fenced=fenced,
        repointed=[s.host.name for s in others],
        rejoined=rejoined,
        seconds=round(time.monotonic() - tier.started, 2),
        topology=final,
        behind=behind,
        timeline=list(tier.lines),
    )


def _managed_failover(tier: Tier, to: str | None, force: bool) -> FailoverResult:
    """A tier whose HA manager (Patroni) moves the primary by itself: the same decision
    (topology.decide, the most advanced replica or `to`), carried out by the manager.
    Without --force a planned switchover from a leader that answers; with --force a
    failover to the candidate, whether the leader answers or not. The manager fences the
    old leader (it loses its lock) and brings it back as a replica."""
    engine = cast(ManagedEngine, tier.engine)
    names = [h.name for h in tier.hosts]
    if to is not None and to not in names:
        raise InventoryError([f"--to: {to!r} is not a DB host (DB hosts: {', '.join(names)}); nothing was changed"])
    # Patroni refuses while the cluster settles (a member just back, the synchronous
    # standby being chosen again): the choice is made again from a fresh view, a bounded
    # number of times, and its last answer is reported.
    deadline = time.monotonic() + MANAGER_SETTLE
    while True:
        old_state, target = _managed_choice(tier, to, force)
        remote = tier.remotes[target.host.name]
        try:
            if old_state is not None and old_state.writable and not force:
                tier.say(f"switchover {old_state.host.name} -> {target.host.name} (Patroni)")
                engine.switchover(remote, old_state.host, target.host)
                fenced = "demoted by Patroni (switchover): it follows the new leader"
            else:
                tier.say(f"failover to {target.host.name} (Patroni)")
                engine.failover_to(remote, target.host)
                fenced = "its lock taken by Patroni: it follows the new leader when it runs"
            break
        except Refused as e:
            if time.monotonic() > deadline:
                raise MMDeployError(f"{e}; nothing was changed (see inv db.status)") from None
            tier.say(f"{e}; asking again in {MANAGER_RETRY:.0f} s")
            time.sleep(MANAGER_RETRY)
    final = _wait_for_leader(tier, target.host.name, 60)
    tier.say(f"{target.host.name} is the leader")
    others = [h for h in final.replicas if final.states[h.name].running]
    behind = [h.name for h in others if not _streams(tier, h, 30)]
    for name in behind:
        tier.say(f"warning: {name} does not stream from {target.host.name} yet (see inv db.status)")
    final = topology(tier, tier.states())
    rejoined = old_state.host.name if old_state and final.states[old_state.host.name].streaming else None
    if rejoined:
        tier.say(f"{rejoined} follows {target.host.name} as a replica")
    tier.say(f"database done: {target.host.name} is the primary")
    return FailoverResult(
        old=old_state.host.name if old_state else None,
        new=target.host.name,
        fenced=fenced,
        repointed=[h.name for h in others],
        rejoined=rejoined,
        seconds=round(time.monotonic() - tier.started, 2),
        topology=final,
        behind=behind,
        timeline=list(tier.lines),
    )


def _managed_choice(tier: Tier, to: str | None, force: bool) -> tuple[NodeState | None, NodeState]:
    """(the leader now, the replica to move it to), from a fresh view of the tier."""
    engine = tier.engine
    states = tier.states()
    old = topology(tier, states)
    old_state = None if old.fresh else old.primary_state
    candidates = [
        s
        for s in states.values()
        if s.role == "replica" and s.running and (old_state is None or s.host.name != old_state.host.name)
    ]
    if to is not None and to not in [c.host.name for c in candidates]:
        what = "the primary" if old_state and old_state.host.name == to else describe(states[to])
        raise InventoryError([f"--to: {to} is not a running replica (it is {what}); nothing was changed"])
    if not candidates:
        raise MMDeployError(
            "no running replica to promote: " + "; ".join(f"{s.host.name}: {describe(s)}" for s in states.values())
        )
    best = engine.most_advanced(candidates)
    target = states[to] if to else best
    if target is not best and best.extra.get("patroni_role") == "sync_standby":
        raise InventoryError(
            [
                f"--to: {to} is not the synchronous standby ({best.host.name}); only that one holds "
                "every acknowledged commit, and Patroni promotes no other. Nothing was changed."
            ]
        )
    leading = old_state is not None and old_state.writable
    tier.say(
        f"primary {old_state.host.name if old_state else '(none)'} "
        f"({'writable' if leading else 'not taking writes'}); replicas {', '.join(c.host.name for c in candidates)}"
    )
    if not leading and not force:
        raise MMDeployError(
            "no leader takes writes, so there is nothing to switch over from: Patroni fails over by itself "
            "once the leader's lock expires (patroni.ttl). To promote a replica of your choice now, run "
            "failover-db --force [--to HOST]. Nothing was changed."
        )
    return old_state, target


def _streams(tier: Tier, host: Host, timeout: float) -> bool:
    return _wait(lambda: tier.states([host])[host.name].streaming, timeout)


def _wait(ready: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _named(s: NodeState) -> str:
    return f"{s.host.name} {describe(s)}, {'writable' if s.writable else 'not writable'}"


def _wait_for_leader(tier: Tier, name: str, timeout: float) -> Topology:
    found: list[Topology] = []

    def ready() -> bool:
        topo = topology(tier, tier.states())
        found[:] = [topo]
        state = topo.primary_state
        return state is not None and state.host.name == name and state.writable

    if not _wait(ready, timeout):
        raise MMDeployError(
            f"{name} did not become the writable leader within {timeout:.0f} s "
            f"(now: {_named(found[0].primary_state) if found and found[0].primary_state else 'no primary'})"
        )
    return found[0]


def rejoin(inventory: Inventory, host: str, out: Out = print, redactor: Redactor | None = None) -> Topology:
    """Bring a former primary (or any broken replica) back as a replica of the primary."""
    tier = Tier(inventory, "db-rejoin", out, redactor)
    try:
        names = [h.name for h in tier.hosts]
        if host not in names:
            raise InventoryError([f"{host!r} is not a DB host (DB hosts: {', '.join(names)})"])
        if getattr(tier.engine, "manages_failover", False):
            return _managed_rejoin(tier, host)
        states = tier.states()
        topo = topology(tier, states)
        primary = topo.primary_state
        if primary is None or not primary.writable:
            raise MMDeployError(
                "no writable primary to rejoin to: "
                + "; ".join(f"{s.host.name}: {describe(s)}" for s in states.values())
            )
        if primary.host.name == host:
            raise InventoryError([f"{host} is the primary; db.rejoin brings a former primary back as a replica"])
        node = states[host]
        if not node.reachable:
            raise MMDeployError(f"{host} does not answer over SSH: {node.detail}")
        tier.engine.rejoin(tier.remotes[host], node, primary.host)
        tier.say(f"{host} replicates from {primary.host.name}")
        final = topology(tier, tier.states())
        peers = [h for h in tier.hosts if h.name != primary.host.name]
        tier.engine.attach(tier.remotes[primary.host.name], peers, final.replicas)
        # A failover re-pointed the servers at the replicas that answered then; adding
        # one to their read pool needs a restart, which is the next deploy's to make.
        tier.say(
            f"Mattermost reads from {host} once `inv deploy` lists it in SqlSettings.DataSourceReplicas "
            "(nothing to do if a failover had not taken it out)"
        )
        return final
    finally:
        tier.close()


def _managed_rejoin(tier: Tier, host: str) -> Topology:
    """With Patroni: a node that streams already is left alone; one whose Patroni is
    stopped is started (it rewinds a diverged former leader and follows); one that still
    does not stream after that gets a fresh copy of the leader (Patroni's reinitialize)."""
    engine = cast(ManagedEngine, tier.engine)
    states = tier.states()
    topo = topology(tier, states)
    primary = topo.primary_state
    if primary is None or not primary.writable:
        raise MMDeployError(
            "no writable primary to rejoin to: " + "; ".join(f"{s.host.name}: {describe(s)}" for s in states.values())
        )
    if primary.host.name == host:
        raise InventoryError([f"{host} is the primary; db.rejoin brings a former primary back as a replica"])
    node = states[host]
    if not node.reachable:
        raise MMDeployError(f"{host} does not answer over SSH: {node.detail}")
    remote = tier.remotes[host]
    h = tier.host(host)

    def streams() -> bool:
        return tier.states([h])[host].streaming

    if node.streaming:
        tier.say(f"{host} already replicates from {primary.host.name}")
    else:
        if node.extra.get("patroni_unit") != "active":
            tier.say(f"starting Patroni on {host} (it rewinds and follows {primary.host.name})")
            engine.start_member(remote)
        if not _wait(streams, 90, every=1):
            tier.say(f"{host} does not follow after a rewind: a fresh copy of {primary.host.name} (reinitialize)")
            engine.reinitialize(tier.remotes[primary.host.name], h)
            if not _wait(streams, 120, every=1):
                raise MMDeployError(f"{host} was reinitialized but does not stream from {primary.host.name}")
        tier.say(f"{host} replicates from {primary.host.name}")
    return topology(tier, tier.states())


def client_endpoints(inventory: Inventory, topology: Topology) -> tuple[str, list[str]]:
    """Where the database's clients (Mattermost's DataSource and DataSourceReplicas)
    connect, as "address:port": the live primary and the replicas serving reads, or, when
    an HA manager moves the primary (Patroni), the routes that follow it (HAProxy)."""
    engine = engine_for(inventory.settings.database)
    routes = getattr(engine, "routes", None)
    if routes is not None:
        return routes(inventory)

    def at(h: Host) -> str:
        return (
            f"[{h.private_address}]:{engine.port}" if ":" in h.private_address else f"{h.private_address}:{engine.port}"
        )

    return at(topology.require_primary()), [at(h) for h in topology.readers]


def read_topology(inventory: Inventory, view, hosts: list[Host] | None = None) -> Topology:
    """The tier as the DB nodes say right now, read through a component's ClusterView in
    prepare() (deploy), for the engines' own components and for the database's clients
    (Mattermost's DataSource and DataSourceReplicas)."""
    hosts = hosts if hosts is not None else inventory.with_role("db")
    if not hosts:
        raise MMDeployError("no host has the db role")
    engine = engine_for(inventory.settings.database)

    def state(h: Host) -> NodeState:
        try:
            return engine.state(h, view.facts(h, engine.probe(h)))
        except MMDeployError as e:
            return unreachable(h, str(e))

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:  # the nodes at once
        states = {h.name: s for h, s in zip(hosts, pool.map(state, hosts))}
    return decide(hosts, states, engine.label)


def replication_problem(inventory: Inventory) -> str | None:
    """The verify check of every engine: exactly one writable node, and every other node
    a replica streaming from it."""
    states = status(inventory)
    writable = [s for s in states if s.writable]
    if len(writable) != 1:
        return (
            f"expected one writable node, found {len(writable)} ({', '.join(s.host.name for s in writable) or 'none'})"
        )
    primary = writable[0].host
    gone = [s.host.name for s in states if s.host.name in down_hosts()]
    lost = [
        s.host.name
        for s in states
        if s.host is not primary
        and s.host.name not in gone
        and not (s.upstream in (primary.private_address, primary.address) and s.streaming)
    ]
    if lost:
        return f"not streaming from {primary.name}: {', '.join(lost)}"
    return Warn(f"{primary.name} writable, {', '.join(gone)} down") if gone else None
