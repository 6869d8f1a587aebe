"""The one way to run a command on a host.

Every remote action is a bash script sent on the standard input of `bash -s` (under
`sudo -n` when the SSH user is not root) over one Fabric connection kept open for the whole
run. Sending scripts on stdin keeps secrets out of the process list and lets a single round
trip carry many commands (see facts.py). Every script and its output is appended, redacted,
to the host's run log.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import MMDeployError
from .inventory import Host

PREAMBLE = "set -o pipefail\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n"
# Every command has a time limit; callers pass one suited to what they run (an apt
# transaction, a base backup) and everything else gets this. The host kills the script at
# the limit (`timeout`), and the control machine stops waiting a little later, so a host
# that stopped answering (a partition drops packets) cannot hold a run forever.
DEFAULT_TIMEOUT = 300.0
GRACE = 10.0
# Every script holds this lock (shared) on its host while it runs: a run that starts waits
# (locks.py) for the scripts of an interrupted run, which go on after their run died.
SCRIPTS_LOCK = "/run/lock/mmdeploy.scripts"
# SSH keepalives detect a dead peer on an idle connection between commands.
KEEPALIVE = 5
UPLOAD_STALL = 60.0
# OpenSSH serves at most 10 sessions on one connection (MaxSessions), and frees a closed
# one's slot a moment after the client closes it: threads sharing a connection run this
# many commands at once (the others wait their turn), and a refused session is retried.
SESSIONS = 6
SESSION_RETRIES = 5


class Unreachable(MMDeployError):
    """The host does not answer over SSH."""


class TimedOut(MMDeployError):
    """A command did not finish within its time limit."""


class HostKeyRejected(Unreachable):
    """The host's SSH key is unknown or not the one known for it (strict_host_keys)."""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Remote:
    def __init__(self, host: Host, redact: Callable[[str], str], log_path: Path | None = None):
        self.host = host
        self.redact = redact
        self.log_path = log_path
        self.round_trips = 0
        # HOST_FACTS another script on this connection read (the run lock's), by command:
        # facts.FactCache starts from them.
        self.host_facts: dict[str, Any] = {}
        self._conn = None
        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(SESSIONS)

    def connect(self) -> Any:  # a fabric.Connection (fabric ships no types)
        if self._conn is None:
            import fabric  # imported here so that `import mmdeploy` stays light
            import paramiko

            ssh = self.host.ssh
            kwargs = _key_kwargs(ssh.key) if ssh.key else {}
            conn = fabric.Connection(
                self.host.address,
                user=ssh.user,
                port=ssh.port,
                connect_timeout=ssh.connect_timeout,
                connect_kwargs={**kwargs, "banner_timeout": ssh.connect_timeout},
            )
            conn.connect_kwargs.setdefault("auth_timeout", ssh.connect_timeout)
            conn.connect_kwargs.setdefault("transport_factory", _aead_first())
            conn.connect_kwargs.setdefault("channel_timeout", ssh.connect_timeout)
            if ssh.strict_host_keys:
                known, name = conn.client.get_host_keys(), self._known_as()
                for path in (Path("~/.ssh/known_hosts").expanduser(), ssh.known_hosts):
                    for keytype, key in _known_keys(path, name):
                        known.add(name, keytype, key)
                conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            else:
                conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                if conn.gateway is None:  # no ProxyJump/ProxyCommand: the socket is ours, quick
                    conn.connect_kwargs["sock"] = _quick_socket(self.host.address, ssh.port, ssh.connect_timeout)
                conn.open()
            except paramiko.BadHostKeyException as e:
                raise HostKeyRejected(self._key_changed(e)) from None
            except paramiko.SSHException as e:
                if "not found in known_hosts" not in str(e):
                    raise Unreachable(
                        f"cannot connect over SSH to {ssh.user}@{self.host.address}:{ssh.port}: {type(e).__name__}: {e}"
                    ) from None
                raise HostKeyRejected(
                    f"{self.host.name}: the SSH host key of {self._known_as()} is not known (strict_host_keys): "
                    f"refusing to connect. Check the key's fingerprint on the host (ssh-keygen -lf "
                    f"/etc/ssh/ssh_host_ed25519_key.pub), then add it: ssh-keyscan {self._keyscan_args()} "
                    f">> {self._known_hosts_file()}"
                ) from None
            except Exception as e:  # socket errors, auth failures, timeouts
                raise Unreachable(
                    f"cannot connect over SSH to {ssh.user}@{self.host.address}:{ssh.port}: {type(e).__name__}: {e}"
                ) from None
            conn.client.get_transport().set_keepalive(KEEPALIVE)
            self._conn = conn
        return self._conn

    def _known_as(self) -> str:
        port = self.host.ssh.port
        return self.host.address if port == 22 else f"[{self.host.address}]:{port}"

    def _known_hosts_file(self) -> str:
        return str(self.host.ssh.known_hosts or "~/.ssh/known_hosts")

    def _keyscan_args(self) -> str:
        port = self.host.ssh.port
        return (f"-p {port} " if port != 22 else "") + self.host.address

    def _key_changed(self, e) -> str:
        import shlex

        got = f"{e.key.get_name()} {e.key.fingerprint}" if hasattr(e.key, "fingerprint") else e.key.get_name()
        kind = "ed25519" if "ed25519" in e.key.get_name() else "ecdsa" if "ecdsa" in e.key.get_name() else "rsa"
        return (
            f"{self.host.name}: the SSH host key of {self._known_as()} CHANGED (got {got}, which is not the "
            f"key known for it): refusing to connect (strict_host_keys). Someone may be intercepting the "
            f"connection, or the host was reinstalled. If the change is expected, verify the new key's "
            f"fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub), then accept it: "
            f"ssh-keygen -R {shlex.quote(self._known_as())} -f {self._known_hosts_file()} && "
            f"ssh-keyscan {self._keyscan_args()} >> {self._known_hosts_file()}"
        )

    def hold(self, script: str, timeout: float, what: str, wait: float = 30.0) -> tuple[str, "Held"]:
        """Start `script` and leave it running: it ends when the returned handle is closed,
        or when this process dies (its end of the connection closes, the script's standard
        input ends). Returns the script's first line of output and the handle. For a lock
        held on the host for as long as a run lasts (locks.py); `timeout` bounds it too."""
        conn = self.connect()
        limit = max(1, int(timeout))
        shell = f"timeout -k 5 {limit} bash -s"
        command = shell if self.host.ssh.user == "root" else f"sudo -n -H {shell}"
        transport = conn.client.get_transport()
        try:
            chan = transport.open_session(timeout=30)
            chan.settimeout(wait)
            chan.exec_command(command)
            chan.sendall((PREAMBLE + script).encode())
            out = b""
            while b"\n" not in out:
                data = chan.recv(4096)
                if not data:
                    break
                out += data
            chan.settimeout(1.0)
        except OSError as e:
            raise Unreachable(f"{what} on {self.host.address} failed: {e}") from None
        self.round_trips += 1
        line, _, rest = out.partition(b"\n")
        self._log(script, Result(0, line.decode(errors="replace"), ""), 0.0)
        return line.decode(errors="replace").strip(), Held(chan, rest)

    def run(
        self,
        script: str,
        timeout: float = DEFAULT_TIMEOUT,
        log_as: str | None = None,
        log_output: bool = True,
        what: str | None = None,
    ) -> Result:
        """Run `script` with bash on the host; return its exit code and output.

        The host kills the script after `timeout` seconds (exit 124, like `timeout`); if the
        host does not answer at all, TimedOut is raised a little later. `what` names the
        command in that message. `log_as` replaces the script in the run log when it
        carries encoded file contents that the redactor could not recognise;
        `log_output=False` keeps the output out of the log for the same reason (facts
        carry files base64-encoded).
        """
        conn = self.connect()
        limit = max(1, int(timeout))
        shell = f"flock -s {SCRIPTS_LOCK} timeout -k 5 {limit} bash -s"
        command = shell if self.host.ssh.user == "root" else f"sudo -n -H {shell}"
        started = time.monotonic()
        deadline = started + limit + GRACE
        expired = TimedOut(
            f"{self.host.name}: {what or 'command'} did not finish within {limit} s "
            f"(no answer from {self.host.address}, or what it waits for hangs)"
        )
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            raise Unreachable(f"SSH connection to {self.host.address} was lost")
        if not self._sessions.acquire(timeout=limit):
            raise expired
        try:
            chan = self._open_session(transport, min(limit, 30), what)
        except BaseException:
            self._sessions.release()
            raise
        try:
            chan.settimeout(1.0)
            chan.exec_command(command)
            chan.sendall((PREAMBLE + script).encode())
            chan.shutdown_write()
            err_chunks: list[bytes] = []
            # stderr is drained by a thread so that neither stream can fill and stall the other.
            drain = threading.Thread(target=_read_all, args=(chan.recv_stderr, err_chunks, deadline), daemon=True)
            drain.start()
            out_chunks: list[bytes] = []
            done = _read_all(chan.recv, out_chunks, deadline)
            drain.join(max(0.0, deadline - time.monotonic()))
            if not done or drain.is_alive() or not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                self._log(log_as or script, Result(-1, "", "timed out"), time.monotonic() - started)
                self.close()  # the connection may be wedged: the next command reconnects
                raise expired
            rc = chan.recv_exit_status()
        except OSError as e:
            raise Unreachable(f"command on {self.host.address} did not finish: {e}") from None
        finally:
            chan.close()
            self._sessions.release()
        result = Result(
            rc, b"".join(out_chunks).decode(errors="replace"), b"".join(err_chunks).decode(errors="replace")
        )
        if rc == 124 and not result.stderr:
            result.stderr = f"timed out after {limit} s"
        self.round_trips += 1
        logged = result if log_output else Result(result.rc, f"({len(result.stdout)} bytes, not logged)", result.stderr)
        self._log(log_as or script, logged, time.monotonic() - started)
        return result

    def _open_session(self, transport, opening: float, what: str | None):
        """A new session channel; one the host refuses while the connection lives (its
        session limit, for a moment) is asked for again."""
        import paramiko

        for attempt in range(SESSION_RETRIES):
            try:
                return transport.open_session(timeout=opening)
            except paramiko.ChannelException as e:
                if attempt + 1 < SESSION_RETRIES and transport.is_active():
                    time.sleep(0.2 * (attempt + 1))
                    continue
                error: Exception = e
            except Exception as e:
                error = e
            break
        if not transport.is_active():
            self.close()  # the connection is gone: the next command reconnects
        raise Unreachable(
            f"{self.host.name}: {what or 'command'}: no SSH session from {self.host.address} "
            f"within {opening} s ({error})"
        ) from None

    def put(self, local: Path, remote_path: str) -> None:
        """Upload a file over SFTP to a path the SSH user may write (a temp path); Fabric has
        no sudo put, so the caller moves it into place with run()."""
        conn = self.connect()
        started = time.monotonic()
        try:
            # Each SFTP request may wait this long: a stalled upload fails instead of hanging.
            conn.sftp().get_channel().settimeout(UPLOAD_STALL)
            conn.put(str(local), remote_path)
        except OSError as e:
            raise Unreachable(f"upload of {local.name} to {self.host.address} failed: {e}") from None
        self.round_trips += 1
        self._log(f"# upload {local} -> {remote_path}", Result(0, "", ""), time.monotonic() - started)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _log(self, script: str, result: Result, seconds: float) -> None:
        if self.log_path is None:
            return
        text = (
            f"--- {time.strftime('%H:%M:%S')} {self.host.name} rc={result.rc} {seconds * 1000:.0f} ms\n"
            f"{script.rstrip()}\n"
        )
        if result.stdout:
            text += "--- stdout\n" + result.stdout.rstrip() + "\n"
        if result.stderr:
            text += "--- stderr\n" + result.stderr.rstrip() + "\n"
        with self._lock, open(self.log_path, "a") as f:
            f.write(self.redact(text))


