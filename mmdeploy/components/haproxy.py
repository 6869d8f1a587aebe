"""HAProxy: the internal balancer on the proxy hosts, from Debian's package (2.6).

NGINX faces the users (TLS, HTTP/2, websockets, the static cache); HAProxy balances the
layers the other components serve on several hosts (component.Balanced: search, S3
storage, push proxy), because it checks every backend actively (a dead node leaves the
pool within seconds, before a request finds it), retries a failed connection on another
node, shows per-layer and per-server state and counters to Prometheus, and is the same
tool Patroni's leader routing needs in the cluster pattern.

For every balanced layer (registry().balanced_layers):
- a frontend on the site's internal address (each floating address `proxy.vip`, bound on
  every proxy, the holder or not, with net.ipv4.ip_nonlocal_bind=1; on a site without
  one, the proxy's own private address) and the layer's port, open only to the hosts with the layer's `clients`
  roles: any other source is refused at connect;
- a backend of the layer's hosts, checked with an HTTP GET of its `health` path (HTTP
  mode) or a TCP connect (TCP mode, for a layer that declares no health path);
- `balance leastconn`: requests to these layers vary from milliseconds to minutes (a
  search query, a large file upload or download), so the node with the fewest open
  connections is a better choice than the next in turn (roundrobin);
- `retries` with `option redispatch`: a connection that fails goes to another node.
  Only connection failures are retried, so no request is ever sent twice.

Its own metrics: a stats listener on the private address (Prometheus's built-in
exporter, compiled into Debian's 2.6 build: `haproxy -vv` lists prometheus-exporter),
open to the monitoring hosts only, with a monitor page keepalived's track script asks.
The candidate configuration is checked with `haproxy -c` before it replaces the live one;
a change is applied by a reload (new workers take over, open connections finish).
With no balanced layer declared, HAProxy is not installed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pydantic import Field

from ..component import Balanced, Check, Component, Context, Metrics, down_hosts, settled
from ..errors import MMDeployError
from ..grammar import hostport
from ..inventory import Host, Inventory
from ..ops import Command, File, Packages, Service, Sysctl
from ..settings import Section

CONF = "/etc/haproxy/haproxy.cfg"
HEALTH = "/healthz"  # the monitor page keepalived's track script asks for
RELOAD = ("reload",)
# The database routes' check interval and every check's time-out (seconds), for the
# template and for the reload handler's wait.
LONG_SESSION_INTER, CHECK_TIMEOUT = 1.0, 2.0
RISE_WAIT = 30.0  # seconds verify gives a down server to rise (HAProxy: rise 2 checks)


class HaproxySettings(Section):
    """The internal balancer on the proxy hosts (components/haproxy.py)."""

    # HAProxy's stats listener: Prometheus metrics at /metrics, the monitor page at /healthz.
    stats_port: int = Field(default=8405, ge=1, le=65535)
    # How often each backend server is checked; two failed checks take it out of the pool.
    check_interval: str = Field(default="2s", pattern=r"^\d+(ms|s)$")
    # How long a server may stay silent in the middle of a request (a long search).
    timeout_server: str = Field(default="60s", pattern=r"^\d+(ms|s|m)$")


@dataclass(frozen=True)
class Server:
    name: str
    address: str  # host:port
    check_port: int | None = None  # the health check's port when it is not the traffic's


@dataclass(frozen=True)
class Layer:
    """One balanced layer as HAProxy serves it."""

    name: str
    mode: str  # http or tcp
    health: str
    binds: tuple[str, ...]  # address:port
    clients: tuple[str, ...]  # source addresses allowed
    servers: tuple[Server, ...]
    long_sessions: bool = False  # a connection pool's connections (component.Balanced.sessions)


class Haproxy(Component):
    name = "haproxy"
    roles = ("proxy",)
    settings = {"haproxy": HaproxySettings}
    metrics = (Metrics("haproxy", lambda s: s.haproxy.stats_port),)
    # Reloaded once the database tier is up, so that its first checks find the primary
    # and Mattermost's first connections through it find a route.
    after = ("base", "postgresql-replication", "mysql-replication")

    def hosts(self, inventory: Inventory) -> list[Host]:
        return super().hosts(inventory) if _layers(inventory) else []

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        """Without a floating address HAProxy listens on each proxy's private address and
        the layer's port: a proxy that serves a layer of several hosts itself would hold
        that address and port twice."""
        if inventory.settings.proxy.vips:
            return []
        problems = []
        for balanced, servers in _layers(inventory):
            port = balanced.port_for(inventory.settings)
            if len(servers) < 2:
                continue  # a single node is reached directly (see layers())
            for h in servers:
                if h.has("proxy") and balanced.port_for(h.settings) == port:
                    problems.append(
                        (
                            f"hosts.{inventory.hosts.index(h)}.roles",
                            f"{h.name} is a proxy and serves {balanced.name} on port {port} itself, where "
                            f"HAProxy balances {balanced.name} over {', '.join(x.name for x in servers)}: "
                            f"keep {balanced.name} off the proxy hosts, or set proxy.vip (HAProxy then "
                            "listens on the floating address)",
                        )
                    )
        return problems

    def steps(self, ctx: Context):
        steps = []
        if ctx.settings.proxy.vips:
            # Listen on every floating address, held here or not (keepalived moves them).
            steps.append(Sysctl("net.ipv4.ip_nonlocal_bind", 1))
        return steps + [
            Packages("haproxy"),
            File(CONF, render(ctx), validate="haproxy -c -q -f {}", notify=RELOAD),
            Service("haproxy"),
        ]

    def handlers(self, ctx: Context):
        # Debian's unit checks the configuration again and hands over to new workers. New
        # workers take every server as up until its first check: for that long the primary's
        # route may hand a connection to a replica (a restarted Mattermost then fails its
        # schema check on a read-only database). The clients the next components restart
        # find only checked servers: the handler waits out one check round.
        first_checks = max(_seconds(ctx.settings.haproxy.check_interval), LONG_SESSION_INTER) + CHECK_TIMEOUT
        return {
            "reload": Command(
                "reload haproxy",
                f"haproxy -c -q -f {CONF} && systemctl reload-or-restart haproxy && sleep {first_checks:g}",
            )
        }

    def checks(self, inventory: Inventory):
        layers = [b.name for b, _ in _layers(inventory)]
        return [
            Check(
                f"HAProxy on {h.name}: every server of {', '.join(layers)} up",
                _servers_up(inventory, h, gone={_ident(name) for name in down_hosts()}),
                h.name,
            )
            for h in self.hosts(inventory)
        ]


def _layers(inventory: Inventory) -> list[tuple[Balanced, list[Host]]]:
    from ..registry import registry

    return registry().balanced_layers(inventory)


def layers(inventory: Inventory, host: Host) -> list[Layer]:
    """Every balanced layer as `host` (a proxy) serves it."""
    from ..registry import registry

    vips = inventory.settings.proxy.addresses
    listen_on = vips or [host.private_address]
    result = []
    for balanced, servers in _layers(inventory):
        port = balanced.port_for(inventory.settings)
        if not vips and any(h.name == host.name for h in servers):
            continue  # this proxy is the layer's only node: clients reach it here directly
        client_hosts = [h for h in inventory.hosts if any(h.has(r) for r in balanced.clients)]
        client_hosts += registry().layer_clients(inventory, balanced.name)
        clients = [h.private_address for h in client_hosts]
        # A client on a proxy that holds the address reaches it from that very address.
        if any(h.has("proxy") for h in client_hosts):
            clients += vips
        result.append(
            Layer(
                name=_ident(balanced.name),
                # An HTTP check on a port of its own (Patroni's REST API) fronts TCP traffic.
                mode="http" if balanced.health and balanced.check_port is None else "tcp",
                health=balanced.health,
                binds=tuple(hostport(a, port) for a in listen_on),
                clients=tuple(dict.fromkeys(clients)),
                servers=tuple(
                    Server(
                        _ident(h.name),
                        hostport(h.private_address, balanced.server_port_for(h.settings)),
                        balanced.check_port_for(h.settings),
                    )
                    for h in servers
                ),
                long_sessions=balanced.sessions == "long",
            )
        )
    return result


def render(ctx: Context) -> str:
    monitoring = [h.private_address for h in ctx.inventory.with_role("monitoring")]
    return ctx.render(
        "haproxy/haproxy.cfg.j2",
        layers=layers(ctx.inventory, ctx.host),
        stats_bind=[
            hostport(ctx.host.private_address, ctx.settings.haproxy.stats_port),
            hostport("127.0.0.1", ctx.settings.haproxy.stats_port),
        ],
        monitoring=["127.0.0.1", *dict.fromkeys(monitoring)],
        health=HEALTH,
        long_session_inter=f"{LONG_SESSION_INTER:g}s",
        check_timeout=f"{CHECK_TIMEOUT:g}s",
    )


def _seconds(duration: str) -> float:
    """HAProxy's "2s" / "500ms" (check_interval's pattern) in seconds."""
    return int(duration[:-2]) / 1000 if duration.endswith("ms") else float(duration[:-1])


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name)


# --- verify -------------------------------------------------------------------------------


def server_states(metrics: str) -> dict[tuple[str, str], bool]:
    """(backend, server) -> up, from HAProxy's Prometheus page (haproxy_server_status has
    one sample per state; the one set to 1 is the server's)."""
    states: dict[tuple[str, str], bool] = {}
    pattern = re.compile(r"^haproxy_server_status\{([^}]*)\} (\S+)$")
    for line in metrics.splitlines():
        m = pattern.match(line)
        if not m or float(m.group(2)) != 1:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        states[(labels.get("proxy", ""), labels.get("server", ""))] = labels.get("state") == "UP"
    return states


