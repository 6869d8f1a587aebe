"""The bed's hosts: fixed layouts per pattern, containers with systemd as PID 1 and sshd
(started in parallel, reached over SSH with a generated key), their state, and their
removal."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .config import GATEWAY, LABEL, LAYOUT_LABEL, NETWORK, OWNER_LABEL, ROLES_LABEL, Log, TestbedError, container_name
from .engine import docker
from .image import IMAGE, mirror_hosts
from .network import resolves

# From DESIGN.md: enough for systemd as PID 1; --privileged fails on these machines.
RUN_FLAGS = (
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--cap-add",
    "NET_RAW",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    # /proc/sys is read-only in a container: set here what a deploy sets on real hosts
    # (keepalived: HAProxy binds floating addresses it does not hold). Per network
    # namespace, so it changes nothing outside the container.
    "--sysctl",
    "net.ipv4.ip_nonlocal_bind=1",
)
SSH_WAIT = 60.0

ALL_ROLES = ["proxy", "app", "jobserver", "monitoring", "db"]
PATTERNS: dict[str, list[tuple[str, list[str]]]] = {
    "single": [
        ("proxy1", ["proxy"]),
        ("app1", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]),
        ("db2", ["db"]),
    ],
    "multi": [
        ("proxy1", ["proxy"]),
        ("proxy2", ["proxy"]),
        ("app1", ["app"]),
        ("app2", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]),
        ("db2", ["db"]),
        ("db3", ["db"]),
        ("search1", ["search"]),
        ("search2", ["search"]),
        ("storage1", ["storage"]),
        ("storage2", ["storage"]),
        ("push1", ["pushproxy"]),
        ("push2", ["pushproxy"]),
    ],
    "cluster": [
        ("proxy1", ["proxy"]),
        ("proxy2", ["proxy"]),
        ("app1", ["app"]),
        ("app2", ["app"]),
        ("app3", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]),
        ("db2", ["db"]),
        ("db3", ["db"]),
        ("search1", ["search"]),
        ("search2", ["search"]),
        ("search3", ["search"]),
        ("storage1", ["storage"]),
        ("storage2", ["storage"]),
        ("storage3", ["storage"]),
        ("storage4", ["storage"]),
        ("push1", ["pushproxy"]),
        ("push2", ["pushproxy"]),
    ],
    "allinone": [("aio1", ALL_ROLES)],
    # The proxy tier on its own (tests/e2e/test_proxies.py): two proxies in front of two
    # small backends, one of them also the job, monitoring and DB host.
    "proxies": [
        ("proxy1", ["proxy"]),
        ("proxy2", ["proxy"]),
        ("app1", ["app", "jobserver", "monitoring", "db"]),
        ("app2", ["app"]),
    ],
    # The smallest Mattermost cluster: two app servers that also run the push proxies and
    # the S3 storage, and one host for the job server, monitoring, the database and the
    # storage tier's third master (inventory pattern single).
    "pair": [
        ("proxy1", ["proxy"]),
        ("app1", ["app", "pushproxy", "storage"]),
        ("app2", ["app", "pushproxy", "storage"]),
        ("job1", ["jobserver", "monitoring", "db"]),
    ],
    # Rolling upgrades (tests/e2e/test_upgrade.py): three app servers behind two proxies
    # sharing a floating address (inventory.floating_addresses), a job server, one database
    # node; the single pattern's rules.
    "apps3": [
        ("proxy1", ["proxy"]),
        ("proxy2", ["proxy"]),
        ("app1", ["app"]),
        ("app2", ["app"]),
        ("app3", ["app"]),
        ("job1", ["jobserver", "monitoring"]),
        ("db1", ["db"]),
    ],
}
MAX_HOSTS = 60


@dataclass
class BedHost:
    name: str
    address: str
    roles: list[str]


def key_path(root: Path) -> Path:
    return root / ".testbed" / "id_ed25519"


def known_hosts_path(root: Path) -> Path:
    """The bed's known_hosts: every container's own host keys, read from the container
    itself (docker exec: no trust on first use), rewritten by every `up`."""
    from .config import BED

    return root / ".testbed" / f"known_hosts-bed{BED}"


# A fresh container replaces the image's host keys (shared by every container made from
# it) with keys of its own, once: Ed25519 and ECDSA, which take milliseconds to make; an
# RSA key of 3072 bits took 0.5-1.6 CPU-s, for each of the suite's ~150 fresh containers.
OWN_HOST_KEYS = """\
if [ ! -e /etc/ssh/.mmdeploy-own-host-keys ]; then
  rm -f /etc/ssh/ssh_host_* /etc/ssh/sshd_config.d/mmdeploy-testbed-hostkeys.conf
  for type in ed25519 ecdsa; do
    ssh-keygen -q -t $type -N '' -f /etc/ssh/ssh_host_${type}_key
    echo "HostKey /etc/ssh/ssh_host_${type}_key" >> /etc/ssh/sshd_config.d/mmdeploy-testbed-hostkeys.conf
  done
  touch /etc/ssh/.mmdeploy-own-host-keys
  systemctl restart ssh