class Held:
    """A script left running by Remote.hold; close() ends it (its standard input ends)."""

    def __init__(self, chan, pending: bytes = b""):
        self.chan = chan
        self.pending = pending  # output read but not yet returned (read in blocks, not bytes)

    def readline(self, wait: float) -> str:
        """The script's next line of output (what there is when it ended or `wait` passed)."""
        deadline = time.monotonic() + wait
        while b"\n" not in self.pending and time.monotonic() < deadline:
            try:
                data = self.chan.recv(4096)
            except OSError:  # socket.timeout: nothing yet
                continue
            if not data:
                break
            self.pending += data
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode(errors="replace").strip()

    def close(self, wait: float = 5.0) -> None:
        try:
            self.chan.shutdown_write()
            self.chan.status_event.wait(wait)
        except OSError:
            pass
        finally:
            self.chan.close()


def impatient(host: Host, limit: float) -> Host:
    """`host` with its SSH connect time-out capped at `limit` s (each phase: TCP, banner,
    auth): for reads that must not wait long on a dead node (failover, verify)."""
    import dataclasses

    timeout = min(host.ssh.connect_timeout, limit)
    return dataclasses.replace(host, ssh=dataclasses.replace(host.ssh, connect_timeout=timeout))


@functools.cache
def _aead_first() -> type:
    """paramiko's Transport asking for AES-GCM first (every OpenSSH since 6.2 offers it),
    the others still offered: with an AEAD cipher paramiko checks no separate MAC, which it
    does byte by byte in Python, the largest part of the control machine's CPU in a
    no-op run."""
    import paramiko

    class Transport(paramiko.Transport):
        _preferred_ciphers = (
            *(c for c in paramiko.Transport._preferred_ciphers if "-gcm@" in c),
            *(c for c in paramiko.Transport._preferred_ciphers if "-gcm@" not in c),
        )

    return Transport


