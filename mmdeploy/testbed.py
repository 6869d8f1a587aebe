"""Local test bed: Debian 12 containers with systemd and sshd on a dedicated Docker network.

The deploy tool reaches these containers over SSH exactly as it reaches real hosts
(see DESIGN.md, "The local test bed"). Everything here drives the `docker` CLI.
"""
from __future__ import annotations

import functools
import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

# MMDEPLOY_BED=N (1..40) runs a separate bed beside the default one (N=0): its own
# network 10.213.(7+N).0/24, container names and inventory file, so that independent test
# runs cannot disturb each other.
BED = int(os.environ.get("MMDEPLOY_BED", "0"))
if not 0 <= BED <= 40:
    raise ValueError(f"MMDEPLOY_BED: expected 0..40, got {BED}")
NETWORK = "mmdeploy-bed" if BED == 0 else f"mmdeploy-bed{BED}"
SUBNET = f"10.213.{7 + BED}.0/24"
GATEWAY = f"10.213.{7 + BED}.1"
IMAGE = "mmdeploy-bed:bookworm"
LABEL = "mmdeploy.testbed"  # its value is the bed's network name
ROLES_LABEL = f"{LABEL}.roles"

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Names the containers need for apt; see _add_host_flags.
MIRROR_HOSTS = ("deb.debian.org", "security.debian.org")
ACNG_PORT = 3142
ACNG_LOCAL = f"http://127.0.0.1:{ACNG_PORT}"
ACNG_DROPIN = Path("/etc/apt-cacher-ng/zz-mmdeploy.conf")
PROBE_URL = f"{MIRROR}/dists/bookworm/Release"
DOCKERD_LOG = Path("/var/log/mmdeploy-dockerd.log")

PACKAGES = ("openssh-server,python3,sudo,iproute2,procps,ca-certificates,systemd,systemd-sysv,"
            "dbus,curl,gnupg,less")
# From DESIGN.md: enough for systemd as PID 1; --privileged fails on these machines.
RUN_FLAGS = (
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
)
SSH_WAIT = 60.0

Log = Callable[[str], None]

ALL_ROLES = ["proxy", "app", "jobserver", "monitoring", "db"]
PATTERNS: dict[str, list[tuple[str, list[str]]]] = {
    "single": [
        ("proxy1", ["proxy"]), ("app1", ["app"]), ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]), ("db2", ["db"]),
    ],
    "multi": [
        ("proxy1", ["proxy"]), ("proxy2", ["proxy"]), ("app1", ["app"]), ("app2", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]), ("db2", ["db"]), ("db3", ["db"]),
        ("search1", ["search"]), ("search2", ["search"]),
        ("storage1", ["storage"]), ("storage2", ["storage"]),
        ("push1", ["pushproxy"]), ("push2", ["pushproxy"]),
    ],
    "cluster": [
        ("proxy1", ["proxy"]), ("proxy2", ["proxy"]),
        ("app1", ["app"]), ("app2", ["app"]), ("app3", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]), ("db2", ["db"]), ("db3", ["db"]),
        ("search1", ["search"]), ("search2", ["search"]), ("search3", ["search"]),
        ("storage1", ["storage"]), ("storage2", ["storage"]),
        ("storage3", ["storage"]), ("storage4", ["storage"]),
        ("push1", ["pushproxy"]), ("push2", ["pushproxy"]),
    ],
    "allinone": [("aio1", ALL_ROLES)],
}
MAX_HOSTS = 40


class TestbedError(Exception):
    """A test-bed step failed; the message says what failed and how to fix it."""

    __test__ = False  # not a pytest test class despite the name


@dataclass
class BedHost:
    name: str
    address: str
    roles: list[str]


def container_name(host: str) -> str:
    return f"{NETWORK}-{host}"


def key_path(root: Path) -> Path:
    return root / ".testbed" / "id_ed25519"