def expected_up(inventory: Inventory, host: Host) -> dict[str, str]:
    """Each layer `host` serves -> how many of its servers verify expects up (Balanced.up)."""
    wanted = {_ident(b.name): b.up for b, _ in _layers(inventory)}
    return {layer.name: wanted.get(layer.name, "all") for layer in layers(inventory, host)}


def layer_problems(states: dict[tuple[str, str], bool], expected: dict[str, str]) -> str | None:
    """What is wrong with the servers' states against what each layer expects: every
    server up ("all"), exactly one ("one": a leader route), or at least one ("any")."""
    problems = []
    for layer, up in expected.items():
        servers = {server: ok for (backend, server), ok in states.items() if backend == layer}
        if not servers:
            problems.append(f"no servers reported for {layer}")
            continue
        healthy = sorted(s for s, ok in servers.items() if ok)
        if up == "one" and len(healthy) != 1:
            problems.append(
                f"{layer}: {len(healthy)} servers up ({', '.join(healthy) or 'none'}), expected exactly one"
            )
        elif up == "any" and not healthy:
            problems.append(f"{layer}: no server up")
        elif up == "all" and len(healthy) < len(servers):
            problems.append("down: " + ", ".join(f"{layer}/{s}" for s in sorted(servers) if not servers[s]))
    return "; ".join(problems) or None


