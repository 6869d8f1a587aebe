"""One writer at a time: deploy, failover-db and db.rejoin hold a lock for the inventory on
the control machine and on every host they can reach, so a second run on the same
inventory is refused with the name of the one holding it, also when the two operators
work from different machines.

- Control machine: an flock on `.<inventory>.lock` beside the inventory. The kernel drops it
  when the holding process exits or is killed, so a lock left by a dead process is taken
  over by the next run at once.
- Each host: an flock on /run/lock/mmdeploy.lock held by a small script started over the
  run's own SSH connection, which ends when its standard input does: when the run closes
  it, or when the control process dies and its connection closes. A holder whose control
  process is known dead (same control machine, pid gone: a connection that was cut
  without closing) is ended and the lock taken over.

Reading commands (plan, verify, db.status) take no lock.
"""

from __future__ import annotations

import dataclasses
import fcntl
import getpass
import json
import os
import shlex
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import MMDeployError
from .inventory import Host, Inventory
from .facts import HOST_FACTS, host_facts_script, parse_host_fact
from .remote import SCRIPTS_LOCK, Held, Remote, Unreachable

HOST_LOCK = "/run/lock/mmdeploy.lock"
HOST_HOLDER = "/run/lock/mmdeploy.holder"
# The longest a run may hold a host's lock (a base backup of a large database takes hours).
HOST_HOLD_LIMIT = 24 * 3600
# How long a run waits for the scripts an interrupted run left running on a host (an apt
# install, a base backup) before it gives up on that host.
ORPHANS_WAIT = 6 * 3600


class LockHeld(MMDeployError):
    """Another run holds the lock; nothing was done."""

    exit_code = 3


def _machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


