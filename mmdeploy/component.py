"""What a component module declares, and the context its steps are built in.

A component (one module per service under components/, or a package of a site's own
registered under the `mmdeploy.components` entry point) declares what it owns:

    class Nginx(Component):
        name = "nginx"
        roles = ("proxy",)                          # it runs on hosts with these roles
        owns_roles = (Role("proxy", "...", {"single": 1, "multi": 2, "cluster": 2}),)
        settings = {"nginx": NginxSettings, "tls": TLSSettings}   # its sections and defaults
        secrets = ()                                # typed Secret declarations it reads
        metrics = (Metrics("nginx", 9113),)         # what Prometheus scrapes on its hosts
        ports = (Port("https", 443, (ANYONE,)),)    # what it serves, and who may reach it
        after = ("base", "mattermost")              # applied after these, on every host

and builds the steps and handlers for one host, and the checks `verify` runs. Everything
else (the registry, the roles validation accepts, the pattern requirements, the scrape
targets, the settings tree, the firewall's flow matrix) is derived from these declarations
by registry.py. A component learns about others only through the inventory model.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol, Sequence

import jinja2

from .facts import Fact, FactCache
from .inventory import Host, Inventory
from .secrets import Secret, Secrets
from .settings import Section
from .step import Step

TEMPLATES = Path(__file__).parent / "templates"
# Compiled templates, kept between runs (as Python keeps its bytecode): a no-op run of the
# single pattern otherwise spends ~40 ms of its CPU turning the same templates into code.
TEMPLATE_CACHE = Path(os.environ.get("MMDEPLOY_TEMPLATE_CACHE", Path.home() / ".cache" / "mmdeploy" / "templates"))


@dataclass(frozen=True)
class Role:
    """A host role and how many hosts each pattern needs with it (0 or absent: optional)."""

    name: str
    doc: str
    min_hosts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    """A Prometheus scrape target on every host the component runs on. `port` is a number
    or a function of the host's settings; `when` may narrow the hosts."""

    job: str
    port: int | Callable[[Any], int]
    path: str = "/metrics"
    when: Callable[[Host], bool] | None = None

    def port_for(self, host: Host) -> int:
        return self.port(host.settings) if callable(self.port) else self.port


@dataclass(frozen=True)
class Balanced:
    """A layer this component serves on several hosts, reached by its clients through the
    internal balancer on the proxy hosts (balancer.py): the balancer listens on `port` at
    the site's internal address and spreads requests over the component's hosts on the
    same port, checking each with an HTTP GET of `health` ("" for a TCP check; "METHOD
    /path" for another method, such as OPTIONS, answered with a status alone). Only
    hosts with one of `clients` roles may connect. `when` may narrow the component's hosts
    that serve it (a search cluster's data-less tiebreaker serves no clients).

    A database route (a leader and its replicas) adds: `server_port`, the servers' port
    when it differs from `port`; `check_port`, where the HTTP health check is asked while
    the traffic itself is TCP (Patroni's REST API beside PostgreSQL); `sessions="long"`
    for connections held for minutes (a connection pool): long idle timeouts, checks every
    second, and a server's connections cut when it is marked down, so that no client keeps
    writing to a demoted leader; `up`, what verify expects: "all" servers up, exactly
    "one" (a leader route, where the others answer their check with "not me"), or "any"."""

    name: str
    port: int | Callable[[Any], int]
    health: str = ""
    clients: tuple[str, ...] = ("app", "jobserver")
    when: Callable[[Host], bool] | None = None
    server_port: int | Callable[[Any], int] | None = None
    check_port: int | Callable[[Any], int] | None = None
    sessions: str = "short"  # short | long
    up: str = "all"  # all | one | any

    def port_for(self, settings: Any) -> int:
        return self.port(settings) if callable(self.port) else self.port

    def server_port_for(self, settings: Any) -> int:
        port = self.port if self.server_port is None else self.server_port
        return port(settings) if callable(port) else port

    def check_port_for(self, settings: Any) -> int | None:
        port = self.check_port
        return port(settings) if callable(port) else port


@dataclass(frozen=True)
class LayerClient:
    """Hosts that reach a balanced layer (by its name) besides the hosts of the layer's
    `clients` roles, declared by the component that makes them clients (the backup host
    reaching the storage layer when the backup repository is there): HAProxy admits them
    and the host firewall lets them reach the balancer (or, with no proxy host, the
    layer's hosts)."""

    layer: str
    hosts: Callable[[Inventory], list[Host]]


