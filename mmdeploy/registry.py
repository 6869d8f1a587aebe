"""The registry: every component, and everything derived from what they declare.

Components are discovered, not listed by hand: every module of the `mmdeploy.components`
package (a module, or a package whose __init__ exports it) that defines `COMPONENTS`, and
every entry point of the group `mmdeploy.components` (a site's own package), which names a
module with `COMPONENTS` or a Component class. From their declarations come the roles
validation accepts, each pattern's requirements, the settings tree (built-in defaults
next to each component's code), the declared secrets, the Prometheus scrape targets and
the firewall's flow matrix (ports, metrics and balanced layers: who reaches what).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import create_model

from .component import ADMIN, ANYONE, CONTROL, PEERS, Balanced, Component, Metrics, Role
from .errors import InventoryError, MMDeployError
from .inventory import Host, Inventory
from .secrets import Secret
from .settings import CoreSettings, Section

ENTRY_POINT_GROUP = "mmdeploy.components"


class RegistryError(MMDeployError):
    """Components that contradict each other; a programming error of a component."""


@dataclass(frozen=True)
class Flow:
    """One allowed inbound flow: `host` serves `port` (`proto`) to the sources in `reach`
    (as declared: role names, ANYONE, CONTROL, ADMIN, settings lists), of which `sources`
    are the inventory hosts (roles, peers and named hosts resolved)."""

    host: Host
    component: str
    name: str
    proto: str
    port: int
    reach: tuple[str, ...]
    sources: tuple[Host, ...]
    why: str = ""
    # Where it comes from: a declared "port", a "metrics" target, a "balancer" frontend on
    # the proxies, a balanced "layer" on its hosts, or the layer's "health" check port.
    kind: str = "port"


@dataclass(frozen=True)
class Registry:
    components: tuple[Component, ...]
    roles: dict[str, Role]
    sections: dict[str, type[Section]]
    secrets: dict[str, Secret]
    settings_model: type[CoreSettings]
    template_dirs: tuple[Path, ...] = ()  # templates/ of components from other packages

    def by_name(self, names: list[str] | None) -> list[Component]:
        """The components named (all when None), then the parts of them not named
        (Component.part_of); an unknown name is bad input."""
        if names is None:
            return list(self.components)
        known = {c.name: c for c in self.components}
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            what = f"unknown component {', '.join(map(repr, unknown))}" if unknown else "no component named"
            raise InventoryError([f"--only: {what} (known: {', '.join(known)})"])
        parts = [c for c in self.components if c.part_of in names and c.name not in names]
        return [known[n] for n in names] + parts

    def component(self, name: str) -> Component:
        return self.by_name([name])[0]

    def balanced_layers(self, inventory: Inventory) -> list[tuple[Balanced, list[Host]]]:
        """Every layer a component serves behind the internal balancer, with its hosts."""
        layers = []
        for c in self.components:
            for b in c.balanced:
                hosts = [h for h in c.hosts(inventory) if b.when is None or b.when(h)]
                if hosts:
                    layers.append((b, hosts))
        return layers

    def layer_clients(self, inventory: Inventory, layer: str) -> list[Host]:
        """The hosts components declare as clients of `layer` beyond its `clients` roles."""
        return _layer_clients(inventory, self.components, layer)

    def flows(self, inventory: Inventory) -> list[Flow]:
        """Every inbound flow the deployment needs (see _flows): the firewall's matrix."""
        return _flows(inventory, self.components)

    def scrape_jobs(self, inventory: Inventory) -> list[tuple[str, list[tuple[Host, Metrics]]]]:
        """(job name, [(host, metrics)]) for every declared metrics target, in declaration order."""
        jobs: dict[str, list[tuple[Host, Metrics]]] = {}
        for c in self.components:
            for m in c.metrics:
                for h in c.hosts(inventory):
                    if m.when is None or m.when(h):
                        jobs.setdefault(m.job, []).append((h, m))
        return list(jobs.items())


def _layer_clients(inventory: Inventory, components: tuple[Component, ...], layer: str) -> list[Host]:
    return [h for c in components for lc in c.layer_clients if lc.layer == layer for h in lc.hosts(inventory)]


