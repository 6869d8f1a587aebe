"""The host firewall: nftables from Debian on every host, its rules derived from the
topology (registry.Registry.flows: every component's Port, Metrics and Balanced).

Inbound is default-drop: established and related traffic, loopback, the ICMP that keeps
a network working (and DHCP replies) pass, and then exactly the flows of the matrix, by
source address. Outbound stays open. The rules are one table of mmdeploy's own,
`table inet mmdeploy`, in one file (/etc/mmdeploy/firewall.nft) that a unit of its own
loads at boot: the site's /etc/nftables.conf and any other table are left alone.

The control machine (where mmdeploy runs) is a source of its own: it always reaches SSH,
and, while `firewall.verify_from_control` is true, the ports verify's checks ask directly
(declared with CONTROL). Its address is what each host sees in the SSH connection
(SSH_CONNECTION), plus `firewall.control` for other machines an operator deploys from.

Safe apply: the new ruleset is checked (nft -c), the one in place is saved, and a timer
(systemd-run --on-active) that restores it is armed before the new one is loaded. Then
the control machine opens a new TCP connection to the host's SSH port, and only when the
SSH server answers does the same SSH session confirm (stop the timer). Without a
confirmation (the connection died, the new rules refuse SSH) the host returns to the
previous ruleset by itself, and the run says so. (The running session alone proves
nothing: conntrack keeps an established connection alive whatever the new rules say;
the next run's new connection is what a bad ruleset would refuse.)

It is applied first on every host (Component.first), right after `base`: the rules are in
place before any service listens, and a host added to the inventory is let in by the
others before its own services try to reach them.

`firewall.enabled: false` (a site whose network firewall does this) removes mmdeploy's
table and file where they exist and renders nothing; verify still reports the exposure.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import shlex
import socket
import time
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Literal, Mapping

from pydantic import Field

from ..component import ADMIN, ANYONE, CONTROL, Check, Component, Context, Info, Port, Warn, live
from ..errors import MMDeployError, StepFailed
from ..facts import Fact
from ..grammar import Network, is_ip
from ..inventory import Host, Inventory
from ..ops import Command, File, Packages, Service, unit
from ..remote import Remote
from ..settings import Section
from ..step import Change, run_checked

TABLE = "inet mmdeploy"
RULESET = "/etc/mmdeploy/firewall.nft"
UNIT = "mmdeploy-firewall"
STATE = "/var/lib/mmdeploy/firewall"
ROLLBACK_UNIT = "mmdeploy-firewall-rollback"
MARKER = "mmdeploy-ruleset"
# How long a probe of one port from the control machine waits (verify; the SSH probe of
# the safe apply waits longer: an SSH server may take a moment to send its banner).
PROBE_TIMEOUT = 1.5
SCAN_WORKERS = 600  # connections in flight at once when verify scans the hosts
SSH_PROBE_TIMEOUT = 8.0

# The address the control machine connects from and the SSH port it reaches, as the host
# sees them (a port forward may differ from ssh.port): SSH_CONNECTION in the environment
# of the session's processes (sudo clears it from its own children, so it is looked up
# along the process's ancestors).
CONTROL_FACT = (
    'p=$$; while [ -n "$p" ] && [ "$p" -gt 1 ]; do '
    "v=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p' | head -n 1); "
    'if [ -n "$v" ]; then set -- $v; echo "$1 $4"; exit 0; fi; '
    "p=$(awk '/^PPid:/ {print $2}' /proc/$p/status 2>/dev/null); done; exit 1"
)


class FirewallSettings(Section):
    """The host firewall (components/firewall.py): nftables, default-drop inbound, the
    flows the topology needs. On by default: a site whose network firewall already does
    this sets `enabled: false` (verify still reports what is exposed)."""

    enabled: bool = True
    # Networks that reach SSH and the monitoring UIs (Prometheus, Alertmanager, Grafana):
    # the operators' machines, a VPN, a bastion. Addresses or CIDR networks.
    admin_cidrs: list[Network] = []
    # Networks that scrape every exporter besides the monitoring hosts: a central Prometheus
    # outside the deployment.
    monitoring_cidrs: list[Network] = []
    # Machines mmdeploy runs from besides the one running now (always allowed SSH: its
    # address is read from the SSH connection on each host).
    control: list[Network] = []
    # The control machine also reaches the ports verify's checks ask directly (Mattermost's
    # own port, Prometheus, Grafana, the S3 and push proxy nodes). False leaves it SSH and
    # the public ports only; those checks then fail from it.
    verify_from_control: bool = True
    # Seconds after which a host restores its previous ruleset unless the run confirmed.
    # (At least the SSH probe's wait and a round trip: 15.)
    rollback_seconds: int = Field(default=30, ge=15, le=600)
    # New outbound connections: "open" (any), or "restricted" to what the site needs (the
    # flow matrix towards the other hosts and the floating addresses, DNS, the APT proxy,
    # NTP servers and the SMTP relay given as addresses) and `outbound_allow`.
    outbound: Literal["open", "restricted"] = "open"
    # With outbound restricted: more destinations, any port (package mirrors, the push
    # services, an ACME CA, a webhook, an S3 backup repository outside the site).
    outbound_allow: list[Network] = []


class Firewall(Component):
    name = "firewall"
    roles = ("*",)
    settings = {"firewall": FirewallSettings}
    # SSH: the control machine and the administrators' networks.
    ports = (Port("ssh", lambda h: h.ssh.port, (CONTROL, ADMIN), why="the control machine and firewall.admin_cidrs"),)
    after = ("base",)
    first = True  # in place before any service listens, with the flows of any new host

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        if not any(h.settings.firewall.enabled for h in inventory.hosts):
            return []
        problems = []
        for i, h in enumerate(inventory.hosts):
            if not is_ip(h.private_address):
                key = "private_address" if h.private_address != h.address else "address"
                problems.append(
                    (
                        f"hosts.{i}.{key}",
                        f"expected an IP address with firewall.enabled (the rules "
                        f"allow hosts by address), got {h.private_address!r}",
                    )
                )
        return problems

    def warnings(self, inventory: Inventory, today: Any) -> list[str]:
        everyone = {"0.0.0.0/0", "::/0"}
        if any(set(h.settings.firewall.admin_cidrs) & everyone for h in inventory.hosts):
            return [
                "firewall.admin_cidrs holds a network of every address: SSH, Prometheus, Alertmanager and "
                "Grafana are open to anyone"
            ]
        return []

    def steps(self, ctx: Context):
        if not ctx.settings.firewall.enabled:
            return [remove()]
        return [
            Packages("nftables"),
            # Rendered once the host's facts say where the control machine connects from.
            Ruleset(lambda control, ssh_port: ruleset(ctx, control, ssh_port), ctx.host),
            unit(f"{UNIT}.service", ctx.render("firewall/mmdeploy-firewall.service.j2", ruleset=RULESET)),
            Service(UNIT),
        ]

    def checks(self, inventory: Inventory) -> list[Check]:
        exposure = Exposure(inventory, live(inventory.hosts))  # every host scanned at once, on first use
        return [
            Check(
                f"network exposure of {h.name} from the control machine",
                exposure_check(inventory, h, exposure=exposure),
                h.name,
            )
            for h in inventory.hosts
        ]


# --- the rules -------------------------------------------------------------------------


def control_addresses(fact: Fact, host: Host) -> list[str]:
    """The control machine's address as this host sees it (CONTROL_FACT), and
    firewall.control."""
    seen = fact.out.strip() if fact.ok else ""
    try:
        address = ipaddress.ip_address(seen.split(" ")[0].split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        found = [str(mapped or address)]
    except ValueError:
        found = []
    configured = list(host.settings.firewall.control)
    if not found and not configured:
        raise StepFailed(
            f"{host.name}: cannot tell the control machine's address as this host sees it "
            f"(no SSH_CONNECTION in the session, got {seen!r}): set firewall.control"
        )
    return list(dict.fromkeys(found + configured))


def seen_ssh_port(fact: Fact) -> int | None:
    """The port the host's SSH server was reached on (CONTROL_FACT's second field)."""
    fields = fact.out.split() if fact.ok else []
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def setting_list(settings: Any, path: str) -> list[str]:
    """The list a "settings.<section>.<key>" source names (empty: no source)."""
    value = settings
    for part in path.split(".")[1:]:
        value = getattr(value, part)
    return list(value or [])


def allowed_sources(flow: Any, host: Host, control: list[str]) -> list[str] | None:
    """The networks that may reach `flow` on `host` (None: anyone)."""
    if ANYONE in flow.reach:
        return None
    fw = host.settings.firewall
    found: list[str] = []
    for source in flow.reach:
        if source == CONTROL and (is_ssh(flow) or fw.verify_from_control):
            found += control
        elif source == ADMIN:
            found += fw.admin_cidrs
        elif source.startswith("settings."):
            found += setting_list(host.settings, source)
    if flow.kind == "metrics":
        found += fw.monitoring_cidrs
    found += [h.private_address for h in flow.sources]
    return list(dict.fromkeys(found))


def is_ssh(flow: Any) -> bool:
    return flow.component == "firewall" and flow.name == "ssh"


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value, strict=False)


def _label(flow: Any) -> str:
    return flow.name if flow.component in flow.name else f"{flow.name} ({flow.component})"


def rules(inventory: Inventory, host: Host, control: list[str], ssh_port: int | None = None) -> list[dict]:
    """The host's accept rules, one per protocol and port (the flows that share one are
    merged): [{"proto", "port", "comment", "v4", "v6", "anyone"}], by port. `ssh_port`:
    the SSH port the control machine reaches as the host sees it, when a port forward
    makes it differ from ssh.port (allowed to the control machine as well)."""
    from ..registry import registry

    grouped: dict[tuple[str, int], dict] = {}
    for flow in registry().flows(inventory):
        if flow.host.name != host.name:
            continue
        entry = grouped.setdefault(
            (flow.proto, flow.port),
            {"proto": flow.proto, "port": flow.port, "names": [], "sources": set(), "anyone": False, "admin": False},
        )
        entry["admin"] |= ADMIN in flow.reach
        if _label(flow) not in entry["names"]:
            entry["names"].append(_label(flow))
        sources = allowed_sources(flow, host, control)
        if sources is None:
            entry["anyone"] = True
        else:
            entry["sources"] |= {str(_network(s)) for s in sources}
    if ssh_port is not None and ssh_port != host.ssh.port:
        entry = grouped.setdefault(
            ("tcp", ssh_port),
            {"proto": "tcp", "port": ssh_port, "names": [], "sources": set(), "anyone": False, "admin": False},
        )
        entry["names"].append("ssh (as the control machine reaches it)")
        entry["sources"] |= {str(_network(s)) for s in control}
    return [
        {**_rule(proto, port, entry["names"], entry["sources"]), "anyone": entry["anyone"], "admin": entry["admin"]}
        for (proto, port), entry in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def _rule(proto: str, port: int, names: list[str], networks: set[str]) -> dict:
    """One accept rule of the template: what it matches, why, and the networks by family."""
    nets = sorted((_network(n) for n in networks), key=lambda n: (n.version, n))
    return {
        "proto": proto,
        "port": port,
        "what": "vrrp (IP protocol 112)" if proto == "vrrp" else f"{proto} {port}",
        "match": (
            {"v4": "ip protocol 112", "v6": "ip6 nexthdr 112", "any": "meta l4proto 112"}
            if proto == "vrrp"
            else dict.fromkeys(("v4", "v6", "any"), f"{proto} dport {port}")
        ),
        "comment": ", ".join(names)[:120],
        "v4": [_short(n) for n in nets if n.version == 4],
        "v6": [_short(n) for n in nets if n.version == 6],
    }


def outbound_rules(inventory: Inventory, host: Host) -> list[dict]:
    """With firewall.outbound restricted, the host's outbound accept rules, one per
    protocol and port: every flow of the matrix this host is a source of (to that host's
    private address, and to the floating addresses for a balancer's), DNS, what the settings
    name by address (APT proxy, NTP servers, SMTP relay), then firewall.outbound_allow on
    any port; [{"what", "comment", "v4", "v6", "match"}] as rules() gives them."""
    from ..registry import registry

    s = host.settings
    proxy_settings = getattr(s, "proxy", None)
    vips = proxy_settings.addresses if proxy_settings is not None else []
    grouped: dict[tuple[str, int], dict] = {}

    def allow(proto: str, port: int, name: str, destinations: list[str]) -> None:
        entry = grouped.setdefault((proto, port), {"names": [], "to": set()})
        if name not in entry["names"]:
            entry["names"].append(name)
        entry["to"] |= {str(_network(d)) for d in destinations}

    for flow in registry().flows(inventory):
        if flow.host.name == host.name or host.name not in {h.name for h in flow.sources}:
            continue
        # The internal balancers listen on the floating addresses too.
        allow(
            flow.proto, flow.port, _label(flow), [flow.host.private_address, *(vips if flow.kind == "balancer" else [])]
        )
    for proto in ("udp", "tcp"):
        allow(proto, 53, "dns", ["0.0.0.0/0", "::/0"])
    proxy = urllib.parse.urlsplit(s.apt_proxy) if s.apt_proxy else None
    if proxy is not None and proxy.hostname and is_ip(proxy.hostname):
        allow("tcp", proxy.port or (443 if proxy.scheme == "https" else 80), "apt proxy", [proxy.hostname])
    time_servers = [a for a in getattr(getattr(s, "time", None), "servers", []) if is_ip(a)]
    if time_servers:
        allow("udp", 123, "ntp", time_servers)
    smtp = getattr(s, "smtp", None)
    if smtp is not None and smtp.host and is_ip(smtp.host) and (host.has("app") or host.has("jobserver")):
        allow("tcp", smtp.port, "smtp relay", [smtp.host])
    out = [
        _rule(proto, port, entry["names"], entry["to"])
        for (proto, port), entry in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    if s.firewall.outbound_allow:
        anywhere = _rule("any", 0, ["firewall.outbound_allow"], set(s.firewall.outbound_allow))
        out.append({**anywhere, "what": "any port", "match": {"v4": "", "v6": ""}})
    return out


def _short(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def ruleset(ctx: Context, control: list[str], ssh_port: int | None = None) -> str:
    """The nftables file for this host, with a marker naming its own hash (so that a
    deploy sees whether the live table is the one in the file)."""
    items = rules(ctx.inventory, ctx.host, control, ssh_port)
    restricted = ctx.settings.firewall.outbound == "restricted"
    out = outbound_rules(ctx.inventory, ctx.host) if restricted else None
    values = {"rules": items, "outbound": out, "table": TABLE, "marker": MARKER}
    body = ctx.render("firewall/ruleset.nft.j2", digest="", **values)
    return ctx.render("firewall/ruleset.nft.j2", digest=hashlib.sha256(body.encode()).hexdigest()[:16], **values)


def digest_of(text: str) -> str:
    for line in text.splitlines():
        if MARKER in line:
            return line.split(MARKER, 1)[1].strip().strip('";').split()[0]
    return ""


# --- safe apply ------------------------------------------------------------------------


LIVE_FACT = f"nft list table {TABLE} 2>/dev/null | grep -o '{MARKER} [0-9a-f]*' | head -n 1"


class Ruleset(File):
    """The ruleset file, loaded with an automatic rollback unless confirmed (see the
    module's docstring). Changed when the file differs (plan shows the rule diff) or when
    the live table is not the file's (flushed by hand, or a boot without the unit)."""

    def __init__(self, render: Callable[[list[str], int | None], str], host: Host):
        super().__init__(RULESET, "", mode="0600")
        self.render, self.host = render, host
        self.rollback_seconds = host.settings.firewall.rollback_seconds
        self.digest = ""
        self.name = f"firewall ruleset {RULESET}"
        self.timeout = 120

    def facts(self) -> list[str]:
        return [*super().facts(), LIVE_FACT, CONTROL_FACT]

    def prepare(self, control: list[str], ssh_port: int | None = None) -> None:
        """Render the file for the control machine's addresses (and the SSH port it reaches)."""
        text = self.render(control, ssh_port)
        self.origin = getattr(text, "origin", "")
        self.content = text.encode()
        self.digest = digest_of(text)

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        seen = facts[CONTROL_FACT]
        self.prepare(control_addresses(seen, self.host), seen_ssh_port(seen))
        change = super().check(facts)
        live = facts[LIVE_FACT].out.strip().removeprefix(MARKER).strip()
        how = f"load it (rolled back in {self.rollback_seconds} s unless confirmed)"
        if change is not None:
            return Change(f"{change.summary}, {how}", change.diff)
        if live != self.digest:
            return Change(f"{how}: the live table is {'another' if live else 'not loaded'}")
        return None

    def apply(self, remote: Remote, change: Change) -> None:
        encoded = base64.b64encode(self.content).decode()
        arm = arm_script(encoded, self.rollback_seconds)
        try:
            result = remote.run(
                arm,
                timeout=self.timeout,
                what="firewall: arm the rollback, load the ruleset",
                log_as=arm.replace(encoded, f"({len(self.content)} bytes)"),
            )
        except MMDeployError as e:
            raise StepFailed(
                f"firewall: {e}; if the rollback was armed before the connection was lost, the host "
                f"restores its previous ruleset within {self.rollback_seconds} s"
            ) from None
        if result.rc == 3:  # nft -c refused it: nothing was changed
            raise StepFailed(f"firewall: {result.stderr.strip()[-500:]} (nothing changed)")
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip())[-500:]
            raise StepFailed(
                f"firewall: loading the ruleset failed (exit {result.rc}: {detail}); the host "
                f"restores its previous ruleset within {self.rollback_seconds} s (timer {ROLLBACK_UNIT})"
            )
        problem = ssh_answers(self.host.address, self.host.ssh.port)
        if problem is not None:
            try:
                run_checked(remote, ROLLBACK_NOW, "firewall: rollback", timeout=60)
            except MMDeployError:
                raise StepFailed(
                    f"firewall NOT confirmed: {problem}; the host restores its previous ruleset by "
                    f"itself within {self.rollback_seconds} s (timer {ROLLBACK_UNIT})"
                ) from None
            raise StepFailed(
                f"firewall ROLLED BACK: {problem}, so the new ruleset would lock the control "
                f"machine out; the previous ruleset is in place again"
            )
        try:
            result = remote.run(CONFIRM, timeout=30, what="firewall: confirm")
        except MMDeployError as e:
            raise StepFailed(
                f"firewall NOT confirmed ({e}): the host restores its previous ruleset by itself "
                f"within {self.rollback_seconds} s (timer {ROLLBACK_UNIT})"
            ) from None
        if "rolled-back" in result.stdout:
            raise StepFailed(
                "firewall ROLLED BACK: the confirmation came after the rollback timer fired; the "
                "previous ruleset is in place again (raise firewall.rollback_seconds)"
            )
        if not result.ok:
            raise StepFailed(
                f"firewall: the confirmation failed (exit {result.rc}: {result.stderr.strip()[-300:]}); "
                f"the host restores its previous ruleset within {self.rollback_seconds} s"
            )


def arm_script(encoded: str, seconds: int) -> str:
    rollback = (
        "#!/bin/sh\n# Managed by mmdeploy (components/firewall.py): back to the ruleset before the last "
        "unconfirmed change.\n"
        f"if [ -f {STATE}/previous.nft ]; then nft -f {STATE}/previous.nft && install -m 0600 "
        f"{STATE}/previous.nft {RULESET}\n"
        f"else nft delete table {TABLE} 2>/dev/null; rm -f {RULESET}; fi\n"
        f"date -u +%FT%TZ > {STATE}/rolled-back\n"
    )
    return f"""set -e
install -d -m 0700 {STATE} /etc/mmdeploy
new={STATE}/new.nft
base64 -d > "$new" <<'MMDEPLOY_EOF'
{encoded}
MMDEPLOY_EOF
if ! out=$(nft -c -f "$new" 2>&1); then echo "the new ruleset does not load: $out" >&2; exit 3; fi
# The state to come back to: the file in place, if the live table is the one it holds.
rm -f {STATE}/previous.nft {STATE}/rolled-back
if [ -f {RULESET} ] && nft list table {TABLE} >/dev/null 2>&1; then cp {RULESET} {STATE}/previous.nft; fi
printf '%s' {shlex.quote(rollback)} > {STATE}/rollback.sh
systemctl stop {ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
systemctl reset-failed {ROLLBACK_UNIT}.timer {ROLLBACK_UNIT}.service >/dev/null 2>&1 || true
systemd-run --quiet --unit={ROLLBACK_UNIT} --on-active={seconds} --timer-property=AccuracySec=1s \\
  /bin/sh {STATE}/rollback.sh
install -m 0600 "$new" {RULESET}
nft -f {RULESET}
echo armed
"""


# Stop the timer; say whether it fired already.
CONFIRM = f"""systemctl stop {ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
if [ -e {STATE}/rolled-back ]; then echo rolled-back; exit 0; fi
rm -f {STATE}/previous.nft {STATE}/new.nft
echo confirmed
"""

ROLLBACK_NOW = f"""set -e
systemctl stop {ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
/bin/sh {STATE}/rollback.sh
"""


def ssh_answers(address: str, port: int, timeout: float = SSH_PROBE_TIMEOUT) -> str | None:
    """None when a new TCP connection to the SSH port gets an SSH server's banner;
    otherwise what happened."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            banner = s.recv(64)
    except OSError as e:
        return f"a new SSH connection to {address}:{port} from the control machine failed ({e or type(e).__name__})"
    if not banner.startswith(b"SSH-"):
        return f"{address}:{port} did not answer as an SSH server ({banner[:20]!r})"
    return None


def remove() -> Command:
    """With the firewall off: mmdeploy's table, file and unit gone where they exist."""
    script = (
        f"systemctl disable --now {UNIT} >/dev/null 2>&1 || true\n"
        f"nft delete table {TABLE} 2>/dev/null || true\n"
        f"rm -f {RULESET} /etc/systemd/system/{UNIT}.service\nsystemctl daemon-reload\n"
    )
    unless = (
        f"test ! -e {RULESET} && test ! -e /etc/systemd/system/{UNIT}.service && "
        f"! nft list table {TABLE} >/dev/null 2>&1"
    )
    return Command("firewall off: remove mmdeploy's ruleset", script, unless=unless)


# --- verify: what answers from the control machine -------------------------------------


def probe(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> str:
    """ "open" (a connection), "refused" (nothing listens, but nothing filters either) or
    "filtered" (no answer within the timeout)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "filtered"


def source_address(address: str, port: int) -> str | None:
    """The control machine's own address on the route to `address` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((address, port))
            return s.getsockname()[0]
    except OSError:
        return None


def _allows(sources: list[str] | None, address: str | None) -> bool:
    if sources is None:
        return True
    if not address:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in map(_network, sources) if net.version == ip.version)


def expected_from_control(inventory: Inventory, host: Host, source: str | None) -> dict[int, list[str]]:
    """The TCP ports of `host` the matrix lets the control machine (at `source`) reach,
    with the flows that allow each."""
    from ..registry import registry

    control = [source] if source else []
    control += list(host.settings.firewall.control)
    wanted: dict[int, list[str]] = {}
    for flow in registry().flows(inventory):
        if (
            flow.host.name == host.name
            and flow.proto == "tcp"
            and _allows(allowed_sources(flow, host, control), source)
        ):
            wanted.setdefault(flow.port, []).append(_label(flow))
    return wanted


def reachable(
    inventory: Inventory, address: str, control: list[str] | tuple[str, ...] = ()
) -> dict[tuple[str, str, int], list[str]]:
    """What the matrix lets `address` reach: (host, proto, port) -> the flows allowing it
    (port 0 for VRRP). `control`: the control machine's addresses as the hosts see them.
    A port scan from that address should find exactly these TCP ports open (the e2e's
    measure); a host does not filter itself (loopback), so its own ports are left out."""
    from ..registry import registry

    found: dict[tuple[str, str, int], list[str]] = {}
    for flow in registry().flows(inventory):
        if flow.host.private_address == address or flow.host.address == address:
            continue
        if _allows(allowed_sources(flow, flow.host, list(control)), address):
            found.setdefault((flow.host.name, flow.proto, flow.port), []).append(_label(flow))
    return found


def scanned_ports(inventory: Inventory) -> list[int]:
    """Every TCP port of the matrix on any host: a service found where it does not belong
    answers on one of them."""
    from ..registry import registry

    return sorted({f.port for f in registry().flows(inventory) if f.proto == "tcp"})


class Exposure:
    """What answers from the control machine on every port of the matrix, on each of
    `hosts`: scanned once, every host at once (short timeouts, in parallel, bounded by
    `deadline`). A dropped port costs a probe's timeout: hosts scanned in turn would add
    one per host."""

    def __init__(self, inventory: Inventory, hosts: list[Host], deadline: float = 30.0):
        self.inventory, self.hosts, self.deadline = inventory, hosts, deadline
        self._seen: dict[str, dict[int, str]] | None = None
        self._lock = threading.Lock()

    def of(self, host: Host) -> dict[int, str]:
        """Port -> "open", "refused", "filtered" or "unmeasured" (the deadline passed)."""
        with self._lock:
            if self._seen is None:
                self._seen = self._scan()
        return self._seen[host.name]

    def _scan(self) -> dict[str, dict[int, str]]:
        targets = [(h, p) for h in self.hosts for p in scanned_ports(self.inventory)]
        seen: dict[str, dict[int, str]] = {h.name: {} for h in self.hosts}
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(SCAN_WORKERS, len(targets)))) as pool:
            futures = {(h.name, p): pool.submit(probe, h.address, p) for h, p in targets}
            for (name, p), future in futures.items():
                left = max(0.1, self.deadline - (time.monotonic() - started))
                try:
                    seen[name][p] = future.result(timeout=left)
                except Exception:  # the deadline passed: not measured
                    seen[name][p] = "unmeasured"
        return seen