# Who may reach a Port, besides role names: anyone, the control machine (where mmdeploy
# runs), the networks of `firewall.admin_cidrs`, and the other hosts serving the same port.
# A source "settings.<section>.<key>" names a list of networks in the host's settings
# (e.g. "settings.database.extra_clients").
ANYONE = "*"
CONTROL = "@control"
ADMIN = "@admin"
PEERS = "@peers"


@dataclass(frozen=True)
class Port:
    """A port this component serves on its hosts, and who may reach it: the host firewall
    (components/firewall.py) opens exactly these, and verify compares what answers from
    the control machine with them.

    `port` is a number or a function of the host (its settings, or `host.ssh.port`);
    `reach` lists the sources: role names (their hosts' private addresses), ANYONE,
    CONTROL, ADMIN, PEERS or a "settings.<section>.<key>" list of networks; `reach_hosts`
    adds hosts no role names (the backup host). `proto` is "tcp", "udp" or "vrrp" (IP
    protocol 112, no port). `when` narrows the hosts that serve it; `on` replaces them
    (default: the component's hosts). A component's Metrics (reached by the monitoring
    hosts) and Balanced layers (the balancer on the proxies, the layer's clients there)
    are ports too: registry.py derives those, so they are not declared twice."""

    name: str
    port: int | Callable[[Host], int]
    reach: tuple[str, ...] = ()
    proto: str = "tcp"  # tcp | udp | vrrp
    when: Callable[[Host], bool] | None = None
    on: Callable[[Inventory], list[Host]] | None = None
    reach_hosts: Callable[[Inventory], list[Host]] | None = None
    why: str = ""  # one line for the flow matrix, when the sources need explaining

    def port_for(self, host: Host) -> int:
        if self.proto == "vrrp":
            return 0
        return self.port(host) if callable(self.port) else self.port


class Rendered(str):
    """A rendered template that remembers where it came from (built-in or site override)."""

    origin: str = ""


class _Loader(jinja2.BaseLoader):
    """Site templates (templates/<component>/ beside the inventory's hosts/) first, then the
    built-in ones: a file of the same name replaces the built-in, as a playbook's
    templates/ does beside a role's."""

    def __init__(self, site: Path | None, extra: tuple[Path, ...] = ()):
        self.site = site
        # Built-in templates, then those of components from other packages (entry points).
        self.builtin = jinja2.FileSystemLoader([str(TEMPLATES), *map(str, extra)])

    def get_source(self, environment, template):
        if self.site is not None and (self.site / template).is_file():
            path = self.site / template
            source = path.read_text()
            mtime = path.stat().st_mtime
            return source, str(path), lambda: path.is_file() and path.stat().st_mtime == mtime
        return self.builtin.get_source(environment, template)


class _CompiledCache(jinja2.FileSystemBytecodeCache):
    """Jinja's cache of compiled templates in a directory of this user's only, best effort:
    where it cannot be read or written the template is compiled, as without it. An entry
    is used only for the same template file with the same source (Jinja keys it by name and
    file, and checks the source's checksum and its own version)."""

    @classmethod
    def at(cls, directory: Path) -> _CompiledCache | None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = directory.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o077:  # only a directory nobody else can write
                return None
        except OSError:
            return None
        return cls(str(directory), "%s.jinja")

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a truncated or foreign file: compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:  # full or read-only: the next run compiles it again
            pass


