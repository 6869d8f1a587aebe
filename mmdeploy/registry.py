"""The registry: every component, and everything derived from what they declare.

Components are discovered, not listed by hand: every module of the `mmdeploy.components`
package (a module, or a package whose __init__ exports it) that defines `COMPONENTS`, and
every entry point of the group `mmdeploy.components` (a site's own package), which names a
module with `COMPONENTS` or a Component class. From their declarations come the roles
validation accepts, each pattern's requirements, the settings tree (built-in defaults
next to each component's code), the declared secrets and the Prometheus scrape targets.
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

from .component import Balanced, Component, Metrics, Role
from .errors import InventoryError, MMDeployError
from .inventory import Host, Inventory
from .secrets import Secret
from .settings import CoreSettings, Section

ENTRY_POINT_GROUP = "mmdeploy.components"


class RegistryError(MMDeployError):
    """Components that contradict each other; a programming error of a component."""


@dataclass(frozen=True)
class Registry:
    components: tuple[Component, ...]
    roles: dict[str, Role]
    sections: dict[str, type[Section]]
    secrets: dict[str, Secret]
    settings_model: type[CoreSettings]
    template_dirs: tuple[Path, ...] = ()  # templates/ of components from other packages

    def by_name(self, names: list[str] | None) -> list[Component]:
        """The components named (all when None); an unknown name is bad input."""
        if names is None:
            return list(self.components)
        known = {c.name: c for c in self.components}
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            what = f"unknown component {', '.join(map(repr, unknown))}" if unknown else "no component named"
            raise InventoryError([f"--only: {what} (known: {', '.join(known)})"])
        return [known[n] for n in names]

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

    def scrape_jobs(self, inventory: Inventory) -> list[tuple[str, list[tuple[Host, Metrics]]]]:
        """(job name, [(host, metrics)]) for every declared metrics target, in declaration order."""
        jobs: dict[str, list[tuple[Host, Metrics]]] = {}
        for c in self.components:
            for m in c.metrics:
                for h in c.hosts(inventory):
                    if m.when is None or m.when(h):
                        jobs.setdefault(m.job, []).append((h, m))
        return list(jobs.items())


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