fi
cat /etc/ssh/ssh_host_*_key.pub
"""

# ssh.user for a bed with a non-root user (`up(..., sudo_user=...)`): the user has
# passwordless sudo, as on real hosts managed by an unprivileged account.
SUDO_USER_SETUP = """\
id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
install -d -o {user} -g {user} -m 0700 /home/{user}/.ssh
cat > /home/{user}/.ssh/authorized_keys
chown {user}:{user} /home/{user}/.ssh/authorized_keys && chmod 0600 /home/{user}/.ssh/authorized_keys
echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-mmdeploy-{user}
chmod 0440 /etc/sudoers.d/90-mmdeploy-{user}
"""


def layout(pattern: str | None = None, hosts: int | None = None) -> list[BedHost]:
    """Fixed names and addresses (.11, .12, ...) for a pattern or for N generic hosts."""
    if (pattern is None) == (hosts is None):
        raise TestbedError("give exactly one of pattern (single, multi, cluster, allinone) or hosts=N")
    if pattern is not None:
        if pattern not in PATTERNS:
            raise TestbedError(f"unknown test-bed pattern {pattern!r}; use one of {', '.join(PATTERNS)} or hosts=N")
        spec = PATTERNS[pattern]
    else:
        if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
            raise TestbedError(f"hosts must be a whole number from 1 to {MAX_HOSTS}, got {hosts!r}")
        spec = [("host1", ALL_ROLES)] + [(f"host{i}", ["app"]) for i in range(2, hosts + 1)]
    prefix = GATEWAY.rsplit(".", 1)[0]
    return [BedHost(name, f"{prefix}.{11 + i}", list(roles)) for i, (name, roles) in enumerate(spec)]


def grown(have: list[BedHost], pattern: str) -> list[BedHost]:
    """The hosts of a running bed grown into `pattern`'s layout: every host keeps its name
    and address (roles as the pattern gives them), the pattern's hosts it lacks follow the
    last address, in the pattern's order."""
    wanted = layout(pattern)
    names = {h.name for h in have}
    roles = {h.name: h.roles for h in wanted}
    last = max(int(h.address.rsplit(".", 1)[1]) for h in have)
    prefix = have[0].address.rsplit(".", 1)[0]
    new = [h for h in wanted if h.name not in names]
    if last + len(new) > 99:  # .100 and up are the floating addresses
        raise TestbedError(f"cannot grow to {len(have) + len(new)} hosts: the bed's addresses stop at .99")
    kept = [BedHost(h.name, h.address, list(roles.get(h.name, h.roles))) for h in have]
    return kept + [BedHost(h.name, f"{prefix}.{last + 1 + i}", list(h.roles)) for i, h in enumerate(new)]


def ensure_key(root: Path) -> str:
    key = key_path(root)
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.parent.chmod(0o700)
    # Beds started at once (the suite's two workers) make the one key once.
    with open(key.parent / ".key.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mmdeploy-testbed", "-f", str(key)],
                check=True,
                capture_output=True,
            )
    key.chmod(0o600)
    return key.with_suffix(".pub").read_text()


def add_host_flags() -> list[str]:
    # The mirror may be known only to the control machine's /etc/hosts, so hand the
    # containers the addresses the control machine resolves.
    flags = []
    for name in mirror_hosts():
        address = resolves(name)
        if address:
            flags += ["--add-host", f"{name}:{address}"]
    return flags


def ssh_answers(key: Path, address: str, user: str = "root") -> bool:
    # Only whether sshd lets the key in: the host keys are checked by every real connection.
    cmd = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=3",
        f"{user}@{address}",
        "true",
    ]
    return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL).returncode == 0


class LayoutConflict(TestbedError):
    """Containers of another layout hold this layout's names or addresses."""


def check_conflicts(hosts: list[BedHost]) -> None:
    """Refuse a layout whose names or addresses clash with containers already there."""
    by_name = {s["name"]: s["address"] for s in status()}
    by_address = {address: name for name, address in by_name.items()}
    for host in hosts:
        if by_name.get(host.name, host.address) != host.address:
            raise LayoutConflict(
                f"{container_name(host.name)} exists with address "
                f"{by_name[host.name]}, this layout wants {host.address}; "
                "run `inv testbed.down` first"
            )
        if by_address.get(host.address, host.name) != host.name:
            raise LayoutConflict(
                f"{host.address} is taken by "
                f"{container_name(by_address[host.address])}, this layout wants "
                f"{host.name} there; run `inv testbed.down` first"
            )


