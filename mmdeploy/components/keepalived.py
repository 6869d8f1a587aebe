"""keepalived: the floating addresses (VIPs) of the proxy hosts, from Debian's package.

`proxy.vip` names one address (multi: one VIP moves between the proxies) or several
(cluster: active-active, each proxy the preferred holder of one, every other proxy its
backup, so that when a proxy dies the others hold all of them). Without a VIP keepalived
is not installed.

How it behaves, and why:
- VRRP goes only to the other proxies' private addresses (unicast_peer), never multicast,
  and adverts from any other source are dropped (check_unicast_src). VRRPv3, so adverts
  can be sub-second: a dead holder is noticed after 3 adverts (1.5 s at the default 0.5 s).
  No VRRP authentication: VRRPv3 has none, and v2's is an 8-character password sent in
  clear text (RFC 3768 removed it); the unicast peers and the source check are what
  keeps strangers out.
- Every node starts as BACKUP (keepalived's nopreempt requires it); the priority decides
  the first holder: keepalived-start starts every proxy's keepalived at the same moment,
  and the default priorities are far apart so that the preferred node claims first. With nopreempt (the default) a recovered node
  does not take the address back: one move per failure, not two; after a failure the
  survivor keeps every address it took over.
- A track script asks NGINX over HTTPS on this host for its own health page (answered by
  NGINX itself, so a dead app tier does not empty the proxies), and HAProxy's monitor page
  when HAProxy runs here. A failing check puts the node in FAULT, which gives its
  addresses away: with nopreempt a lower priority (track weight) would move nothing.
- Every state change runs a notify script that writes the node exporter's textfile
  (keepalived_vrrp_state, keepalived_vrrp_transitions_total), so Prometheus sees which
  proxy holds which address and how often it moved.

`verify` reads the addresses of every proxy (exactly one holds each VIP) and fetches
Mattermost's ping through each VIP over HTTPS.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass

from pydantic import Field

from ..component import PEERS, Check, Component, Context, Port, live
from ..errors import MMDeployError, StepFailed
from ..inventory import Host, Inventory
from ..ops import Command, Directory, File, Group, Packages, Service, User
from ..settings import Section

CONF = "/etc/keepalived/keepalived.conf"
CHECK_NGINX = "/etc/keepalived/mmdeploy-check-nginx"
CHECK_HAPROXY = "/etc/keepalived/mmdeploy-check-haproxy"
NOTIFY = "/etc/keepalived/mmdeploy-notify"
STATE_DIR = "/var/lib/mmdeploy/keepalived"
# Debian's prometheus-node-exporter reads *.prom files here (its --collector.textfile.directory).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# Answered by NGINX itself on every proxy (templates/nginx/nginx.conf.j2).
NGINX_HEALTH = "/mmdeploy-proxy-health"
# HAProxy's monitor-uri on its stats listener (components/haproxy.py).
HAPROXY_HEALTH = "/healthz"
SCRIPT_USER = "keepalived_script"  # keepalived's default user for scripts
RELOAD = ("reload",)
# keepalived 2.2.7's `-t` ends itself with SIGTERM (exit 143) whenever scripts are
# configured (fixed in 2.2.8), so its exit code cannot be trusted: a valid file prints
# nothing, and anything printed is a problem.
VALIDATE = (
    'sh -c \'out=$(keepalived -t -f "$1" 2>&1); rc=$?; printf "%s" "$out" >&2; '
    '[ -z "$out" ] && [ $rc -eq 0 -o $rc -eq 143 ]\' keepalived-config-test {}'
)


class ProxySettings(Section):
    """The proxies' floating addresses (components/keepalived.py)."""

    # An address with its prefix in the proxies' private network ("10.0.0.100/24"), or a
    # list of them: each is held by one proxy at a time; several are active-active.
    vip: str | list[str] | None = None
    # VRRP router id of the first address; the next ones use the following ids.
    virtual_router_id: int = Field(default=51, ge=1, le=255)
    # Per host (vars): a higher priority is preferred. Default: the proxies' inventory
    # order (250 down to 50). The first address goes to the highest, the second to the next.
    priority: int | None = Field(default=None, ge=1, le=254)
    # A recovered proxy does not take its address back.
    nopreempt: bool = True
    # Per host (vars): the interface the addresses go on. Default: the one holding the
    # host's private address.
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")
    # Seconds between VRRP adverts; a holder is declared dead after three missed.
    advert_int: float = Field(default=0.5, ge=0.1, le=40)

    @property
    def vips(self) -> list[str]:
        if self.vip is None:
            return []
        return [self.vip] if isinstance(self.vip, str) else list(self.vip)

    @property
    def addresses(self) -> list[str]:
        """The floating addresses without their prefix."""
        return [v.split("/")[0] for v in self.vips]