def holder_info(what: str) -> dict:
    return {
        "what": what,
        "user": getpass.getuser(),
        "machine": socket.gethostname(),
        "machine_id": _machine_id(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "run": uuid.uuid4().hex[:12],
    }


def describe(info: dict | None) -> str:
    if not info:
        return "another run (no details recorded)"
    return (
        f"`{info.get('what', '?')}` by {info.get('user', '?')}@{info.get('machine', '?')} "
        f"(pid {info.get('pid', '?')}, since {info.get('since', '?')})"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunLock:
    """The locks of one run; release() (or leaving a `with` block) frees them all."""

    path: Path
    fd: int | None
    held: dict[str, tuple[Remote, Held]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # host -> why it was not locked

    def release(self) -> None:
        for remote, held in self.held.values():
            held.close()
            remote.close()
        self.held.clear()
        if self.fd is not None:
            os.close(self.fd)  # also drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_path(inventory: Inventory) -> Path:
    return inventory.path.with_name(f".{inventory.path.name}.lock")


def acquire(
    inventory: Inventory,
    what: str,
    redact: Callable[[str], str],
    *,
    connect_timeout: float | None = None,
    log_dir: Path | None = None,
) -> RunLock:
    """Lock the inventory on this machine, then on every host that answers. Raises
    LockHeld naming the holder; a host that does not answer is left to the run itself
    (it cannot be changed by anyone while it does not answer either)."""
    info = holder_info(what)
    lock = RunLock(lock_path(inventory), _lock_local(lock_path(inventory), info))
    try:
        hosts = list(inventory.hosts)
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
            outcomes = list(pool.map(lambda h: _lock_host(h, info, redact, connect_timeout, log_dir), hosts))
        busy = []
        for host, outcome in zip(hosts, outcomes):
            if isinstance(outcome, tuple):
                lock.held[host.name] = outcome
            elif isinstance(outcome, LockHeld):
                busy.append(f"{host.name}: {outcome}")
            else:
                lock.skipped[host.name] = outcome
        if busy:
            raise LockHeld(
                f"not started: another run holds the lock of {'this host' if len(busy) == 1 else 'these hosts'}"
                " (wait for it to finish):\n  " + "\n  ".join(busy)
            )
    except BaseException:
        lock.release()
        raise
    return lock


def _lock_local(path: Path, info: dict) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            held = json.loads(os.read(fd, 4096) or b"{}")
        except ValueError:
            held = None
        os.close(fd)
        raise LockHeld(
            f"not started: the inventory is locked by {describe(held)} on this machine ({path}); wait for it to finish"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


def _host_script(info: dict) -> str:
    record = shlex.quote(json.dumps(info))
    return f"""\
exec 9>>{HOST_LOCK}
if ! flock -n 9; then
  echo "BUSY $(cat {HOST_HOLDER} 2>/dev/null)"
  exit 0
fi
printf '%s\\n' {record} > {HOST_HOLDER}
trap 'rm -f {HOST_HOLDER}' EXIT
echo "LOCKED $$"
# Scripts of an interrupted run may still be running (they hold {SCRIPTS_LOCK} shared): they
# finish first, so that this run starts from what they leave, not beside them.
flock -x -w {ORPHANS_WAIT} {SCRIPTS_LOCK} true && echo READY || echo "STILL RUNNING"
# The host's facts (distribution, memory, CPUs) come along: the run needs them first.
{host_facts_script()}# Holds the lock until the control machine closes this input, or is gone. (It reads the
# rest of this script too: nothing may follow it.)
cat >/dev/null
"""


def _lock_host(
    host: Host, info: dict, redact, connect_timeout: float | None, log_dir: Path | None
) -> tuple[Remote, Held] | LockHeld | str:
    if connect_timeout is not None:
        host = dataclasses.replace(
            host, ssh=dataclasses.replace(host.ssh, connect_timeout=min(host.ssh.connect_timeout, connect_timeout))
        )
    remote = Remote(host, redact, log_dir / f"{host.name}.log" if log_dir else None)
    for attempt in range(2):
        try:
            first, held = remote.hold(_host_script(info), HOST_HOLD_LIMIT, "the run lock")
        except Unreachable as e:
            remote.close()
            return str(e)
        if first.startswith("LOCKED"):
            ready = held.readline(10)
            if not ready:
                print(redact(f"{host.name}: waiting for commands of an interrupted run to finish"), flush=True)
                ready = held.readline(ORPHANS_WAIT + 60)
            if ready != "READY":
                held.close()
                remote.close()
                return LockHeld(f"commands of an interrupted run are still running there ({ready or 'no answer'})")
            for _ in HOST_FACTS:  # a line each; one missing is read again with the first facts
                fact = parse_host_fact(held.readline(10))
                if fact:
                    remote.host_facts.update([fact])
            return remote, held
        held.close()
        try:
            other = json.loads(first.removeprefix("BUSY").strip() or "{}")
        except ValueError:
            other = {}
        if attempt == 0 and _stale(other):
            _end_holder(remote, other)
            continue
        remote.close()
        return LockHeld(f"locked by {describe(other)}")
    remote.close()
    return LockHeld(f"locked by {describe(other)}")


def _stale(other: dict) -> bool:
    """A holder started from this machine whose process is gone: its connection was cut
    without the host noticing yet."""
    return (
        bool(other)
        and other.get("machine_id") == _machine_id()
        and isinstance(other.get("pid"), int)
        and not _pid_alive(other["pid"])
    )


def _end_holder(remote: Remote, other: dict) -> None:
    run = shlex.quote(str(other.get("run", "")))
    # Only the holder of that very run: the processes that hold the lock file open.
    remote.run(
        f"""\
if grep -F {run} {HOST_HOLDER} >/dev/null 2>&1; then
  # Again while any is left: a holder that was still starting may fork one after the list.
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(find /proc/[0-9]*/fd -lname {HOST_LOCK} 2>/dev/null | cut -d/ -f3 | sort -u)
    [ -n "$pids" ] || break
    kill $pids 2>/dev/null || true
    sleep 0.2
  done
  rm -f {HOST_HOLDER}
fi
""",
        timeout=30,
        what="end a stale run lock",
    )
