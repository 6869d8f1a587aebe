"""What every database engine's components share: the db role, the `database` settings
section, the database secrets, the hosts they run on, the live topology they act on
(read once per run with the one brain, topology.decide) and the replication check."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ..component import Check, Component, Role
from ..grammar import Network
from ..inventory import Host, Inventory
from ..secrets import Secret
from ..settings import Section
from .orchestrate import read_topology, replication_problem

DB_ROLE = Role("db", "database nodes: a primary and its replicas", {"single": 1, "multi": 3, "cluster": 3})
DB_PASSWORD = Secret("db_password", "the Mattermost database user's password (mmuser)")
DB_REPLICATION_PASSWORD = Secret("db_replication_password", "the replication user's password")
DB_MONITORING_PASSWORD = Secret("db_monitoring_password", "the DB metrics exporter's password")


class DatabaseSettings(Section):
    engine: Literal["postgresql", "mysql"] = "postgresql"
    # Only read when engine is mysql: MariaDB or Oracle MySQL.
    flavor: Literal["mariadb", "mysql"] = "mariadb"
    # Oracle MySQL's release series (flavor mysql): its APT repository and statements.
    mysql_series: Literal["8.0", "8.4"] = "8.4"
    # PostgreSQL from the distribution's own packages; unset: the version the host's
    # distribution ships (distros.py: 15 on Debian 12, 17 on Debian 13).
    postgresql_version: str | None = Field(default=None, pattern=r"^\d{2}$")
    # Commits wait for one replica (ANY 1) whenever there is one; false opts out.
    synchronous: bool = True
    # Memory the DB sizes itself for; unset: the host's total memory.
    memory_mb: int | None = Field(default=None, ge=256)
    # Addresses (IP or CIDR) allowed in as the Mattermost user besides the app and job hosts.
    extra_clients: list[Network] = []
    # Who moves the primary when it fails: "none" (an operator, with `inv failover-db`) or
    # "patroni" (automatically: Patroni with etcd on the DB hosts, the clients routed to the
    # leader by HAProxy on the proxies; PostgreSQL only). The cluster pattern's default.
    ha: Literal["none", "patroni"] = "none"


class DBComponent(Component):
    """Base of an engine's components: on the db hosts of that engine, acting on the live
    topology (`ctx.shared`, a dbtier.Topology)."""

    engine: str = ""  # the value of database.engine this component serves
    roles = ("db",)
    owns_roles = (DB_ROLE,)
    settings = {"database": DatabaseSettings}
    secrets: ClassVar[tuple[Secret, ...]] = (DB_PASSWORD, DB_REPLICATION_PASSWORD, DB_MONITORING_PASSWORD)

    def enabled(self, host: Host) -> bool:
        return host.settings.database.engine == self.engine

    def prepare(self, inventory: Inventory, view) -> Any:
        return read_topology(inventory, view, self.hosts(inventory))


def replication_check(inventory: Inventory, label: str) -> list[Check]:
    return [
        Check(f"{label}: one writable node, every replica streaming from it", lambda: replication_problem(inventory))
    ]
