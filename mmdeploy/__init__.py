"""mmdeploy: deploy Mattermost and its service stack onto Debian/Ubuntu hosts over SSH.

Everything the command line does is here, with structured results (see api.py)."""

from .api import (
    CheckResult,
    FailoverReport,
    db_status,
    deploy,
    failover_db,
    inventory_path,
    load,
    plan,
    rejoin,
    run_warnings,
    session,
    topology_graph,
    verify,
)
from .errors import InventoryError, MMDeployError
from .locks import LockHeld

__all__ = ["CheckResult", "FailoverReport", "InventoryError", "LockHeld", "MMDeployError", "db_status", "deploy",
           "failover_db", "inventory_path", "load", "plan", "rejoin", "run_warnings", "session",
           "topology_graph", "verify"]
__version__ = "0.2.0"
