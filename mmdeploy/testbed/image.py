"""The bed's images without a registry: debootstrap + `docker import`, cached, one per
Debian suite (mmdeploy-bed:bookworm, mmdeploy-bed:trixie).

The Debian mirror is the one the control machine's own apt sources name (or
MMDEPLOY_DEBIAN_MIRROR), never a host written into the code; another suite (trixie on a
bookworm control machine) comes from the same mirror under its own suite name. An
apt-cacher-ng on the control machine (network.py) keeps repeated installs from
re-downloading.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import Log, TestbedError
from .engine import apt_install, docker

# The bed's distributions: `--distro NAME` picks one; bookworm is the default.
SUITES = ("bookworm", "trixie")
SUITE = "bookworm"
IMAGE = f"mmdeploy-bed:{SUITE}"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# What an image built by this code holds, as its label mmdeploy.image: an image with another
# (or none) is rebuilt. 2: the image carries package lists (_fill_package_lists).
IMAGE_FORMAT = "2"
PACKAGES = "openssh-server,python3,sudo,iproute2,procps,ca-certificates,systemd,systemd-sysv,dbus,curl,gnupg,less"


def apt_sources(root: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled `deb` source of the control machine, one-line and
    deb822 formats alike."""
    found: list[tuple[str, list[str]]] = []
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for f in files:
        try:
            for line in f.read_text().splitlines():
                m = re.match(r"^\s*deb\s+(\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.append((m.group(2), [m.group(3)]))
        except OSError:
            continue
    for f in sorted((root / "sources.list.d").glob("*.sources")):
        try:
            text = f.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    found.append((uri, fields.get("Suites", "").split()))
    return found


def image_for(suite: str = SUITE) -> str:
    """The cached image of a suite: mmdeploy-bed:<suite>."""
    if suite not in SUITES:
        raise TestbedError(f"unknown test-bed distribution {suite!r}; use one of {', '.join(SUITES)}")
    return f"mmdeploy-bed:{suite}"


def mirrors(root: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(Debian mirror, security mirror): MMDEPLOY_DEBIAN_MIRROR, else the control machine's
    own sources (the URIs serving its own suite, which serve every other suite too), else
    deb.debian.org."""
    override = os.environ.get("MMDEPLOY_DEBIAN_MIRROR")
    if override:
        base = override.rstrip("/")
        return base, base + "-security"
    main = security = None
    for uri, suites in apt_sources(root):
        uri = uri.rstrip("/")
        if uri.startswith("http") and any(s in SUITES for s in suites) and main is None:
            main = uri
        if uri.startswith("http") and any(f"{s}-security" in suites for s in SUITES) and security is None:
            security = uri
    main = main or FALLBACK_MIRROR
    return main, security or main + "-security"


def mirror_hosts() -> list[str]:
    """Host names of the mirrors, which the containers must resolve like this machine."""
    return sorted({u.split("/")[2] for u in mirrors()})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _prepare_rootfs(root: Path, suite: str = SUITE) -> None:
    """Turn a debootstrapped tree into a systemd + sshd container image."""
    bundle = "etc/ssl/certs/ca-certificates.crt"
    shutil.copyfile(f"/{bundle}", root / bundle)
    main, security = mirrors()
    _write(
        root / "etc/apt/sources.list",
        f"deb {main} {suite} main\ndeb {main} {suite}-updates main\ndeb {security} {suite}-security main\n",
    )
    _write(
        root / "etc/apt/apt.conf.d/99mmdeploy-testbed",
        "// Mirrors may serve snapshot archives whose Release files are past Valid-Until.\n"
        'Acquire::Check-Valid-Until "false";\n'
        'APT::Install-Recommends "false";\n',
    )
    # Empty so every container gets its own machine id at boot; dbus's copy is a plain file
    # after debootstrap and systemd would take it, giving every container the same id.
    _write(root / "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    _write(
        root / "etc/ssh/sshd_config.d/mmdeploy-testbed.conf",
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n",
    )
    wants = root / "etc/systemd/system/multi-user.target.wants/ssh.service"
    if not wants.is_symlink():  # the link's absolute target only resolves inside the tree
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/lib/systemd/system/ssh.service")
    # Downloaded packages only bloat the image; the package lists are fetched afresh
    # (_fill_package_lists).
    shutil.rmtree(root / "var/cache/apt")
    shutil.rmtree(root / "var/lib/apt/lists")
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


def _fill_package_lists(root: Path, env: dict[str, str]) -> None:
    """`apt-get update` inside the tree (its own apt and sources), so that the image carries
    fresh package lists: a bed's hosts then install without each running `apt-get update`
    on its first install, all at once, which costs a cold deploy CPU and made the bed's
    apt-cacher-ng 3.7.4 answer 503s and bodies cut short (two refreshes of one InRelease in
    the same second collide), one of which apt waited out for minutes. A host whose install
    fails on lists gone stale still updates them (mmdeploy.ops.apt)."""
    resolv, kept = root / "etc/resolv.conf", root / "etc/resolv.conf.mmdeploy"
    if resolv.exists() or resolv.is_symlink():
        resolv.rename(kept)
    shutil.copyfile("/etc/resolv.conf", resolv)  # the mirror's name, when no apt proxy is used
    try:
        proc = subprocess.run(
            [
                "chroot",
                str(root),
                "apt-get",
                "-q",
                "-o",
                "Acquire::Retries=3",
                "-o",
                "APT::Sandbox::User=root",
                "update",
            ],
            env={**env, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        resolv.unlink()
        if kept.exists() or kept.is_symlink():
            kept.rename(resolv)
    # apt-get update exits 0 when a source could not be fetched; the image would lack its lists.
    if proc.returncode != 0 or "Failed to fetch" in proc.stdout + proc.stderr:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-10:]
        raise TestbedError("apt-get update in the image failed (check the mirror and apt proxy):\n" + "\n".join(tail))


def _unmount_below(path: Path) -> None:
    # A failed debootstrap can leave /proc or /sys mounted inside the tree; never rmtree those.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


def ensure_image(rebuild: bool = False, log: Log = print, suite: str = SUITE) -> str:
    """Build the suite's image with debootstrap + docker import unless it is already
    cached; returns its name."""
    from .network import ACNG_LOCAL, ensure_apt_cache

    image = image_for(suite)
    previous = docker("image", "inspect", "-f", "{{.Id}} {{json .Config.Labels}}", image, check=False)
    if previous.returncode == 0 and not rebuild:
        labels = json.loads(previous.stdout.split(" ", 1)[1]) or {}
        if labels.get("mmdeploy.image") == IMAGE_FORMAT:
            return image
        log(f"{image} was built by an earlier mmdeploy (no package lists); rebuilding it")
    if os.geteuid() != 0:
        raise TestbedError(f"building {image} needs debootstrap as root; run `inv testbed.up` as root")
    if not shutil.which("debootstrap"):
        apt_install("debootstrap", log)
    env = dict(os.environ)
    if ensure_apt_cache(log):
        env["http_proxy"] = ACNG_LOCAL
    rootfs = Path(tempfile.mkdtemp(prefix="mmdeploy-bed-", dir="/var/tmp"))
    try:
        log(f"debootstrap {suite} into {rootfs} (a few minutes)")
        started = time.monotonic()
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(rootfs), mirrors()[0]],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise TestbedError("debootstrap failed (check the mirror and apt proxy):\n" + "\n".join(tail))
        log(f"debootstrap done in {time.monotonic() - started:.0f} s; preparing image")
        _prepare_rootfs(rootfs, suite)
        _fill_package_lists(rootfs, env)
        log(f"importing {image}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        # container=docker tells systemd it runs in a container.
        result = docker(
            "import",
            "-c",
            'CMD ["/sbin/init"]',
            "-c",
            "ENV container=docker",
            "-c",
            f"LABEL mmdeploy.image={IMAGE_FORMAT}",
            "-",
            image,
            check=False,
            input=tar.stdout,
        )
        tar.stdout.close()
        if tar.wait() != 0 or result.returncode != 0:
            raise TestbedError(f"importing {image} failed: {result.stderr.strip()}")
        if previous.returncode == 0:  # else a rebuild leaves the old image dangling
            docker("image", "rm", previous.stdout.split()[0], check=False)
        log(f"image {image} ready")
        return image
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
