"""Remote.run on a connection shared by threads (day-2 operations run a table's checksum
per thread on one DB host): at most remote.SESSIONS sessions at once, a session the host
refuses for a moment (OpenSSH's MaxSessions) asked for again, and a refusal never closes
the connection under the other threads' commands. The SSH transport is a fake that
behaves like paramiko's at these boundaries: open_session raises ChannelException when
the server refuses, a channel gives its output, then EOF, then its exit status."""

from __future__ import annotations

import threading
import time

import paramiko
import pytest

from mmdeploy import remote
from mmdeploy.remote import Remote, Unreachable


class FakeChannel:
    def __init__(self, transport):
        self.transport, self.status_event = transport, threading.Event()
        self.out = [b"ok\n"]

    def settimeout(self, _):
        pass

    def exec_command(self, _):
        pass

    def sendall(self, _):
        pass

    def shutdown_write(self):
        time.sleep(0.05)  # the command runs a moment: the others overlap it
        self.status_event.set()

    def recv(self, _):
        return self.out.pop() if self.out else b""

    def recv_stderr(self, _):
        return b""

    def recv_exit_status(self):
        return 0

    def close(self):
        with self.transport.lock:
            self.transport.open -= 1


class FakeTransport:
    def __init__(self, refuse: int = 0, limit: int = 10):
        self.lock, self.open, self.peak, self.refuse, self.limit, self.refused = (
            threading.Lock(),
            0,
            0,
            refuse,
            limit,
            0,
        )
        self.active = True

    def is_active(self):
        return self.active

    def open_session(self, timeout):
        with self.lock:
            if self.refuse > 0 or self.open >= self.limit:
                self.refuse -= 1
                self.refused += 1
                raise paramiko.ChannelException(2, "Connect failed")
            self.open += 1
            self.peak = max(self.peak, self.open)
        return FakeChannel(self)


class FakeConnection:
    def __init__(self, transport):
        self.client = type("Client", (), {"get_transport": lambda _self: transport})()
        self.closed = False

    def close(self):
        self.closed = True


def remote_on(transport, inventory) -> tuple[Remote, FakeConnection]:
    r = Remote(inventory.hosts[0], lambda s: s)
    conn = FakeConnection(transport)
    r._conn = conn
    return r, conn


@pytest.fixture
def inventory(write_inventory):
    import mmdeploy

    from .conftest import SINGLE

    return mmdeploy.load(write_inventory(SINGLE))


def test_threads_sharing_a_connection_stay_under_the_session_limit(inventory):
    transport = FakeTransport(limit=remote.SESSIONS)
    r, conn = remote_on(transport, inventory)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(r.run("true", timeout=30))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [x.stdout for x in results] == ["ok\n"] * 20
    assert transport.peak == remote.SESSIONS and transport.refused == 0 and not conn.closed


def test_a_refused_session_is_asked_for_again_without_closing_the_connection(inventory):
    transport = FakeTransport(refuse=2)
    r, conn = remote_on(transport, inventory)
    assert r.run("true", timeout=30).stdout == "ok\n"
    assert transport.refused == 2 and not conn.closed


def test_a_host_that_keeps_refusing_fails_the_command_but_not_the_others(inventory):
    transport = FakeTransport(refuse=remote.SESSION_RETRIES)
    r, conn = remote_on(transport, inventory)
    with pytest.raises(Unreachable, match="no SSH session"):
        r.run("true", timeout=30, what="checksum")
    assert not conn.closed  # the connection lives: commands in flight on it finish
    assert r.run("true", timeout=30).ok


def test_impatient_caps_the_connect_timeout_of_a_copy(write_inventory):
    """A host whose settings hold lists (every real one) is copied, not hashed; the copy's
    SSH connect time-out is capped, the inventory's host keeps its own."""
    from mmdeploy import inventory

    from .conftest import SINGLE

    host = inventory.load(write_inventory(SINGLE)).hosts[0]
    quick = remote.impatient(host, 1.5)
    assert quick.ssh.connect_timeout == 1.5 and host.ssh.connect_timeout == 10.0
    assert quick.name == host.name and quick.settings is host.settings
    assert remote.impatient(host, 60).ssh.connect_timeout == 10.0  # never longer than the inventory's