def sysctl_flags(host: BedHost) -> list[str]:
    """A container cannot set kernel parameters (/proc/sys is read-only in it): Mattermost
    servers get the network ones its HA docs ask for (the mattermost component's
    ha_sysctl defaults) from Docker at creation, as a cloud image may preset them; the
    deploy then finds them set and persists them."""
    if not {"app", "jobserver"} & set(host.roles):
        return []
    from ..components.mattermost import HA_SYSCTL

    return [arg for key, value in HA_SYSCTL.items() for arg in ("--sysctl", f"{key}={value}")]


def start_host(
    host: BedHost,
    pubkey: str,
    key: Path,
    add_hosts: list[str],
    log: Log,
    owner: str = "testbed",
    layout_name: str = "",
    image: str = IMAGE,
    sudo_user: str | None = None,
) -> list[str]:
    """Start (or create) one host; returns its known_hosts lines."""
    name = container_name(host.name)
    state = docker("inspect", "-f", "{{.State.Status}}", name, check=False)
    started = time.monotonic()
    if state.returncode != 0:
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            host.name,
            "--network",
            NETWORK,
            "--ip",
            host.address,
            "--label",
            f"{LABEL}={NETWORK}",
            "--label",
            f"{ROLES_LABEL}={','.join(host.roles)}",
            "--label",
            f"{OWNER_LABEL}={owner}",
            "--label",
            f"{LAYOUT_LABEL}={layout_name}",
            # SIGRTMIN+3 makes `docker stop` a clean systemd shutdown (import cannot set it).
            "--stop-signal",
            "SIGRTMIN+3",
            *RUN_FLAGS,
            *sysctl_flags(host),
            *add_hosts,
            image,
        )
    elif state.stdout.strip() != "running":
        docker("start", name)
    docker(
        "exec",
        "-i",
        name,
        "sh",
        "-c",
        "mkdir -p /root/.ssh && chmod 700 /root/.ssh && "
        "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
        input=pubkey,
    )
    if sudo_user:
        docker("exec", "-i", name, "sh", "-c", SUDO_USER_SETUP.format(user=sudo_user), input=pubkey)
    deadline = started + SSH_WAIT
    keys: list[str] = []
    while True:
        if not keys:  # sshd must be up (systemd boots) before its keys can be replaced
            got = docker(
                "exec",
                name,
                "bash",
                "-c",
                "systemctl is-active ssh >/dev/null || exit 1\n" + OWN_HOST_KEYS,
                check=False,
            )
            keys = got.stdout.split("\n") if got.returncode == 0 else []
        if keys and ssh_answers(key, host.address, sudo_user or "root"):
            break
        if time.monotonic() > deadline:
            raise TestbedError(
                f"{host.name} ({host.address}) did not answer SSH within {SSH_WAIT:.0f} s; see `docker logs {name}`"
            )
        time.sleep(0.5)
    log(f"{host.name:<10} {host.address:<13} ready ({time.monotonic() - started:.1f} s)")
    return [f"{host.address} {' '.join(line.split()[:2])}" for line in keys if line.strip()]


