"""The database tier, engine-neutral: one brain that decides the live topology
(topology.py), the contract an engine implements (engine.py), and the orchestration of
status, failover and rejoin written once for every engine (orchestrate.py). The engines
live under components/postgresql and components/mysql."""

from .engine import Engine, engine_for
from .orchestrate import (
    FailoverResult,
    Tier,
    _failover,
    client_endpoints,
    current_primary,
    failover,
    format_status,
    read_topology,
    rejoin,
    replication_problem,
    status,
)
from .topology import NodeState, SplitBrain, Topology, decide, describe, unreachable

__all__ = [
    "Engine",
    "engine_for",
    "FailoverResult",
    "Tier",
    "_failover",
    "client_endpoints",
    "current_primary",
    "failover",
    "format_status",
    "read_topology",
    "rejoin",
    "replication_problem",
    "status",
    "NodeState",
    "SplitBrain",
    "Topology",
    "decide",
    "describe",
    "unreachable",
]