# Parsed once per process (keys, known_hosts lines), by file and its modification stamp.
_parsed_lock = threading.Lock()
_keys: dict[tuple[str, int], Any] = {}


def _key_kwargs(path: Path) -> dict[str, Any]:
    """paramiko's arguments for the private key file `path`: the key parsed once per
    process (paramiko otherwise parses it per connection, trying each key type in turn),
    or the file name when it needs what only paramiko's loader does (a passphrase, a
    certificate beside it)."""
    import paramiko

    try:
        stamp = path.stat().st_mtime_ns
        if Path(f"{path}-cert.pub").exists():
            return {"key_filename": str(path)}
        with _parsed_lock:
            key = _keys.get((str(path), stamp))
            if key is None:
                key = _keys[(str(path), stamp)] = paramiko.PKey.from_path(path)
        return {"pkey": key}
    except (OSError, ValueError, paramiko.SSHException):
        return {"key_filename": str(path)}


# known_hosts files read once per process, not once per host: paramiko's own loader parses
# every key of the file for each connection (and compares each entry with all before it),
# most of the control machine's CPU when 50 hosts share one file.
_known_lines: dict[tuple[str, int, int], list[tuple[list[str], str]]] = {}


def _known_keys(path: Path | None, name: str) -> list[tuple[str, Any]]:
    """The keys that the known_hosts file `path` holds for `name` (`host` or `[host]:port`,
    as OpenSSH writes them; hashed names too), parsed as paramiko keys. Only this host's
    lines are parsed; unreadable lines are skipped, as paramiko and OpenSSH do."""
    import hmac

    from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey
    from paramiko.ssh_exception import SSHException

    if path is None:
        return []
    try:
        st = path.stat()
        cache_key = (str(path), st.st_mtime_ns, st.st_size)
        with _parsed_lock:
            lines = _known_lines.get(cache_key)
            if lines is None:
                lines = []
                for line in path.read_text(errors="replace").splitlines():
                    fields = line.split()
                    if len(fields) >= 3 and not fields[0].startswith(("#", "@")):
                        lines.append((fields[0].split(","), line))
                _known_lines[cache_key] = lines
    except OSError:  # absent or unreadable: it knows no key (strict host keys then refuse)
        return []

    def matches(names: list[str]) -> bool:
        for known in names:
            if known == name:
                return True
            if known.startswith("|1|"):  # hashed with its own salt, as ssh-keygen -H writes it
                try:
                    if hmac.compare_digest(HostKeys.hash_host(name, known), known):
                        return True
                except (ValueError, AssertionError):  # a malformed salt
                    continue
        return False

    keys = []
    for names, line in lines:
        if matches(names):
            try:
                entry = HostKeyEntry.from_line(line)
            except (SSHException, InvalidHostKey, ValueError):
                continue
            if entry is not None and entry.key is not None:
                keys.append((entry.key.get_name(), entry.key))
    return keys


def _quick_socket(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with Nagle's algorithm off: SSH's small messages (the handshake,
    each new session) otherwise wait out a delayed ACK, some 40 ms each, most of a
    no-op run's time."""
    sock = socket.create_connection((address, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(recv, chunks: list[bytes], deadline: float) -> bool:
    """Read a stream to its end; False when the deadline passed first."""
    import socket

    while time.monotonic() < deadline:
        try:
            data = recv(65536)
        except socket.timeout:
            continue
        if not data:
            return True
        chunks.append(data)
    return False
