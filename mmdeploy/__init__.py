"""mmdeploy: deploy Mattermost and its service stack onto Debian/Ubuntu hosts over SSH.

Everything the command line does is here, with structured results (see api.py)."""

from typing import TYPE_CHECKING

from .errors import InventoryError, MMDeployError

if TYPE_CHECKING:
    from .locks import LockHeld
    from .api import (
        CheckResult,
        FailoverReport,
        backup,
        backup_status,
        db_status,
        deploy,
        drift,
        failover_db,
        flows,
        inventory_path,
        load,
        migrate_db,
        plan,
        reachable,
        rejoin,
        restore,
        rollback,
        run_warnings,
        session,
        topology_graph,
        upgrade,
        verify,
    )

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
    "flows",
    "inventory_path",
    "load",
    "migrate_db",
    "plan",
    "reachable",
    "rejoin",
    "restore",
    "rollback",
    "run_warnings",
    "session",
    "topology_graph",
    "upgrade",
    "verify",
]
# The API is imported on first use: `inv --list`, `inv --help` and the tasks that only
# validate need neither pydantic's nor jinja2's nor paramiko's import time.
_LATER = {
    "LockHeld": "locks",
    **{name: "api" for name in __all__ if name not in ("InventoryError", "MMDeployError", "LockHeld")},
}


def __getattr__(name: str):
    if name in _LATER:
        import importlib

        return getattr(importlib.import_module(f".{_LATER[name]}", __name__), name)
    raise AttributeError(f"module 'mmdeploy' has no attribute {name!r}")


__version__ = "0.2.0"
