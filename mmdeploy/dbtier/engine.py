"""The engine contract: what a database engine (components/postgresql, components/mysql)
implements so that the DB tier's brain (topology.py) and orchestration (orchestrate.py)
are written once.

An engine only reads and acts on its own servers; everything that decides (which node is
primary, which replica is most advanced, in what order to fence, wait, promote and
re-point) lives in dbtier and calls the engine. Each engine package exports
`engine(settings) -> Engine` (settings: the inventory's DatabaseSettings).
"""

from __future__ import annotations

import importlib
from typing import Mapping, Protocol

from ..errors import MMDeployError
from ..facts import Fact
from ..inventory import Host
from ..remote import Remote
from .topology import NodeState


class Engine(Protocol):
    name: str  # "postgresql" | "mysql": the package under components/
    label: str  # how messages name it: "PostgreSQL", "MySQL-family"
    port: int  # where its clients connect on a DB host
    schema_version_sql: str  # reads Mattermost's schema version (X.Y.0) from its Systems table

    def app_query(self, sql: str) -> str:
        """A script run on a DB host that runs `sql` on Mattermost's database as the
        superuser; rows tab-separated, without headers."""
        ...

    def probe(self, host: Host) -> list[str]:
        """Read-only shell commands (batched as facts) that `state` parses."""
        ...

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState: ...

    def account_probe(self) -> str:
        """A read-only command (a fact: its output is never logged) whose output
        `account_matches` reads: the stored password verifiers of the accounts."""
        ...

    def account_matches(self, fact: Fact, user: str, client: str | None, password: str) -> bool | None:
        """Whether the account (`client`: its host part, where the engine has one) has
        `password`; None when there is no such account. Checked on the control machine."""
        ...

    def fence(self, remote: Remote) -> None:
        """The DB answers: make it refuse writes and drop client connections."""

    def stop_and_mask(self, remote: Remote) -> None:
        """Only SSH answers: stop the server and keep it from starting again."""

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        """The replica with everything any other received; raise MMDeployError when that
        is ambiguous (errant transactions)."""
        ...

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None:
        """Wait until the replica applied everything it received."""

    def promote(self, remote: Remote, node: NodeState) -> None: ...

    def attach(self, remote: Remote, peers: list[Host], replicas: list[Host]) -> None:
        """The primary side of re-pointing, on the primary: let `peers` replicate from it
        and make commits wait for one of `replicas` (sync/semi-sync)."""

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None:
        """A replica follows `primary` from now on."""

    def wait_streaming(self, remote: Remote, timeout: float) -> bool:
        """The replica on `remote` replicates from its primary again."""
        ...

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        """Bring a former primary back as a replica of `primary`, never as a writer."""


class ManagedEngine(Engine, Protocol):
    """An engine whose tier has an HA manager that fences, promotes and re-points by
    itself (Patroni: database.ha patroni). dbtier still decides from one view (the
    manager's view is part of each NodeState) and asks the manager to act; the streaming
    methods above (fence, promote, attach, repoint, rejoin) are refused."""

    manages_failover: bool  # True

    def switchover(self, remote: Remote, leader: Host, candidate: Host) -> str:
        """Planned: the leader hands over to `candidate` and follows it. Raises Refused
        when the manager answers that it cannot now (nothing moved)."""
        ...

    def failover_to(self, remote: Remote, candidate: Host) -> str:
        """Unplanned: `candidate` takes over now, whether the leader answers or not."""
        ...

    def start_member(self, remote: Remote) -> None:
        """Start the manager on a node where it stopped; it rewinds and follows."""

    def reinitialize(self, remote: Remote, member: Host) -> None:
        """A fresh copy of the leader for `member` (run on the leader's host)."""

    def routes(self, inventory) -> tuple[str, list[str]]:
        """("address:port" of the leader route, [replica routes]) the clients use."""
        ...


def engine_for(settings) -> Engine:
    """The Engine of settings.engine (the inventory's DatabaseSettings)."""
    try:
        module = importlib.import_module(f"mmdeploy.components.{settings.engine}")
    except ModuleNotFoundError:
        raise MMDeployError(f"database engine {settings.engine!r} is not available in this build") from None
    return module.engine(settings)
