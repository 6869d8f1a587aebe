"""The components, one module per service. `ALL` is the order of declaration; the runner
orders them by their `after` dependencies."""

from .base import Base
from .demo import Demo
from .exporters import Exporters
from .grafana import Grafana
from .mattermost import Mattermost
from .mysql import MySQL, MySQLReplication
from .nginx import Nginx
from .postgresql import PostgreSQL, PostgreSQLReplication
from .prometheus import Prometheus

ALL = [Base(), Demo(), PostgreSQL(), PostgreSQLReplication(), MySQL(), MySQLReplication(), Mattermost(), Nginx(), Exporters(), Prometheus(), Grafana()]


def by_name(names: list[str] | None) -> list:
    """The components named (all when None); an unknown name is bad input."""
    from ..errors import InventoryError

    if not names:
        return list(ALL)
    known = {c.name: c for c in ALL}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InventoryError([f"--only: unknown component {', '.join(map(repr, unknown))} (known: {', '.join(known)})"])
    return [known[n] for n in names]
