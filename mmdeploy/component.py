"""What a component module provides, and the context its steps are built in.

A component (one module per service under components/) says which hosts it runs on,
builds the steps and handlers for one host, and names the checks `verify` runs. It learns
about other components only through the inventory model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable, Protocol

import jinja2

from .facts import Fact, FactCache
from .inventory import Host, Inventory
from .secrets import Secrets
from .step import Step

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _jinja() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


@dataclass
class Context:
    inventory: Inventory
    host: Host
    secrets: Secrets
    facts: FactCache
    shared: object = None  # what the component's prepare() returned for this run

    @property
    def settings(self):
        return self.host.settings

    def render(self, template: str, **variables) -> str:
        """Render templates/<template> with the host, its settings and the inventory."""
        return _jinja().get_template(template).render(
            host=self.host, settings=self.settings, inventory=self.inventory, **variables
        )


@dataclass
class Check:
    """One named verify check; `run` returns None when healthy or the problem found."""

    name: str
    run: Callable[[], str | None]


class ClusterView(Protocol):
    """Read-only access to any inventory host during prepare(), also outside --limit."""

    def facts(self, host: Host, commands: list[str]) -> dict[str, Fact]: ...


class Component:
    name = "component"
    after: tuple[str, ...] = ()  # components that must be applied on all hosts first

    def hosts(self, inventory: Inventory) -> list[Host]:
        raise NotImplementedError

    def prepare(self, inventory: Inventory, view: ClusterView) -> object:
        """Once per run, before any host's steps: read what spans hosts (for example which
        database node is the live primary). Only reads. The result is `ctx.shared`."""
        return None

    def steps(self, ctx: Context) -> list[Step]:
        raise NotImplementedError

    def handlers(self, ctx: Context) -> dict[str, Step]:
        return {}

    def checks(self, inventory: Inventory) -> list[Check]:
        return []


def ordered(components: list[Component]) -> list[Component]:
    """Dependency order (stable for independent components); unknown or cyclic deps fail."""
    by_name = {c.name: c for c in components}
    done: list[Component] = []
    visiting: set[str] = set()

    def visit(c: Component) -> None:
        if c in done:
            return
        if c.name in visiting:
            raise ValueError(f"component dependency cycle through {c.name}")
        visiting.add(c.name)
        for dep in c.after:
            if dep in by_name:  # a dependency that is not selected this run is already applied
                visit(by_name[dep])
        visiting.discard(c.name)
        done.append(c)

    for c in components:
        visit(c)
    return done
