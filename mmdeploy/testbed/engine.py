"""The Docker engine on the control machine: installed (Debian's docker.io) and started
when it does not answer, and the host kernel limits the bed needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

from .config import Log, TestbedError

DOCKERD_LOG = Path("/var/log/mmdeploy-dockerd.log")


def docker(*args: str, check: bool = True, input: str | IO[bytes] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one docker CLI command; a str input is fed as text, a stream is passed as stdin."""
    stream = None if input is None or isinstance(input, str) else input
    try:
        proc = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            input=input if isinstance(input, str) else None,
            stdin=stream,
        )
    except FileNotFoundError:
        raise TestbedError(
            "the docker CLI is not installed; run `inv testbed.up` as root on "
            "Debian/Ubuntu to install docker.io, or install Docker yourself"
        )
    if check and proc.returncode != 0:
        raise TestbedError(f"`docker {' '.join(args[:3])}` failed: {proc.stderr.strip()}")
    return proc


def _is_root_debian() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists()


def apt_install(package: str, log: Log) -> None:
    """apt-get install on the control machine, refreshing the package lists only if needed."""
    if not _is_root_debian():
        raise TestbedError(
            f"{package} is missing; install it (apt-get install {package}) "
            "or run as root on Debian/Ubuntu so it can be installed for you"
        )
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
        return docker("info", check=False).returncode == 0
    except TestbedError:
        return False


def ensure_engine() -> None:
    """Make `docker info` answer, installing docker.io and starting dockerd if needed."""
    raise_kernel_limits()
    if _engine_answers():
        return
    if not _is_root_debian():
        raise TestbedError(
            "the Docker engine does not answer `docker info`; install Docker "
            "(Debian: apt-get install docker.io) and start it "
            "(systemctl start docker, or `dockerd &`), or run as root"
        )
    if not shutil.which("dockerd"):
        apt_install("docker.io", print)
    # Detached in its own session so the engine outlives this process (hosts may lack systemd).
    with DOCKERD_LOG.open("ab") as out:
        subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(1)
    raise TestbedError(f"dockerd was started but `docker info` did not answer within 60 s; see {DOCKERD_LOG}")


def raise_kernel_limits() -> None:
    """Limits that are not namespaced, so the containers see the control machine's: the
    inotify instances systemd takes per container, and OpenSearch's memory maps."""
    _raise_inotify_limit()
    _raise("/proc/sys/vm/max_map_count", 262144)


def _raise(knob: str, wanted: int) -> None:
    try:
        path = Path(knob)
        if int(path.read_text()) < wanted and os.geteuid() == 0:
            path.write_text(str(wanted))
    except OSError:
        pass  # not Linux, or not allowed: components that need it say so


def _raise_inotify_limit() -> None:
    # systemd in each container takes inotify instances from the host's shared budget;
    # past ~25 containers the default of 128 leaves new ones without sshd.
    _raise("/proc/sys/fs/inotify/max_user_instances", 4096)
    _raise("/proc/sys/fs/inotify/max_user_watches", 524288)