@dataclass(frozen=True)
class Instance:
    """One VRRP instance (one floating address) as one proxy sees it."""

    name: str
    router_id: int
    vip: str  # address/prefix
    priority: int
    peers: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.vip.split("/")[0]


class Keepalived(Component):
    name = "keepalived"
    roles = ("proxy",)
    settings = {"proxy": ProxySettings}
    # VRRP adverts between the proxies holding floating addresses.
    ports = (Port("vrrp", 0, (PEERS,), proto="vrrp"),)
    # NGINX and HAProxy answer before the track scripts ask: every proxy starts with its
    # checks passing, at about the same moment, so the priorities decide the first holders.
    after = ("base", "node-exporter", "nginx", "haproxy")

    def enabled(self, host: Host) -> bool:
        return bool(host.settings.proxy.vips)

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        return vip_problems(inventory)

    def build_facts(self, host):
        return [] if host.settings.proxy.interface else [_interface_probe(host.private_address)]

    def steps(self, ctx: Context):
        s = ctx.settings
        interface = s.proxy.interface or _interface_of(ctx)
        haproxy = _haproxy_runs(ctx.inventory)
        conf = ctx.render(
            "keepalived/keepalived.conf.j2",
            interface=interface,
            instances=instances(ctx.inventory, ctx.host),
            haproxy=haproxy,
            check_nginx=CHECK_NGINX,
            check_haproxy=CHECK_HAPROXY,
            notify=NOTIFY,
            script_user=SCRIPT_USER,
        )
        steps = [
            Packages("keepalived", "curl"),
            Group(SCRIPT_USER),
            User(SCRIPT_USER),
            Directory(STATE_DIR),
            Directory(TEXTFILE_DIR),
            File(CHECK_NGINX, ctx.render("keepalived/check-nginx.sh.j2", path=NGINX_HEALTH), mode="0755"),
        ]
        if haproxy:
            steps.append(
                File(CHECK_HAPROXY, ctx.render("keepalived/check-haproxy.sh.j2", path=HAPROXY_HEALTH), mode="0755")
            )
        else:
            steps.append(
                Command(f"remove {CHECK_HAPROXY}", f"rm -f {CHECK_HAPROXY}", unless=f"test ! -e {CHECK_HAPROXY}")
            )
        steps += [
            File(
                NOTIFY,
                ctx.render("keepalived/notify.sh.j2", state_dir=STATE_DIR, textfile_dir=TEXTFILE_DIR),
                mode="0755",
            ),
            File(CONF, conf, validate=VALIDATE, notify=RELOAD),
            # Started at boot; the first start is keepalived-start's, on every proxy at once.
            Command("enable keepalived", "systemctl enable keepalived", unless="systemctl is-enabled keepalived"),
        ]
        return steps

    def handlers(self, ctx: Context):
        # SIGHUP: keepalived re-reads its configuration and keeps the addresses it holds.
        # Only a running keepalived: a stopped one is started by keepalived-start.
        return {"reload": Command("reload keepalived", "systemctl try-reload-or-restart keepalived")}

    def checks(self, inventory: Inventory):
        proxies = self.hosts(inventory)
        if not proxies:
            return []
        checks = []
        for vip in inventory.settings.proxy.vips:
            address = vip.split("/")[0]
            checks.append(Check(f"exactly one proxy holds {address}", _one_holder(inventory, live(proxies), address)))
            checks.append(Check(f"Mattermost answers through {address} over HTTPS", _answers(inventory, address)))
        return checks


# --- the instances ------------------------------------------------------------------------


def default_priority(rank: int, count: int) -> int:
    """250 for the first proxy down to 50 for the last, evenly spaced. Far apart on
    purpose: when every node starts at once, the higher priority waits less before
    claiming an address (VRRP's skew time), and with nopreempt the first claim stays."""
    return 250 - round(200 * rank / max(1, count - 1))


def priorities(inventory: Inventory) -> dict[str, int]:
    """Each proxy's priority: its `proxy.priority` host var, else from inventory order."""
    proxies = inventory.with_role("proxy")
    return {h.name: h.settings.proxy.priority or default_priority(i, len(proxies)) for i, h in enumerate(proxies)}


