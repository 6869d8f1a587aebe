"""mmdeploy: deploy Mattermost and its service stack onto Debian/Ubuntu hosts over SSH.

Everything the command line does is here, with structured results (see api.py)."""

from .api import (
    CheckResult,
    FailoverReport,
    backup,
    backup_status,
    db_status,
    deploy,
    drift,
    failover_db,
    inventory_path,
    load,
    migrate_db,
    plan,
    rejoin,
    restore,
    rollback,
    run_warnings,
    session,
    topology_graph,
    upgrade,
    verify,
)
from .errors import InventoryError, MMDeployError
from .locks import LockHeld

__all__ = [
    "CheckResult",
    "FailoverReport",
    "InventoryError",
    "LockHeld",
    "MMDeployError",
    "backup",
    "backup_status",
    "db_status",
    "deploy",
    "drift",
    "failover_db",
    "inventory_path",
    "load",
    "migrate_db",
    "plan",
    "rejoin",
    "restore",
    "rollback",
    "run_warnings",
    "session",
    "topology_graph",
    "upgrade",
    "verify",
]
__version__ = "0.2.0"
