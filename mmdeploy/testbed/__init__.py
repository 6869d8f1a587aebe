"""The local test bed, a product feature (`inv up` is the main job): Debian containers
with systemd as PID 1 and sshd, on a Docker network of their own, reached over SSH
exactly as real hosts are (DESIGN.md, "The local test bed").

Split by concern: config (which bed: MMDEPLOY_BED), engine (the Docker engine), image
(debootstrap + docker import, the Debian mirror), network (the network, the apt cache, an
HTTP server for artifacts), containers (layouts and hosts), inventory (the file it writes).
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import BED, GATEWAY, NETWORK, SUBNET, Log, TestbedError, container_name
from .containers import (
    MAX_HOSTS,
    CpuMeter,
    grown,
    host_keys,
    known_hosts_path,
    PATTERNS,
    BedHost,
    LayoutConflict,
    down,
    key_path,
    layout,
    replace_host,
    start,
    status,
)
from .engine import ensure_engine, raise_kernel_limits
from .image import IMAGE, SUITE, SUITES, ensure_image, image_for, mirrors
from .inventory import path_for
from .inventory import write as write_inventory
from .network import ensure_apt_cache, ensure_network, serve


def up(
    root: Path,
    pattern: str | None = None,
    hosts: int | None = None,
    log: Log = print,
    owner: str = "testbed",
    settings: dict | None = None,
    replace: bool = False,
    distro: str = SUITE,
    sudo_user: str | None = None,
) -> Path:
    """Start the bed for a layout and write its inventory (with `settings` merged into its
    bed settings); returns the inventory path. `distro` is the Debian suite of the hosts
    (bookworm, trixie); another suite is another layout (its name gets `-<suite>`).
    `sudo_user`: the inventory reaches the hosts as this user with passwordless sudo
    instead of root.

    Containers of this bed that another owner created, or of another layout, are never
    reused: with `replace` they are removed first, else LayoutConflict names them."""
    bed = layout(pattern, hosts)
    image = image_for(distro)  # an unknown suite is refused before anything starts
    suffix = "" if distro == SUITE else f"-{distro}"
    name = (pattern or f"{hosts}-hosts") + suffix
    existing = status()
    foreign = [s for s in existing if s["owner"] != owner or s["layout"] != name]
    if foreign:
        if not replace:
            who = ", ".join(sorted({f"{s['owner'] or 'unknown'}/{s['layout'] or '?'}" for s in foreign}))
            raise LayoutConflict(
                f"bed {NETWORK} holds containers of another owner or layout ({who}); run `inv testbed.down` first"
            )
        log(f"replacing the test bed {NETWORK} (it held containers of another owner or layout)")
        down(log)
    ensure_engine()
    ensure_image(log=log, suite=distro)
    ensure_network()  # before the apt cache check, which needs the gateway address
    apt_proxy = ensure_apt_cache(log)
    known_hosts = start(bed, root, log, owner, name, image, sudo_user)
    kind = pattern if pattern in ("multi", "cluster") else "single"
    return write_inventory(
        path_for(root, name if pattern else f"{hosts}{suffix}"),
        bed,
        kind,
        key_path(root),
        apt_proxy,
        settings,
        known_hosts=known_hosts,
        user=sudo_user or "root",
    )


__all__ = [
    "BED",
    "GATEWAY",
    "IMAGE",
    "MAX_HOSTS",
    "NETWORK",
    "PATTERNS",
    "SUBNET",
    "SUITE",
    "SUITES",
    "BedHost",
    "CpuMeter",
    "LayoutConflict",
    "TestbedError",
    "container_name",
    "down",
    "ensure_apt_cache",
    "ensure_engine",
    "ensure_image",
    "host_keys",
    "image_for",
    "known_hosts_path",
    "ensure_network",
    "key_path",
    "layout",
    "mirrors",
    "path_for",
    "raise_kernel_limits",
    "replace_host",
    "serve",
    "status",
    "grow",
    "grown",
    "up",
    "write_inventory",
]


def grow(root: Path, path: Path, pattern: str, log: Log = print, owner: str = "testbed") -> Path:
    """Grow the running bed whose inventory is `path` (a smaller layout, e.g. multi) into
    `pattern` (e.g. cluster), as an operator grows a site: the hosts keep their names and
    addresses, the hosts of `pattern` the bed lacks start after the last one, and the
    inventory is rewritten in place (same file, so the same secrets) with `pattern`, the
    new hosts and the pattern's floating addresses. Nothing is deployed; returns `path`."""
    import yaml

    from .inventory import HEADER, host_entries, vip_setting

    document = yaml.safe_load(path.read_text())
    have = [BedHost(h["name"], h["address"], list(h["roles"])) for h in document["hosts"]]
    hosts = grown(have, pattern)
    added = hosts[len(have) :]
    layout_name = next((s["layout"] for s in status()), pattern)
    log(f"growing the test bed to {pattern}: adding {', '.join(h.name for h in added) or 'no host'}")
    known = start(hosts, root, log, owner, layout_name, image_for(SUITE))
    document["pattern"] = pattern
    vip = vip_setting(pattern, hosts)
    if vip:
        document["settings"].setdefault("proxy", {})["vip"] = vip
    document["ssh"]["known_hosts"] = os.path.relpath(known, path.parent)
    document["hosts"] = host_entries(hosts)
    path.write_text(HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=None))
    return path