def instances(inventory: Inventory, host: Host) -> list[Instance]:
    """The VRRP instances as `host` takes part in them. The proxies ranked by priority hold
    the addresses in turn: the first address prefers the first, the second address the
    second (and so on, wrapping around), each backed up by the others in rank order; a
    host's priority in an instance is the priority of its place in that order."""
    prio = priorities(inventory)
    proxies = inventory.with_role("proxy")
    ranked = sorted(proxies, key=lambda h: (-prio[h.name], proxies.index(h)))
    values = sorted(prio.values(), reverse=True)
    s = inventory.settings.proxy
    result = []
    for i, vip in enumerate(s.vips):
        order = ranked[i % len(ranked) :] + ranked[: i % len(ranked)]
        place = [h.name for h in order].index(host.name)
        result.append(
            Instance(
                name=f"mm_vip{i + 1}",
                router_id=s.virtual_router_id + i,
                vip=vip,
                priority=values[place],
                peers=tuple(h.private_address for h in proxies if h.name != host.name),
            )
        )
    return result


def _interface_probe(address: str) -> str:
    return f'ip -o addr show | awk \'{{split($4, a, "/"); if (a[1] == "{address}") print $2}}\''


def _interface_of(ctx: Context) -> str:
    address = ctx.host.private_address
    probe = _interface_probe(address)
    found = ctx.facts.get([probe])[probe].out.split()
    if not found:
        raise StepFailed(
            f"no interface on {ctx.host.name} holds its private address {address}: "
            "set proxy.interface for it in its vars"
        )
    return found[0]


def _haproxy_runs(inventory: Inventory) -> bool:
    from ..registry import registry

    return bool(registry().balanced_layers(inventory))


# --- validation ---------------------------------------------------------------------------


def vip_problems(inventory: Inventory) -> list[tuple[str, str]]:
    """The floating addresses against the hosts: well-formed IPv4 address/prefix, inside the
    one network every proxy's private address is in, no host's address, enough proxies, a
    router id for each. (key path, problem) as inventory.load reports them."""
    s = inventory.settings.proxy
    vips = s.vips
    problems: list[tuple[str, str]] = []
    hosts = list(inventory.hosts)
    for i, h in enumerate(hosts):  # the addresses are the site's, never one host's
        if h.has("proxy") and h.settings.proxy.vips != vips:
            problems.append(
                (
                    f"hosts.{i}.vars.proxy.vip",
                    "proxy.vip is one for the whole site: set it under settings:, not in a host's vars",
                )
            )
    if not vips:
        return problems
    key = "settings.proxy.vip"

    def where(j: int) -> str:
        return f"{key}.{j}" if isinstance(s.vip, list) else key

    parsed: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface | None] = []  # only IPv4 gets in
    iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None
    for j, vip in enumerate(vips):
        parsed.append(None)
        try:
            iface = ipaddress.ip_interface(vip)
        except ValueError:
            problems.append((where(j), f"expected an IPv4 address with its prefix, e.g. 10.0.0.100/24, got {vip!r}"))
            continue
        if "/" not in vip or iface.version != 4:
            problems.append((where(j), f"expected an IPv4 address with its prefix, e.g. 10.0.0.100/24, got {vip!r}"))
            continue
        net = iface.network
        if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
            problems.append(
                (
                    where(j),
                    f"{iface.ip} is the {'network' if iface.ip == net.network_address else 'broadcast'} "
                    f"address of {net}, not a host address",
                )
            )
            continue
        if str(iface.ip) in [str(p.ip) for p in parsed if p is not None]:
            problems.append((where(j), f"{iface.ip} is listed twice"))
            continue
        parsed[j] = iface

    proxies = [(i, h) for i, h in enumerate(hosts) if h.has("proxy")]
    needed = max(2, len(vips))
    if len(proxies) < needed:
        problems.append(
            (
                "hosts",
                f"proxy.vip: {len(vips)} floating address(es) need at least {needed} hosts "
                f"with role 'proxy' (one to hold each, and one to take over), found {len(proxies)}",
            )
        )
    last = s.virtual_router_id + len(vips) - 1
    if last > 255:
        problems.append(
            (
                "settings.proxy.virtual_router_id",
                f"{len(vips)} addresses use router ids {s.virtual_router_id}..{last}; "
                f"expected at most 255 (use at most {256 - len(vips)})",
            )
        )

    for j, iface in enumerate(parsed):
        if iface is None:
            continue
        for i, h in enumerate(hosts):
            for field_name in ("address", "private_address"):
                if getattr(h, field_name) == str(iface.ip):
                    problems.append(
                        (
                            where(j),
                            f"{iface.ip} is the {field_name.replace('_', ' ')} of host {h.name}; "
                            "a floating address must belong to no host",
                        )
                    )
                    break
        for i, h in proxies:
            try:
                private = ipaddress.ip_address(h.private_address)
            except ValueError:
                continue  # reported once below
            if private not in iface.network:
                problems.append(
                    (
                        f"hosts.{i}.private_address",
                        f"{h.name}'s private address {private} is outside {iface.network}, the network of "
                        f"proxy.vip {iface}: the proxies and their floating addresses share one network",
                    )
                )
    for i, h in proxies:
        try:
            ipaddress.ip_address(h.private_address)
        except ValueError:
            problems.append(
                (
                    f"hosts.{i}.private_address",
                    f"expected an IP address for a proxy with proxy.vip (its VRRP peers' source), "
                    f"got {h.private_address!r}",
                )
            )
    seen: dict[int, str] = {}
    for i, h in proxies:
        p = h.settings.proxy.priority
        if p is None:
            continue
        if p in seen:
            problems.append(
                (
                    f"hosts.{i}.vars.proxy.priority",
                    f"priority {p} is also {seen[p]}'s; the priorities order the proxies and must differ",
                )
            )
        seen.setdefault(p, h.name)
    # The defaults fill the gaps: a default that equals an explicit priority is a tie too.
    prio = priorities(inventory)
    for i, h in proxies:
        if h.settings.proxy.priority is None:
            clash = [o.name for _, o in proxies if o.name != h.name and prio[o.name] == prio[h.name]]
            if clash:
                problems.append(
                    (
                        f"hosts.{i}",
                        f"{h.name}'s default priority {prio[h.name]} equals {clash[0]}'s: "
                        f"give {h.name} a proxy.priority of its own in its vars",
                    )
                )
    return problems


