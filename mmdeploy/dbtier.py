"""The database tier, engine-neutral: live topology, status, failover, rejoin.

CONTRACT (shared by components/postgresql.py and components/mysql.py; the orchestration
below it is written once, here):

- `NodeState` is what one DB host looks like right now, read without changing anything.
- An `Engine` knows how to read and act on its own server; everything that decides
  (which node is primary, which replica is most advanced, in what order to fence, wait,
  promote and re-point) lives in this module and calls the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from .facts import Fact
from .inventory import Host
from .remote import Remote


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