@cache
def _jinja(site: Path | None) -> jinja2.Environment:
    from .registry import registry

    return jinja2.Environment(
        loader=_Loader(site, registry().template_dirs),
        bytecode_cache=_CompiledCache.at(TEMPLATE_CACHE),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def site_templates(inventory: Inventory) -> Path | None:
    """The site's template overrides: templates/ beside the directory holding the inventory
    (hosts/site.yml -> templates/), or beside the inventory file itself."""
    folder = inventory.path.resolve().parent
    for candidate in (folder.parent / "templates", folder / "templates"):
        if candidate.is_dir():
            return candidate
    return None


def render(inventory: Inventory, template: str, **variables) -> Rendered:
    site = site_templates(inventory)
    tpl = _jinja(site).get_template(template)
    text = Rendered(tpl.render(inventory=inventory, **variables))
    if site is not None and tpl.filename and Path(tpl.filename).is_relative_to(site):
        text.origin = f"site template {Path(tpl.filename)}"
    else:
        text.origin = f"built-in template {template}"
    return text


@dataclass
class Context:
    inventory: Inventory
    host: Host
    secrets: Secrets
    facts: FactCache
    shared: Any = None  # what the component's prepare() returned for this run

    @property
    def settings(self) -> Any:
        return self.host.settings

    def render(self, template: str, **variables) -> Rendered:
        """Render <component>/<file>.j2 with the host, its settings and the inventory."""
        return render(self.inventory, template, host=self.host, settings=self.settings, **variables)


@dataclass
class Check:
    """One named verify check; `run` returns None when healthy or the problem found, or an
    Info/Warn: healthy, with a line worth printing (the running version, a feature that is
    inactive without a license). A check about one host names it in `host`: while that host
    is down, verify reports the check as not run, with a warning, instead of running it."""

    name: str
    run: Callable[[], str | None]
    host: str | None = None


# The hosts verify found down (no SSH answer) before it built the checks.
_DOWN: ContextVar[frozenset[str]] = ContextVar("down_hosts", default=frozenset())


@contextmanager
def hosts_down(names: frozenset[str]) -> Iterator[None]:
    """While verify builds and runs the checks: these hosts are down."""
    token = _DOWN.set(names)
    try:
        yield
    finally:
        _DOWN.reset(token)


def down_hosts() -> frozenset[str]:
    """The hosts verify found down. A check of a whole tier expects only the others to
    answer: a dead node is reported once, as down (a warning), and the tier passes while
    the rest serve (the cluster pattern survives losing one of anything)."""
    return _DOWN.get()


def live(hosts: Sequence[Host]) -> list[Host]:
    """`hosts` without those verify found down."""
    down = _DOWN.get()
    return [h for h in hosts if h.name not in down]


def without_down(problem: str | None, hosts: Sequence[Host]) -> str | None:
    """A tier's problem as a warning when `hosts` include down ones (the tier is degraded
    because a node is dead, which verify reports on its own): the problem stays a failure
    when every host of the tier is up."""
    gone = [h.name for h in hosts if h.name in _DOWN.get()]
    if problem is None or not gone or isinstance(problem, (Info, Warn)):
        return problem
    return Warn(f"degraded while {', '.join(gone)} {'is' if len(gone) == 1 else 'are'} down: {problem}")


def settled(once: Callable[[], str | None], wait: float, every: float = 2.0) -> str | None:
    """A verify check's answer given up to `wait` seconds to become healthy: `once` is asked
    again every `every` s while it finds a problem (a service this deploy just started, a
    target not scraped yet, a backend still rising); its last problem is the answer."""
    deadline = time.monotonic() + wait
    while True:
        problem = once()
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(every)


class Info(str):
    """A check's informative finding: the check passed, and this says what was seen."""


class Warn(str):
    """A check's warning: nothing is broken, but the operator should know (printed as warn)."""


class ClusterView(Protocol):
    """Read-only access to any inventory host during prepare(), also outside --limit."""

    def facts(self, host: Host, commands: list[str]) -> dict[str, Fact]: ...


class Component:
    name: ClassVar[str] = "component"
    # The hosts it runs on: those with any of these roles ("*": every host).
    roles: ClassVar[tuple[str, ...]] = ()
    # Roles this component introduces, with each pattern's minimum host count.
    owns_roles: ClassVar[tuple[Role, ...]] = ()
    # Settings sections it owns: key in the inventory's settings -> model with defaults.
    settings: ClassVar[Mapping[str, type[Section]]] = {}
    secrets: ClassVar[tuple[Secret, ...]] = ()
    metrics: ClassVar[tuple[Metrics, ...]] = ()
    # Layers it serves behind the internal balancer on the proxy hosts.
    balanced: ClassVar[tuple[Balanced, ...]] = ()
    # Ports it serves and who may reach them (the host firewall's rules; see Port).
    ports: ClassVar[tuple[Port, ...]] = ()
    # Hosts it makes clients of another component's balanced layer (see LayerClient).
    layer_clients: ClassVar[tuple[LayerClient, ...]] = ()
    # Components that must be applied on every host first; an unknown name is an error.
    after: ClassVar[tuple[str, ...]] = ()
    # Its configuration names the live database primary: re-applied after a failover.
    follows_db: ClassVar[bool] = False
    # Applied before every component that is not among its own dependencies (`after`):
    # the host firewall, in place before any service listens or any host is reached.
    first: ClassVar[bool] = False
    # Its hosts start it together in a pipelined apply, as under a barrier (the members of
    # a cluster form it at once); False where they need nothing of each other.
    together: ClassVar[bool] = True
    # The component this one was split from, so that its hosts need not wait for what that
    # one waits for (mattermost-release): selecting that one (--only) brings this one along.
    part_of: ClassVar[str] = ""
    # It points apt at the inventory's package source (base): a pipelined apply fetches the
    # host's later packages ahead only once it has run there.
    sets_up_apt: ClassVar[bool] = False

    def enabled(self, host: Host) -> bool:
        """Whether it applies to this host beyond the roles (e.g. the DB engine chosen)."""
        return True

    def hosts(self, inventory: Inventory) -> list[Host]:
        return [
            h for h in inventory.hosts if ("*" in self.roles or any(h.has(r) for r in self.roles)) and self.enabled(h)
        ]

    def validate(self, settings: Any) -> list[tuple[str, str]]:
        """Rules spanning several keys of the merged settings: (key path, problem)."""
        return []

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        """Rules on the hosts and their roles together with the settings (a layout that
        cannot survive losing a host): (key path, problem), where the path is in the
        inventory file's terms, e.g. "hosts.4.roles" or "settings.storage.server". Runs at
        load time, after every other check passed, before any host is touched."""
        return []

    def prepare(self, inventory: Inventory, view: ClusterView) -> Any:
        """Once per run, before any host's steps: read what spans hosts (for example which
        database node is the live primary). Only reads. The result is `ctx.shared`."""
        return None

    def after_failover(self, topology: Any) -> Any:
        """For a `follows_db` component: its `ctx.shared` when re-applied right after a
        failover to `topology` (a dbtier.Topology), instead of prepare()."""
        return topology

    def steps(self, ctx: Context) -> list[Step]:
        raise NotImplementedError

    def handlers(self, ctx: Context) -> dict[str, Step]:
        return {}

    def build_facts(self, host: Host) -> list[str]:
        """The facts steps() and handlers() read on `host` while they build (ctx.facts.get):
        read with the host facts in the run's first round trip to each host, instead of a
        round trip each while the steps are built."""
        return []

    def retire(self, ctx: Context) -> list[Step]:
        """Steps on every other host of the run (one this component places nothing on):
        stop what an earlier deploy left running there, when a role was taken from the host
        or the layout moved a server elsewhere (growing multi into cluster moves the
        tiebreakers off the job server). Data stays on disk. Where nothing runs, each step
        must find nothing to do, from facts alone."""
        return []

    def retires(self) -> bool:
        return type(self).retire is not Component.retire

    def checks(self, inventory: Inventory) -> list[Check]:
        return []

    def warnings(self, inventory: Inventory, today: Any) -> list[str]:
        """Warnings `plan` and `deploy` print before the steps (and return in the report),
        e.g. a release past its support end; `today` is a datetime.date."""
        return []

    def found_warnings(self, prepared: Any) -> list[str]:
        """Warnings from what prepare() read on the hosts (e.g. a backup repository that
        holds another cluster's backups), printed when found and after the run's summary,
        and returned in the report."""
        return []

    def __repr__(self) -> str:
        return f"<component {self.name}>"


def ordered(components: list[Component]) -> list[Component]:
    """Dependency order (stable for independent components); cycles fail. A dependency
    that is not selected this run (--only) is taken as already applied. A `first`
    component goes before everything that is not among its own dependencies."""
    by_name = {c.name: c for c in components}
    done: list[Component] = []
    visiting: set[str] = set()

    def needs(c: Component) -> set[str]:
        """Every component `c` is applied after, directly or through others."""
        found: set[str] = set()
        todo = list(c.after)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo += list(by_name[name].after) if name in by_name else []
        return found

    firsts = [f for f in components if f.first]
    before = {f.name: needs(f) for f in firsts}

    def visit(c: Component) -> None:
        if c in done:
            return
        if c.name in visiting:
            raise ValueError(f"component dependency cycle through {c.name}")
        visiting.add(c.name)
        early = [] if c.first else [f.name for f in firsts if c.name not in before[f.name]]
        for dep in (*c.after, *early):
            if dep in by_name:
                visit(by_name[dep])
        visiting.discard(c.name)
        done.append(c)

    for c in components:
        visit(c)
    return done


def cross_host(components: list[Component]) -> dict[str, set[str]]:
    """What each component waits for on other hosts in a pipelined apply: every component it
    is applied after (its `after`, through others too) and every `first` one (a host's
    firewall lets its peers in), each finished on all of that component's hosts. The rest
    of the order is only per host. Names not selected this run are left out."""
    by_name = {c.name: c for c in components}

    def closure(names: list[str]) -> set[str]:
        deps: set[str] = set()
        while names:
            name = names.pop()
            if name in by_name and name not in deps:
                deps.add(name)
                names += list(by_name[name].after)
        return deps

    firsts = {c.name: closure(list(c.after)) for c in components if c.first}
    return {
        c.name: closure([*c.after, *(f for f, own in firsts.items() if not c.first and c.name not in own)])
        for c in components
    }