# --- verify -------------------------------------------------------------------------------


def holders(inventory: Inventory, proxies: list[Host], address: str) -> tuple[list[str], list[str]]:
    """(proxies holding `address`, problems reaching the others), read with `ip -o addr`."""
    from ..api import session
    from ..remote import Remote

    redact = session(inventory)[0]
    found, problems = [], []
    for h in proxies:
        remote = Remote(h, redact)
        try:
            result = remote.run("ip -o -4 addr show", timeout=10, what="reading addresses")
        except MMDeployError as e:
            problems.append(f"{h.name}: {e}")
            continue
        finally:
            remote.close()
        if any(
            line.split()[3].split("/")[0] == address for line in result.stdout.splitlines() if len(line.split()) > 3
        ):
            found.append(h.name)
    return found, problems


def _one_holder(inventory: Inventory, proxies: list[Host], address: str, wait: float = 10.0):
    def check() -> str | None:
        # Right after a deploy (or a failover) the proxies may still be electing a holder.
        deadline = time.monotonic() + wait
        while True:
            found, problems = holders(inventory, proxies, address)
            if len(found) == 1 or time.monotonic() > deadline:
                break
            time.sleep(1)
        if len(found) == 1:
            return None
        detail = f" ({'; '.join(problems)})" if problems else ""
        if not found:
            return f"no proxy holds {address}{detail}"
        return f"{len(found)} proxies hold {address}: {', '.join(found)}{detail}"

    return check


def _answers(inventory: Inventory, address: str):
    def check() -> str | None:
        domain = inventory.settings.domain
        context = ssl.create_default_context()
        if inventory.settings.tls.mode == "self-signed":  # nothing to verify it against
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(address, 443, timeout=10, context=context)
        try:
            conn.request("GET", "/api/v4/system/ping", headers={"Host": domain})
            response = conn.getresponse()
            body = response.read(65536).decode(errors="replace")
        except (OSError, ssl.SSLError) as e:
            return f"https://{address}/api/v4/system/ping: {e}"
        finally:
            conn.close()
        if response.status != 200:
            return f"https://{address}/api/v4/system/ping answered {response.status}"
        try:
            status = json.loads(body).get("status")
        except (ValueError, AttributeError):
            status = None
        return None if status == "OK" else f"https://{address}/api/v4/system/ping: status {status!r}, expected 'OK'"

    return check


class KeepalivedStart(Component):
    """Starts keepalived where it is not running, as a component of its own so that the
    runner's barrier makes every proxy start it at about the same moment: a proxy whose
    package install happened to finish first would otherwise claim every address before
    the others run, and with nopreempt keep them. Started together, the priorities
    decide (the active-active split of several addresses)."""

    name = "keepalived-start"
    roles = ("proxy",)
    after = ("keepalived",)

    def enabled(self, host: Host) -> bool:
        return bool(host.settings.proxy.vips)

    def steps(self, ctx: Context):
        return [Service("keepalived")]


COMPONENTS = [Keepalived(), KeepalivedStart()]
