"""The MySQL family: MariaDB (Debian's mariadb-server) or Oracle MySQL 8.0/8.4, one primary
and GTID replicas with semi-synchronous replication, and the dbtier Engine that reads and
moves that topology. Split by concern: gtid (positions of both flavors), flavor (the two
flavors' SQL, in one place), probe (reading a node), scripts (shared by deploy, failover
and rejoin), engine (the dbtier contract) and component (the two deploy components).

Passwords travel in scripts on standard input only: SQL statements through ops.SQL, and
the replication password from a root-only client file on each DB host
(/etc/mysql/mmdeploy-replication.cnf) that the seed, re-point and rejoin scripts read.
"""

from .component import MySQL, MySQLReplication, db_hosts, plan_replica, render_config, render_fence, server_id
from .engine import MySQLEngine, engine
from .flavor import APP_PRIVILEGES, MARIADB, ORACLE, client_host, privileges_guard
from .gtid import GtidSet, MariaPos, maria_missing, maria_state_map
from .probe import parse_probe
from .scripts import fence_script

COMPONENTS = [MySQL(), MySQLReplication()]

__all__ = [
    "APP_PRIVILEGES",
    "COMPONENTS",
    "GtidSet",
    "MARIADB",
    "MariaPos",
    "MySQL",
    "MySQLEngine",
    "MySQLReplication",
    "ORACLE",
    "client_host",
    "db_hosts",
    "engine",
    "fence_script",
    "maria_missing",
    "maria_state_map",
    "parse_probe",
    "plan_replica",
    "privileges_guard",
    "render_config",
    "render_fence",
    "server_id",
]