def exposure_check(inventory: Inventory, host: Host, deadline: float = 30.0, exposure: Exposure | None = None):
    """A verify check: compare what answers on `host` from the control machine (every port
    of the matrix, scanned by `exposure`: one shared by the checks of every host) with what
    the matrix allows the control machine. With the firewall on a difference fails the
    check; with it off, what is exposed beyond the matrix is a warning."""

    def check() -> str | None:
        ports = scanned_ports(inventory)
        source = source_address(host.address, host.ssh.port)
        wanted = expected_from_control(inventory, host, source)
        seen = (exposure or Exposure(inventory, [host], deadline)).of(host)
        exposed = [p for p, state in seen.items() if state == "open" and p not in wanted]
        unfiltered = [p for p, state in seen.items() if state == "refused" and p not in wanted]
        blocked = [p for p, state in seen.items() if state == "filtered" and p in wanted]
        unmeasured = [p for p, state in seen.items() if state == "unmeasured"]
        opened = sorted(p for p, state in seen.items() if state == "open")
        summary = f"answers on {', '.join(map(str, opened)) or 'no port'} of {len(ports)} probed"
        if not host.settings.firewall.enabled:
            if exposed:
                return Warn(f"firewall off: open beyond the flow matrix: {_ports(exposed)} ({summary})")
            return Info(f"firewall off; nothing beyond the flow matrix answers ({summary})")
        problems = []
        if exposed:
            problems.append(f"open beyond the flow matrix: {_ports(exposed)}")
        if unfiltered:
            problems.append(f"not filtered (refused instead of dropped): {_ports(unfiltered)}")
        if blocked:
            problems.append(
                "dropped although the matrix allows the control machine: "
                + ", ".join(f"{p} ({', '.join(wanted[p])})" for p in sorted(blocked))
            )
        if unmeasured:
            problems.append(f"not measured within {deadline:.0f} s: {_ports(unmeasured)}")
        return "; ".join(problems) + f" ({summary})" if problems else Info(summary)

    return check


def _ports(ports: list[int]) -> str:
    return ", ".join(map(str, sorted(ports)))


COMPONENTS = [Firewall()]
