"""PostgreSQL from Debian's own packages: one primary, streaming replicas, and the dbtier
Engine that reads and moves that topology; or (database.ha: patroni) the same servers run
by Patroni, which fails over by itself. Split by concern: config (paths, sizing, rendered
settings), probe (reading a node), scripts (shared by deploy, failover and rejoin),
engine (the dbtier contract), component (the two deploy components), patroni (the
Patroni component) and patroni_engine (the contract when Patroni moves the primary)."""

from .component import PostgreSQL, PostgreSQLReplication, needs_seed
from .config import paths, sizing, topology_conf
from .engine import PGEngine
from .patroni import Patroni
from .patroni_engine import PatroniEngine
from .probe import lsn, parse_probe

COMPONENTS = [PostgreSQL(), Patroni(), PostgreSQLReplication()]


def engine(settings) -> PGEngine:
    """The dbtier entry point (settings: the inventory's DatabaseSettings)."""
    return PatroniEngine() if settings.ha == "patroni" else PGEngine()


__all__ = [
    "COMPONENTS",
    "PGEngine",
    "Patroni",
    "PatroniEngine",
    "PostgreSQL",
    "PostgreSQLReplication",
    "engine",
    "lsn",
    "needs_seed",
    "parse_probe",
    "paths",
    "sizing",
    "topology_conf",
]