def layout(pattern: str | None = None, hosts: int | None = None) -> list[BedHost]:
    """Fixed names and addresses (.11, .12, ...) for a pattern or for N generic hosts."""
    if (pattern is None) == (hosts is None):
        raise TestbedError("give exactly one of pattern (single, multi, cluster, allinone) "
                           "or hosts=N")
    if pattern is not None:
        if pattern not in PATTERNS:
            raise TestbedError(f"unknown test-bed pattern {pattern!r}; "
                               f"use one of {', '.join(PATTERNS)} or hosts=N")
        spec = PATTERNS[pattern]
    else:
        if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
            raise TestbedError(f"hosts must be a whole number from 1 to {MAX_HOSTS}, got {hosts!r}")
        spec = [("host1", ALL_ROLES)] + [(f"host{i}", ["app"]) for i in range(2, hosts + 1)]
    prefix = GATEWAY.rsplit(".", 1)[0]
    return [BedHost(name, f"{prefix}.{11 + i}", list(roles))
            for i, (name, roles) in enumerate(spec)]


def _docker(*args: str, check: bool = True,
            input: str | IO[bytes] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one docker CLI command; a str input is fed as text, a stream is passed as stdin."""
    stream = None if input is None or isinstance(input, str) else input
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True,
                              input=input if isinstance(input, str) else None, stdin=stream)
    except FileNotFoundError:
        raise TestbedError("the docker CLI is not installed; run `inv testbed.up` as root on "
                           "Debian/Ubuntu to install docker.io, or install Docker yourself")
    if check and proc.returncode != 0:
        raise TestbedError(f"`docker {' '.join(args[:3])}` failed: {proc.stderr.strip()}")
    return proc


def _is_root_debian() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists()


def _apt_install(package: str, log: Log) -> None:
    """apt-get install on the control machine, refreshing the package lists only if needed."""
    if not _is_root_debian():
        raise TestbedError(f"{package} is missing; install it (apt-get install {package}) "
                           "or run as root on Debian/Ubuntu so it can be installed for you")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", package]
    log(f"installing {package}")
    if subprocess.run(cmd, env=env, capture_output=True).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, capture_output=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TestbedError(f"apt-get install {package} failed: {proc.stderr.strip()[-500:]}")


def _engine_answers() -> bool:
    try:
        return _docker("info", check=False).returncode == 0
    except TestbedError:
        return False


def ensure_engine() -> None:
    """Make `docker info` answer, installing docker.io and starting dockerd if needed."""
    _raise_inotify_limit()
    if _engine_answers():
        return
    if not _is_root_debian():
        raise TestbedError("the Docker engine does not answer `docker info`; install Docker "
                           "(Debian: apt-get install docker.io) and start it "
                           "(systemctl start docker, or `dockerd &`), or run as root")
    if not shutil.which("dockerd"):
        _apt_install("docker.io", print)
    # Detached in its own session so the engine outlives this process (hosts may lack systemd).
    with DOCKERD_LOG.open("ab") as out:
        subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(1)
    raise TestbedError(f"dockerd was started but `docker info` did not answer within 60 s; "
                       f"see {DOCKERD_LOG}")


def _raise_inotify_limit(wanted: int = 1024) -> None:
    """systemd in each container takes inotify instances from the host's shared budget;
    past ~25 containers the default of 128 leaves new ones without sshd."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        if int(knob.read_text()) < wanted and os.geteuid() == 0:
            knob.write_text(str(wanted))
    except OSError:
        pass  # not Linux, or not allowed: the bed still works for smaller layouts


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _prepare_rootfs(root: Path) -> None:
    """Turn a debootstrapped tree into a systemd + sshd container image."""
    bundle = "etc/ssl/certs/ca-certificates.crt"
    shutil.copyfile(f"/{bundle}", root / bundle)
    _write(root / "etc/apt/sources.list",
           f"deb {MIRROR} bookworm main\n"
           f"deb {MIRROR} bookworm-updates main\n"
           f"deb {SECURITY_MIRROR} bookworm-security main\n")
    _write(root / "etc/apt/apt.conf.d/99mmdeploy-testbed",
           "// Mirrors may serve snapshot archives whose Release files are past Valid-Until.\n"
           'Acquire::Check-Valid-Until "false";\n'
           'APT::Install-Recommends "false";\n')
    # Empty so every container gets its own machine id at boot; dbus's copy is a plain file
    # after debootstrap and systemd would take it, giving every container the same id.
    _write(root / "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    _write(root / "etc/ssh/sshd_config.d/mmdeploy-testbed.conf",
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    wants = root / "etc/systemd/system/multi-user.target.wants/ssh.service"
    if not wants.is_symlink():  # the link's absolute target only resolves inside the tree
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/lib/systemd/system/ssh.service")
    # Downloaded packages and package lists only bloat the image; apt recreates them.
    shutil.rmtree(root / "var/cache/apt")
    shutil.rmtree(root / "var/lib/apt/lists")
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


def _unmount_below(path: Path) -> None:
    # A failed debootstrap can leave /proc or /sys mounted inside the tree; never rmtree those.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


def ensure_image(rebuild: bool = False, log: Log = print) -> None:
    """Build IMAGE with debootstrap + docker import unless it is already cached."""
    previous = _docker("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False)
    if not rebuild and previous.returncode == 0:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"building {IMAGE} needs debootstrap as root; "
                           "run `inv testbed.up` as root")
    if not shutil.which("debootstrap"):
        _apt_install("debootstrap", log)
    env = dict(os.environ)
    if ensure_apt_cache(log):
        env["http_proxy"] = ACNG_LOCAL
    rootfs = Path(tempfile.mkdtemp(prefix="mmdeploy-bed-", dir="/var/tmp"))
    try:
        log(f"debootstrap bookworm into {rootfs} (a few minutes)")
        started = time.monotonic()
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                               "bookworm", str(rootfs), MIRROR],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise TestbedError("debootstrap failed (check the mirror and apt proxy):\n"
                               + "\n".join(tail))
        log(f"debootstrap done in {time.monotonic() - started:.0f} s; preparing image")
        _prepare_rootfs(rootfs)
        log(f"importing {IMAGE}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        assert tar.stdout is not None
        # container=docker tells systemd it runs in a container.
        result = _docker("import", "-c", 'CMD ["/sbin/init"]', "-c", "ENV container=docker",
                         "-", IMAGE, check=False, input=tar.stdout)
        tar.stdout.close()
        if tar.wait() != 0 or result.returncode != 0:
            raise TestbedError(f"importing {IMAGE} failed: {result.stderr.strip()}")
        if previous.returncode == 0:  # else a rebuild leaves the old image dangling
            _docker("image", "rm", previous.stdout.strip(), check=False)
        log(f"image {IMAGE} ready")
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_cache() -> str | None:
    """Fetch the mirror's Release file through apt-cacher-ng; return None or why it failed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": ACNG_LOCAL}))
    try:
        with opener.open(PROBE_URL, timeout=10) as response:
            response.read(64)
        return None
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _acng(action: str) -> None:
    subprocess.run(["/etc/init.d/apt-cacher-ng", action], capture_output=True)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", ACNG_PORT) and time.monotonic() < deadline:
        time.sleep(0.2)


def _resolves(name: str) -> str | None:
    try:
        return socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return None


def ensure_apt_cache(log: Log = print) -> str | None:
    """Run apt-cacher-ng on the control machine; return the proxy URL for the bed, or None."""
    try:
        if not shutil.which("apt-cacher-ng"):
            _apt_install("apt-cacher-ng", log)
    except TestbedError as exc:
        log(f"apt cache not used: {exc}")
        return None
    if not _port_open("127.0.0.1", ACNG_PORT):
        _acng("start")
    failure = _probe_cache()
    dropin = ("# Written by mmdeploy.testbed: use the mirror the control machine uses.\n"
              f"Remap-debrep: file:deb_mirror*.gz /debian ; {MIRROR}/\n")
    stale = not ACNG_DROPIN.exists() or ACNG_DROPIN.read_text() != dropin
    if failure and stale and _resolves(MIRROR.split("/")[2]):
        # Debian's acng maps deb.debian.org/debian onto its default backend (ftp.debian.org)
        # when backends_debian is empty; that name may not resolve where the mirror the control
        # machine uses does. Point the Debian backend at that mirror instead.
        log(f"apt-cacher-ng cannot fetch from its Debian backend ({failure}); "
            f"pointing it at {MIRROR}")
        ACNG_DROPIN.write_text(dropin)
        _acng("restart")
        failure = _probe_cache()
    if failure:
        log(f"apt cache not used: fetching {PROBE_URL} through apt-cacher-ng failed ({failure}); "
            "the test bed fetches packages directly")
        return None
    # The bed reaches acng on the bridge gateway; only checkable once the network exists.
    if (_docker("network", "inspect", NETWORK, check=False).returncode == 0
            and not _port_open(GATEWAY, ACNG_PORT)):
        log(f"apt cache not used: apt-cacher-ng does not listen on {GATEWAY}:{ACNG_PORT} "
            "(check BindAddress in /etc/apt-cacher-ng/acng.conf)")
        return None
    return f"http://{GATEWAY}:{ACNG_PORT}"


def _ensure_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode != 0:
        _docker("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY,
                "--label", f"{LABEL}={NETWORK}", NETWORK)


def _ensure_key(root: Path) -> str:
    key = key_path(root)
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.parent.chmod(0o700)
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mmdeploy-testbed",
                        "-f", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    return key.with_suffix(".pub").read_text()


def _add_host_flags() -> list[str]:
    # The mirror may be known only to the control machine's /etc/hosts, so hand the
    # containers the addresses the control machine resolves.
    flags = []
    for name in MIRROR_HOSTS:
        address = _resolves(name)
        if address:
            flags += ["--add-host", f"{name}:{address}"]
    return flags


def _ssh_answers(key: Path, address: str) -> bool:
    cmd = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3",
           f"root@{address}", "true"]
    return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL).returncode == 0


class LayoutConflict(TestbedError):
    """Containers of another layout hold this layout's names or addresses."""


def _check_conflicts(hosts: list[BedHost]) -> None:
    """Refuse a layout whose names or addresses clash with containers already there."""
    by_name = {s["name"]: s["address"] for s in status()}
    by_address = {address: name for name, address in by_name.items()}
    for host in hosts:
        if by_name.get(host.name, host.address) != host.address:
            raise LayoutConflict(f"{container_name(host.name)} exists with address "
                               f"{by_name[host.name]}, this layout wants {host.address}; "
                               "run `inv testbed.down` first")
        if by_address.get(host.address, host.name) != host.name:
            raise LayoutConflict(f"{host.address} is taken by "
                               f"{container_name(by_address[host.address])}, this layout wants "
                               f"{host.name} there; run `inv testbed.down` first")


def _start_host(host: BedHost, pubkey: str, key: Path, add_hosts: list[str], log: Log) -> None:
    name = container_name(host.name)
    state = _docker("inspect", "-f", "{{.State.Status}}", name, check=False)
    started = time.monotonic()
    if state.returncode != 0:
        _docker("run", "-d", "--name", name, "--hostname", host.name, "--network", NETWORK,
                "--ip", host.address, "--label", f"{LABEL}={NETWORK}",
                "--label", f"{ROLES_LABEL}={','.join(host.roles)}",
                # SIGRTMIN+3 makes `docker stop` a clean systemd shutdown (import cannot set it).
                "--stop-signal", "SIGRTMIN+3", *RUN_FLAGS, *add_hosts, IMAGE)
    elif state.stdout.strip() != "running":
        _docker("start", name)
    _docker("exec", "-i", name, "sh", "-c",
            "mkdir -p /root/.ssh && chmod 700 /root/.ssh && "
            "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
            input=pubkey)
    deadline = started + SSH_WAIT
    while not _ssh_answers(key, host.address):
        if time.monotonic() > deadline:
            raise TestbedError(f"{host.name} ({host.address}) did not answer SSH within "
                               f"{SSH_WAIT:.0f} s; see `docker logs {name}`")
        time.sleep(0.5)
    log(f"{host.name:<10} {host.address:<13} ready ({time.monotonic() - started:.1f} s)")


def _inventory(hosts: list[BedHost], pattern: str, key: str, apt_proxy: str | None) -> str:
    lines = [
        "# Generated by `inv testbed.up`; git-ignored. Rewritten on every run: do not edit.",
        f"pattern: {pattern}",
        "ssh:",
        "  user: root",
        "  port: 22",
        f"  key: {key}     # relative to this file's folder",
        "  strict_host_keys: false   # test-bed containers share the image's host keys",
        "settings:",
        "  domain: mm.testbed.local",
        "  monitoring:",
        "    grafana: false   # Grafana cannot be downloaded on the test bed",
    ]
    if apt_proxy:
        lines.append(f"  apt_proxy: {apt_proxy}")
    lines.append("hosts:")
    for h in hosts:
        lines += [f"  - name: {h.name}", f"    address: {h.address}",
                  f"    private_address: {h.address}", f"    roles: [{', '.join(h.roles)}]"]
    return "\n".join(lines) + "\n"


def up(root: Path, pattern: str | None = None, hosts: int | None = None,
       log: Log = print) -> Path:
    """Start the bed for a layout and write its inventory; returns the inventory path."""
    bed = layout(pattern, hosts)
    ensure_engine()
    ensure_image(log=log)
    _ensure_network()  # before the apt cache check, which needs the gateway address
    apt_proxy = ensure_apt_cache(log)
    pubkey = _ensure_key(root)
    _check_conflicts(bed)
    key = key_path(root)
    add_hosts = _add_host_flags()
    with ThreadPoolExecutor(max_workers=min(len(bed), 8)) as pool:
        # list() re-raises the first failure; leaving the block waits for the other hosts.
        list(pool.map(lambda h: _start_host(h, pubkey, key, add_hosts, log), bed))
    bed_name = "testbed" if BED == 0 else f"testbed{BED}"
    inventory = root / "hosts" / (f"{bed_name}-{pattern}.yml" if pattern else f"{bed_name}-{hosts}.yml")
    inventory.parent.mkdir(parents=True, exist_ok=True)
    inventory.write_text(_inventory(bed, pattern if pattern in ("multi", "cluster") else "single",
                                    os.path.relpath(key, inventory.parent), apt_proxy))
    return inventory


def serve(directory: Path) -> str:
    """Serve `directory` over HTTP on the bed's gateway address (this machine, as the
    containers see it) from a daemon thread of this process; returns the base URL. The
    test bed's stand-in release is downloaded from here exactly like a real mirror."""
    _ensure_network()
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((GATEWAY, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{GATEWAY}:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the deploy's own output says what was fetched
        pass


def down(log: Log = print) -> None:
    """Remove every test-bed container and the network; keeps the image."""
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}={NETWORK}").stdout.split()
    if ids:
        _docker("rm", "-f", *ids)
        log(f"removed {len(ids)} test-bed container(s)")
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        _docker("network", "rm", NETWORK)
        log(f"removed network {NETWORK}")


def status() -> list[dict]:
    """One entry per test-bed container: name, address, roles, state, ssh."""
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}={NETWORK}").stdout.split()
    if not ids:
        return []
    result = []
    for info in json.loads(_docker("inspect", *ids).stdout):
        # IPAMConfig keeps the requested address while the container is stopped.
        net = info["NetworkSettings"]["Networks"].get(NETWORK) or {}
        address = (net.get("IPAMConfig") or {}).get("IPv4Address") or net.get("IPAddress", "")
        state = info["State"]["Status"]
        roles = info["Config"]["Labels"].get(ROLES_LABEL, "")
        result.append({
            "name": info["Config"]["Hostname"],
            "address": address,
            "roles": roles.split(",") if roles else [],
            "state": state,
            "ssh": state == "running" and bool(address) and _port_open(address, 22),
        })
    return sorted(result, key=lambda s: ipaddress.ip_address(s["address"] or "0.0.0.0"))
