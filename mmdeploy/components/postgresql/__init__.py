"""PostgreSQL from Debian's own packages: one primary, streaming replicas, and the dbtier
Engine that reads and moves that topology. Split by concern: config (paths, sizing,
rendered settings), probe (reading a node), scripts (shared by deploy, failover and
rejoin), engine (the dbtier contract) and component (the two deploy components)."""

from .component import PostgreSQL, PostgreSQLReplication, needs_seed
from .config import paths, sizing, topology_conf
from .engine import PGEngine, engine
from .probe import lsn, parse_probe

COMPONENTS = [PostgreSQL(), PostgreSQLReplication()]

__all__ = ["COMPONENTS", "PGEngine", "PostgreSQL", "PostgreSQLReplication", "engine", "lsn", "needs_seed",
           "parse_probe", "paths", "sizing", "topology_conf"]
