"""Port scans of a bed site, compared with the flow matrix its topology declares
(mmdeploy.components.firewall.reachable): from this machine (the control machine), from
inside a bed container (a host of some role, or a container that is no host of the site).
Shared by test_firewall, test_multi and test_cluster_pattern."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from mmdeploy import testbed
from mmdeploy.components import firewall
from mmdeploy.inventory import Inventory

from .conftest import on

# Ports scanned besides the matrix's: what a service put where it does not belong would
# most likely use (scan_from_here also probes all of 1-1024).
EXTRA = (21, 23, 25, 53, 111, 139, 445, 2049, 3000, 3306, 5000, 6379, 8000, 8080, 8443, 9000, 11211, 27017)

Found = dict[str, set[tuple[str, int]]]  # open | refused | filtered -> {(host, port)}


def control_address() -> str:
    """This machine as the bed's hosts see it: the bed network's gateway."""
    return testbed.GATEWAY


def expected(inventory: Inventory, source: str) -> set[tuple[str, int]]:
    return {
        (h, port) for (h, proto, port) in firewall.reachable(inventory, source, [control_address()]) if proto == "tcp"
    }


def targets(inventory: Inventory, ports, skip: str = "") -> list[tuple[str, str, int]]:
    return [(h.name, h.private_address, p) for h in inventory.hosts if h.name != skip for p in sorted(set(ports))]


def scan_from_here(inventory: Inventory) -> Found:
    """(host, port) by what answered: open, refused (nothing listens, nothing filters), filtered."""
    ports = [*range(1, 1025), *firewall.scanned_ports(inventory), *EXTRA]
    todo = targets(inventory, ports)
    with ThreadPoolExecutor(max_workers=256) as pool:
        states = list(pool.map(lambda t: firewall.probe(t[1], t[2], timeout=1.5), todo))
    found: Found = {"open": set(), "refused": set(), "filtered": set()}
    for (name, _, port), state in zip(todo, states):
        found[state].add((name, port))
    return found


# The same probe as firewall.probe, run inside a bed container (its python3): one target
# per line of input ("name address port"), one line out per target.
SCAN = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(t):
    name, address, port = t.split()
    try:
        socket.create_connection((address, int(port)), timeout=1.5).close()
        return name, port, "open"
    except ConnectionRefusedError:
        return name, port, "refused"
    except OSError:
        return name, port, "filtered"
with ThreadPoolExecutor(max_workers=256) as pool:
    for r in pool.map(probe, sys.stdin.read().splitlines()):
        print(*r)
"""


def scan_from_container(container: str, todo: list[tuple[str, str, int]]) -> Found:
    lines = "".join(f"{name} {address} {port}\n" for name, address, port in todo)
    out = subprocess.run(
        ["docker", "exec", "-i", container, "python3", "-c", SCAN],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    found: Found = {"open": set(), "refused": set(), "filtered": set()}
    for line in out.splitlines():
        name, port, state = line.split()
        found[state].add((name, int(port)))
    assert sum(map(len, found.values())) == len(todo), out
    return found


def assert_exactly(found: Found, wanted: set[tuple[str, int]], who: str) -> None:
    more = sorted(found["open"] - wanted)
    missing = sorted(wanted - found["open"])
    holes = sorted(found["refused"])  # answered with a reset: not filtered
    assert not (more or missing or holes), (
        f"from {who}: open beyond the matrix {more}; allowed but not answering {missing}; "
        f"refused instead of dropped {holes}"
    )


def one_per_tier(inventory: Inventory) -> list[str]:
    """A host of each distinct set of roles: the sources whose view of the site differs."""
    seen: dict[tuple[str, ...], str] = {}
    for h in inventory.hosts:
        seen.setdefault(tuple(sorted(h.roles)), h.name)
    return list(seen.values())


def floating_addresses(inventory: Inventory) -> list[str]:
    return [v.split("/")[0] for v in (getattr(inventory.settings.proxy, "vips", None) or [])]


def fold_floating(found: Found, inventory: Inventory, wanted: set[tuple[str, int]]) -> Found:
    """The proxies' internal balancers listen on the floating addresses, not on a proxy's
    own: a port the proxy's own address refuses (the firewall let it through, nothing
    listens there) that answers on a floating address is open on the proxies. A port open
    on a floating address that no proxy's flows allow is open beyond the matrix."""
    proxies = [h.name for h in inventory.with_role("proxy")]
    on_floating = {port for name, port in found["open"] if name.startswith("vip:")}
    out: Found = {k: {(n, p) for n, p in v if not n.startswith("vip:")} for k, v in found.items()}
    for port in sorted(on_floating):
        allowed = [name for name in proxies if (name, port) in wanted]
        if not allowed:
            out["open"].add(("a floating address", port))
        for name in allowed:
            if (name, port) in out["refused"]:
                out["refused"].discard((name, port))
                out["open"].add((name, port))
    return out


def assert_each_tier_reaches_exactly_its_flows(inventory: Inventory) -> list[str]:
    """Scan the site's matrix ports from a host of each tier (and the floating addresses);
    the tiers scanned."""
    ports = [*firewall.scanned_ports(inventory), *EXTRA]
    sources = one_per_tier(inventory)
    for source in sources:
        host = inventory.host(source)
        todo = targets(inventory, ports, skip=source)
        if not host.has("proxy"):  # a proxy may hold the address itself: not filtered there
            todo += [(f"vip:{a}", a, p) for a in floating_addresses(inventory) for p in sorted(set(ports))]
        wanted = expected(inventory, host.private_address)
        found = scan_from_container(testbed.container_name(source), todo)
        assert_exactly(fold_floating(found, inventory, wanted), wanted, source)
    return sources


# Listeners on every interface by design: SSH, and the site itself on the proxies.
EVERY_INTERFACE = {22, 80, 443}
# What issue #16 binds to the private address: Mattermost (API, metrics), Prometheus and the
# exporters (node, nginx, postgres, mysqld, elasticsearch).
PRIVATE_ONLY = {8065, 8067, 9090, 9100, 9113, 9187, 9104, 9114}


def wildcard_listeners(host: str, ports: set[int] | None = None) -> list[str]:
    """The TCP listeners of a bed host on every interface (0.0.0.0, ::, *), other than
    EVERY_INTERFACE; with `ports`, only those ports."""
    found = []
    for line in on(host, "ss -Hltn").splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        if address in ("0.0.0.0", "*", "[::]", "[::ffff:0.0.0.0]") and int(port) not in EVERY_INTERFACE:
            if ports is None or int(port) in ports:
                found.append(local)
    return found


def assert_bound_to_private_addresses(inventory: Inventory, ports: set[int] | None = None) -> None:
    """No host listens on every interface beyond EVERY_INTERFACE (with `ports`: on those)."""
    wild = {h.name: w for h in inventory.hosts if (w := wildcard_listeners(h.name, ports))}
    assert not wild, f"listening on every interface instead of the private address: {wild}"