def _flows(inventory: Inventory, components: tuple[Component, ...]) -> list[Flow]:
    """The flow matrix: every component's declared ports, then what its Metrics (the
    monitoring hosts scrape them) and Balanced layers (the balancer on the proxies reached
    by the layer's clients, and the layer's hosts by the balancer) imply."""
    flows: list[Flow] = []

    def add(
        host: Host,
        c: Component,
        name: str,
        proto: str,
        port: int,
        reach: tuple[str, ...],
        peers: list[Host],
        extra: list[Host],
        why: str = "",
        kind: str = "port",
    ) -> None:
        sources: list[Host] = []
        for r in reach:
            if r == PEERS:
                sources += peers
            elif r in registry_roles:
                sources += inventory.with_role(r)
        sources += extra
        unique = tuple({h.name: h for h in sources if h.name != host.name}.values())
        flows.append(Flow(host, c.name, name, proto, port, reach, unique, why, kind))

    registry_roles = {r for c in components for r in (role.name for role in c.owns_roles)}
    proxies = inventory.with_role("proxy")
    for c in components:
        for p in c.ports:
            hosts = [h for h in (p.on(inventory) if p.on else c.hosts(inventory)) if p.when is None or p.when(h)]
            extra = p.reach_hosts(inventory) if p.reach_hosts else []
            for h in hosts:
                add(h, c, p.name, p.proto, p.port_for(h), p.reach, hosts, extra, p.why)
        for m in c.metrics:
            for h in c.hosts(inventory):
                if m.when is None or m.when(h):
                    add(
                        h,
                        c,
                        f"{m.job} metrics",
                        "tcp",
                        m.port_for(h),
                        ("monitoring",),
                        [],
                        [],
                        "Prometheus scrapes it",
                        "metrics",
                    )
        for b in c.balanced:
            layer = [h for h in c.hosts(inventory) if b.when is None or b.when(h)]
            if not layer:
                continue
            more = _layer_clients(inventory, components, b.name)
            for lb in proxies:
                add(
                    lb,
                    c,
                    f"{b.name} balancer",
                    "tcp",
                    b.port_for(lb.settings),
                    b.clients,
                    [],
                    more,
                    "the layer's clients, through HAProxy on the proxies",
                    "balancer",
                )
            front = ("proxy",) if proxies else b.clients
            for h in layer:
                add(
                    h,
                    c,
                    b.name,
                    "tcp",
                    b.server_port_for(h.settings),
                    front,
                    [],
                    [] if proxies else more,
                    "the balancer on the proxies" if proxies else "its clients (no proxy host to balance)",
                    "layer",
                )
                check = b.check_port_for(h.settings)
                if check is not None and proxies:
                    add(
                        h,
                        c,
                        f"{b.name} health check",
                        "tcp",
                        check,
                        ("proxy",),
                        [],
                        [],
                        "the balancer's health checks",
                        "health",
                    )
    return flows


def _modules():
    from . import components as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        yield importlib.import_module(f"{package.__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            yield ep.load()
        except Exception as e:  # a broken site package must say which it is
            raise RegistryError(f"entry point {ep.name} ({ep.value}) of {ENTRY_POINT_GROUP}: {e}") from e


def _collect() -> tuple[list[Component], list[Path]]:
    found: list[Component] = []
    template_dirs: list[Path] = []
    for item in _modules():
        if isinstance(item, type) and issubclass(item, Component):
            found.append(item())
            module = sys.modules[item.__module__]
        else:
            found.extend(getattr(item, "COMPONENTS", ()))
            module = item
        folder = Path(getattr(module, "__file__", "") or ".").parent / "templates"
        if not module.__name__.startswith("mmdeploy.") and folder.is_dir():
            template_dirs.append(folder)
    return found, template_dirs


def build(components: list[Component], template_dirs: list[Path] | tuple[Path, ...] = ()) -> Registry:
    """Check the declarations against each other and derive everything from them."""
    names: dict[str, Component] = {}
    for c in components:
        if c.name in names:
            raise RegistryError(f"two components are called {c.name!r}: {names[c.name]!r} and {c!r}")
        names[c.name] = c
    for c in components:
        unknown = [d for d in c.after if d not in names]
        if unknown:
            raise RegistryError(f"component {c.name}: `after` names unknown component(s) {', '.join(unknown)}")
    roles: dict[str, Role] = {}
    sections: dict[str, type[Section]] = {}
    secrets: dict[str, Secret] = {}
    for c in components:
        for role in c.owns_roles:
            if roles.setdefault(role.name, role) != role:
                raise RegistryError(f"role {role.name!r} is declared differently by {c.name}")
        for key, model in c.settings.items():
            if key in CoreSettings.model_fields or sections.setdefault(key, model) is not model:
                raise RegistryError(f"settings section {key!r} of {c.name} is already owned by another component")
        for secret in c.secrets:
            if secrets.setdefault(secret.name, secret) != secret:
                raise RegistryError(f"secret {secret.name!r} is declared differently by {c.name}")
    for c in components:
        unknown = [r for r in c.roles if r != "*" and r not in roles]
        if unknown:
            raise RegistryError(f"component {c.name} runs on role(s) no component declares: {', '.join(unknown)}")
    for c in components:
        for port in c.ports:
            if port.proto not in ("tcp", "udp", "vrrp"):
                raise RegistryError(
                    f"component {c.name}: port {port.name!r} has protocol {port.proto!r} (expected tcp, udp or vrrp)"
                )
            for source in port.reach:
                if (
                    source not in (ANYONE, CONTROL, ADMIN, PEERS)
                    and source not in roles
                    and not (source.startswith("settings.") and source.split(".")[1] in sections)
                ):
                    raise RegistryError(
                        f"component {c.name}: port {port.name!r} is reached from {source!r}, "
                        "which is no role, settings section or source (*, @control, @admin, @peers)"
                    )
    fields: dict[str, Any] = {key: (model, model()) for key, model in sections.items()}
    tree = create_model("Settings", __base__=CoreSettings, **fields)
    from .component import ordered

    try:
        ordered(components)
    except ValueError as e:
        raise RegistryError(str(e)) from None
    return Registry(tuple(components), roles, sections, secrets, tree, tuple(template_dirs))


@cache
def registry() -> Registry:
    return build(*_collect())


def settings_model() -> type[CoreSettings]:
    return registry().settings_model
