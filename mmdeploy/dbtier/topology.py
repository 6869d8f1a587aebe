"""The one DB-tier brain: from what every DB node says about itself right now, decide who
is the live primary, who replicates from whom, and whether there is split brain.

Deploy (each engine's components), Mattermost's DataSource and failover-db all take the
primary and replicas from `decide`, and from nowhere else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import MMDeployError
from ..inventory import Host


@dataclass
class NodeState:
    """What one DB host looks like right now, read without changing anything."""

    host: Host
    reachable: bool  # SSH answers
    running: bool  # the DB server answers on the host
    role: str  # "primary" | "replica" | "unknown"
    writable: bool
    upstream: str | None = None  # address of the primary it replicates from (replicas)
    received: Any = None  # engine-comparable position received (LSN int / GTID set)
    applied: Any = None  # engine-comparable position applied
    lag_seconds: float | None = None
    replicas: list[str] = field(default_factory=list)  # addresses streaming from it (primary)
    sync: str = ""  # synchronous / semi-sync state, human readable
    detail: str = ""  # anything else worth showing in `inv db.status`
    fenced: bool = False  # fenced by a failover; waits for `inv db.rejoin`
    has_data: bool = False  # holds a database of this site (not a fresh install)
    streaming: bool = False  # a replica receiving and applying from its upstream
    named_primary: str | None = None  # the primary its own topology file names, if any
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific raw values


def unreachable(host: Host, why: str) -> NodeState:
    return NodeState(host=host, reachable=False, running=False, role="unknown", writable=False, detail=why)


class SplitBrain(MMDeployError):
    """More than one node takes writes."""


@dataclass
class Topology:
    """The decision: `primary` (None when no node is or can be one: every node holding
    data is a replica, e.g. a failover stopped after fencing), how it was found, and every
    node's state."""

    hosts: list[Host]
    states: dict[str, NodeState]
    primary: Host | None
    reason: str  # writable | followed | named | holds-data | fresh | none

    @property
    def primary_state(self) -> NodeState | None:
        return self.states[self.primary.name] if self.primary else None

    @property
    def fresh(self) -> bool:
        return self.reason == "fresh"

    def require_primary(self) -> Host:
        if self.primary is None:
            raise MMDeployError(
                "no DB node is the primary and none can be chosen safely ("
                + "; ".join(f"{s.host.name}: {describe(s)}" for s in self.states.values())
                + "); promote one with `inv failover-db`"
            )
        return self.primary

    @property
    def replicas(self) -> list[Host]:
        """The nodes a primary's commits wait for and that replicate from it: the other
        reachable, unfenced nodes (the rule deploy, failover and rejoin share, so a
        deploy after a failover changes nothing)."""
        if self.primary is None:
            return []
        return [
            h
            for h in self.hosts
            if h.name != self.primary.name and self.states[h.name].reachable and not self.states[h.name].fenced
        ]

    @property
    def readers(self) -> list[Host]:
        """Replicas that serve reads now (Mattermost's DataSourceReplicas)."""
        return [h for h in self.replicas if self.states[h.name].role == "replica"]


def decide(hosts: list[Host], states: dict[str, NodeState], label: str = "database") -> Topology:
    """Who is the primary, in this order:
    1. the one writable node that is not fenced (two or more: split brain, refused);
    2. the node the running replicas replicate from (it may be down or unreachable);
    3. the node the reachable nodes' own topology files name;
    4. the one node holding data that is not a replica (two or more: ambiguous, refused);
    5. on a fresh install (no node holds data), the first DB host in inventory order.
    Otherwise there is none (`primary` None)."""
    live = [states[h.name] for h in hosts if not states[h.name].fenced]
    writable = [s for s in live if s.writable]
    if len(writable) > 1:
        raise SplitBrain(
            f"two writable {label} nodes ({', '.join(s.host.name for s in writable)}): split brain. "
            "Refusing to choose or touch the database tier; fence the one that must not take writes "
            "(inv failover-db, or stop it), then run again."
        )
    if writable:
        return Topology(hosts, states, writable[0].host, "writable")

    def eligible(h: Host) -> bool:
        s = states[h.name]
        return not s.fenced and not (s.role == "replica" and s.reachable)

    by_address = {a: h for h in hosts for a in (h.private_address, h.address)}
    followed = Counter(
        by_address[s.upstream].name
        for s in live
        if s.role == "replica" and s.upstream in by_address and eligible(by_address[s.upstream])
    )
    if followed:
        name = followed.most_common(1)[0][0]
        return Topology(hosts, states, next(h for h in hosts if h.name == name), "followed")
    named = Counter(s.named_primary for s in live if s.reachable and s.named_primary)
    for name, _ in named.most_common():
        host = next((h for h in hosts if h.name == name), None)
        if host is not None and eligible(host):
            return Topology(hosts, states, host, "named")
    holding = [states[h.name] for h in hosts if states[h.name].has_data and eligible(h)]
    if len(holding) > 1:
        raise MMDeployError(
            f"no writable {label} node and {len(holding)} hold data "
            f"({', '.join(s.host.name for s in holding)}): which one is the primary is not clear; "
            "name it with `inv failover-db --to HOST`"
        )
    if holding:
        return Topology(hosts, states, holding[0].host, "holds-data")
    if not any(s.has_data for s in states.values()):
        return Topology(hosts, states, hosts[0], "fresh")
    return Topology(hosts, states, None, "none")


def describe(s: NodeState) -> str:
    if not s.reachable:
        return "unreachable"
    if s.fenced:
        return "fenced, waiting for db.rejoin"
    return f"{s.role}, {'running' if s.running else 'not running'}"