def down(log: Log = print) -> None:
    """Remove every test-bed container and the network; keeps the image."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={NETWORK}").stdout.split()
    if ids:
        docker("rm", "-f", *ids)
        log(f"removed {len(ids)} test-bed container(s)")
    if docker("network", "inspect", NETWORK, check=False).returncode == 0:
        remove_network()
        log(f"removed network {NETWORK}")


def remove_network(wait: float = 60) -> None:
    """`docker network rm`, waiting out the endpoints of the containers just removed: the
    daemon releases them after `rm -f` returns, and under load the removal can fail with
    "has active endpoints" (it did once, after the cluster bed's 18 containers, and every
    later module of that worker failed on it). An endpoint still listed is disconnected."""
    deadline = time.monotonic() + wait
    while True:
        proc = docker("network", "rm", NETWORK, check=False)
        if proc.returncode == 0 or "not found" in proc.stderr:
            return
        if "active endpoints" not in proc.stderr or time.monotonic() > deadline:
            raise TestbedError(f"`docker network rm {NETWORK}` failed: {proc.stderr.strip()}")
        listed = docker(
            "network", "inspect", NETWORK, "--format", "{{range $id, $c := .Containers}}{{$id}} {{end}}", check=False
        )
        for endpoint in listed.stdout.split():
            docker("network", "disconnect", "--force", NETWORK, endpoint, check=False)
        time.sleep(1)


def status() -> list[dict]:
    """One entry per test-bed container: name, address, roles, state, ssh."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={NETWORK}").stdout.split()
    if not ids:
        return []
    result = []
    for info in json.loads(docker("inspect", *ids).stdout):
        # IPAMConfig keeps the requested address while the container is stopped.
        net = info["NetworkSettings"]["Networks"].get(NETWORK) or {}
        address = (net.get("IPAMConfig") or {}).get("IPv4Address") or net.get("IPAddress", "")
        state = info["State"]["Status"]
        roles = info["Config"]["Labels"].get(ROLES_LABEL, "")
        result.append(
            {
                "name": info["Config"]["Hostname"],
                "address": address,
                "roles": roles.split(",") if roles else [],
                "state": state,
                "ssh": state == "running" and bool(address) and _port_open(address, 22),
                "owner": info["Config"]["Labels"].get(OWNER_LABEL, ""),
                "layout": info["Config"]["Labels"].get(LAYOUT_LABEL, ""),
            }
        )
    return sorted(result, key=lambda s: ipaddress.ip_address(s["address"] or "0.0.0.0"))


class CpuMeter:
    """CPU seconds the named hosts' containers have used (their cgroups, v1 or v2), for
    benchmarks to print what a run cost the hosts beside its wall time: on the bed every
    host's sshd and commands share this machine's cores with the control process. Reads
    0 where this machine does not show the cgroups."""

    def __init__(self, hosts: list[str]):
        ids = docker("inspect", "-f", "{{.Id}}", *(container_name(h) for h in hosts), check=False).stdout.split()
        self.files = []
        for cid in ids:
            for path, scale in (
                (f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1e9),
                (f"/sys/fs/cgroup/unified/docker/{cid}/cpu.stat", 1e6),
                (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1e6),
            ):
                if Path(path).exists():
                    self.files.append((Path(path), scale))
                    break

    def seconds(self) -> float:
        total = 0.0
        for path, scale in self.files:
            try:
                text = path.read_text()
            except OSError:
                continue
            total += (int(text.split()[1]) if text.startswith("usage_usec") else int(text)) / scale
        return total


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(
    hosts: list[BedHost],
    root: Path,
    log: Log,
    owner: str,
    layout_name: str,
    image: str = IMAGE,
    sudo_user: str | None = None,
) -> Path:
    """Start (or create) every host in parallel and wait until each answers SSH; write the
    bed's known_hosts (returned)."""
    pubkey = ensure_key(root)
    check_conflicts(hosts)
    key = key_path(root)
    add_hosts = add_host_flags()
    with ThreadPoolExecutor(max_workers=min(len(hosts), 8)) as pool:
        # list() re-raises the first failure; leaving the block waits for the other hosts.
        lines = list(
            pool.map(lambda h: start_host(h, pubkey, key, add_hosts, log, owner, layout_name, image, sudo_user), hosts)
        )
    path = known_hosts_path(root)
    path.write_text("".join(f"{line}\n" for host_lines in lines for line in host_lines))
    return path


def host_keys(host: str) -> list[str]:
    """A bed host's current known_hosts lines, read from the container itself."""
    address = next(s["address"] for s in status() if s["name"] == host)
    out = docker("exec", container_name(host), "bash", "-c", "cat /etc/ssh/ssh_host_*_key.pub").stdout
    return [f"{address} {' '.join(line.split()[:2])}" for line in out.splitlines() if line.strip()]


def replace_host(root: Path, name: str, log: Log = print) -> list[str]:
    """A lost machine replaced by a fresh one (disaster recovery drills): the container
    `name` is removed and made again from its image, empty, with the same name, address,
    roles and labels; the bed's known_hosts gets its new host keys. Returns them."""
    info = next((s for s in status() if s["name"] == name), None)
    if info is None:
        raise TestbedError(f"no test-bed host named {name!r} on {NETWORK}")
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", container_name(name)).stdout)
    image = docker("inspect", "-f", "{{.Config.Image}}", container_name(name)).stdout.strip()
    docker("rm", "-f", container_name(name))
    host = BedHost(name, info["address"], info["roles"])
    lines = start_host(
        host,
        ensure_key(root),
        key_path(root),
        add_host_flags(),
        log,
        info["owner"],
        labels.get(LAYOUT_LABEL, ""),
        image,
    )
    path = known_hosts_path(root)
    kept = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] != host.address]
    path.write_text("".join(f"{line}\n" for line in kept + lines))
    return lines