def _servers_up(
    inventory: Inventory, host: Host, wait: float = RISE_WAIT, gone: frozenset[str] | set[str] = frozenset()
):
    """A verify check: each layer's servers up as it expects. A server that is down (a
    node this deploy just started, its first checks failed before it listened) is given
    up to `wait` seconds to pass its `rise` checks. The servers in `gone` are on hosts
    verify found down: HAProxy rightly marks them down, and the layer counts the others."""

    def check() -> str | None:
        from ..api import session
        from ..remote import Remote

        port = host.settings.haproxy.stats_port
        remote = Remote(host, session(inventory)[0])

        def once() -> str | None:
            result = remote.run(
                f"curl -fsS --max-time 5 {shlex.quote(f'http://127.0.0.1:{port}/metrics')}",
                timeout=15,
                what="reading HAProxy's metrics",
                log_output=False,
            )
            if not result.ok:
                return f"HAProxy's metrics on {host.name}: {result.stderr.strip() or result.rc}"
            states = {key: up for key, up in server_states(result.stdout).items() if key[1] not in gone}
            return layer_problems(states, expected_up(inventory, host))

        try:
            return settled(once, wait)
        except MMDeployError as e:
            return str(e)
        finally:
            remote.close()

    return check


COMPONENTS = [Haproxy()]
