"""Hostile secrets for the end-to-end tests, and a scan of every channel a secret could
leak through: the commands' output (plan and its diffs, deploy, failover, errors), the run
logs, the process lists of this machine and of every bed host (sampled while commands
run), and the command lines sudo records on the hosts (the remote command line)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import yaml

from mmdeploy import testbed
from mmdeploy.secrets import escaped_forms

from .conftest import ROOT


def hostile(tag: str) -> dict[str, str]:
    """Passwords with quotes, backslashes, %, @, :, spaces, '#', '$', backquotes and
    non-ASCII, each distinct (tag), each at most 72 bytes (Mattermost's limit)."""
    return {
        "db_password": f"d{tag}\"q'b\\s %41@h:c #$(id)`x`;ü€",
        "db_replication_password": f"r{tag}'e\"p\\l %2F@:# ;$HOME ñ\\",
        "db_monitoring_password": f"m{tag}%o'n\" i\\t@o:r#ä&x=1",
        "mattermost_admin_password": f"A{tag}'d\"m\\n %20@:#é$x ok",
    }


def write_secrets(inventory: str | Path, values: dict[str, str]) -> Path:
    """The secrets file beside the inventory, private, holding `values` (merged)."""
    path = Path(inventory).with_name(Path(inventory).stem + ".secrets.yml")
    current = yaml.safe_load(path.read_text()) if path.exists() else {}
    current.update(values)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(current, f, allow_unicode=True)
    return path


class ProcessWatch:
    """Samples the process lists of this machine and of every bed host while commands run.
    Each bed host samples itself (one long-lived `docker exec` running a loop) so that the
    watch does not load the machine with a `docker exec` every 50 ms per host."""

    STOP = "/run/mmdeploy-processwatch.stop"
    LOOP = f"rm -f {STOP}; while [ ! -e {STOP} ]; do ps -eo args; sleep 0.05; done; rm -f {STOP}"

    def __init__(self, hosts: list[str]):
        self.hosts, self.seen, self._stop = hosts, set(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen] = []

    def _local(self):
        while not self._stop.is_set():
            self.seen.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
            time.sleep(0.05)

    def _read(self, proc: subprocess.Popen):
        for line in proc.stdout:
            self.seen.add(line.rstrip("\n"))

    def __enter__(self):
        for h in self.hosts:
            proc = subprocess.Popen(
                ["docker", "exec", testbed.container_name(h), "timeout", "3600", "sh", "-c", self.LOOP],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._procs.append(proc)
            self._threads.append(threading.Thread(target=self._read, args=(proc,), daemon=True))
        self._threads.append(threading.Thread(target=self._local, daemon=True))
        for t in self._threads:
            t.start()
        time.sleep(0.2)  # every sampler has taken its first sample
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for h in self.hosts:
            subprocess.run(
                ["docker", "exec", testbed.container_name(h), "touch", self.STOP], capture_output=True, timeout=30
            )
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for t in self._threads:
            t.join(timeout=10)


def sudo_command_lines(hosts: list[str]) -> str:
    """What sudo recorded on the hosts: the command line of every remote command."""
    return "\n".join(
        subprocess.run(
            ["docker", "exec", testbed.container_name(h), "journalctl", "--no-pager", "-o", "cat", "_COMM=sudo"],
            capture_output=True,
            text=True,
        ).stdout
        for h in hosts
    )


def run_logs(since: float) -> dict[str, str]:
    root = ROOT / ".mmdeploy" / "runs"
    return {str(p): p.read_text(errors="replace") for p in root.rglob("*.log") if p.stat().st_mtime >= since}


BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


def leaks(channels: dict[str, str], secrets: list[str]) -> list[str]:
    """Every (channel, secret form) found, and any bcrypt hash."""
    found = []
    for secret in secrets:
        for form in escaped_forms(secret):
            found += [f"{name}: {form!r}" for name, text in channels.items() if form in text]
    found += [f"{name}: a bcrypt hash" for name, text in channels.items() if BCRYPT.search(text)]
    return found
