"""Where a balanced layer (component.Balanced: search, S3 storage, push proxy) is reached.

Clients never talk to one node of a replicated layer: they use the site's internal
address, where the balancer on the proxy hosts listens on the layer's port. That address
is the first floating address (`proxy.vip`, managed by keepalived) when the inventory has
one, else the first proxy host's private address (a single proxy has nothing to float),
else, with no proxy host at all, the layer's first host directly.
"""

from __future__ import annotations

from .errors import MMDeployError
from .inventory import Inventory


def internal_address(inventory: Inventory) -> str | None:
    """The address clients use for balanced layers; None when there is no proxy host."""
    proxy = getattr(inventory.settings, "proxy", None)
    vips = getattr(proxy, "vips", None) or []
    if vips:
        return vips[0].split("/")[0]
    proxies = inventory.with_role("proxy")
    return proxies[0].private_address if proxies else None


def endpoint(inventory: Inventory, layer: str) -> tuple[str, int] | None:
    """(address, port) where clients reach `layer`; None when no host serves it."""
    from .registry import registry

    for balanced, hosts in registry().balanced_layers(inventory):
        if balanced.name == layer:
            port = balanced.port_for(inventory.settings)
            address = internal_address(inventory)
            return (address or hosts[0].private_address), port
    return None


def require_endpoint(inventory: Inventory, layer: str) -> tuple[str, int]:
    found = endpoint(inventory, layer)
    if found is None:
        raise MMDeployError(f"no host serves {layer}: add hosts with its role")
    return found
