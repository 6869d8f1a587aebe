"""mmdeploy: deploy Mattermost and its service stack onto Debian/Ubuntu hosts over SSH."""

from .api import deploy, failover_db, load, plan, verify
from .errors import InventoryError, MMDeployError

__all__ = ["load", "plan", "deploy", "verify", "failover_db", "InventoryError", "MMDeployError"]
__version__ = "0.1.0"
