"""Run locks (locks.py): a second deploy, failover or rejoin on the same inventory is
refused with the holder's name, on the control machine and on the hosts (two operators on
two machines); a lock left by a dead process is taken over. The host side runs the real
lock script with the local bash (LocalRemote), on lock files in a temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mmdeploy
from mmdeploy import distros, locks
from mmdeploy.facts import HOST_FACTS, FactCache

from .localremote import LocalRemote

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def inv(write_inventory, tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HOST_LOCK", str(tmp_path / "host.lock"))
    monkeypatch.setattr(locks, "HOST_HOLDER", str(tmp_path / "host.holder"))
    monkeypatch.setattr(locks, "SCRIPTS_LOCK", str(tmp_path / "scripts.lock"))
    monkeypatch.setattr(locks, "Remote", LocalRemote)
    return mmdeploy.load(
        write_inventory("""\
        pattern: single
        hosts:
          - {name: one, address: 192.0.2.10, roles: [proxy, app, jobserver, monitoring, db]}
        """)
    )


def _holder_process(inventory_path, tmp_path) -> subprocess.Popen:
    """Another process on this machine that takes the control-machine lock and waits."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from mmdeploy import inventory, locks
        from tests.unit.localremote import LocalRemote
        locks.HOST_LOCK, locks.HOST_HOLDER, locks.Remote = {str(tmp_path / "host.lock")!r}, {str(tmp_path / "host.holder")!r}, LocalRemote
        locks.SCRIPTS_LOCK = {str(tmp_path / "scripts.lock")!r}
        with locks.acquire(inventory.load({str(inventory_path)!r}), "deploy", str):
            print("held", flush=True)
            time.sleep(60)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_is_refused_naming_the_holder(inv, tmp_path):
    holder = _holder_process(inv.path, tmp_path)
    try:
        with pytest.raises(locks.LockHeld) as e:
            locks.acquire(inv, "failover-db", str)
        assert f"pid {holder.pid}" in str(e.value) and "`deploy`" in str(e.value)
        assert e.value.exit_code == 3
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(inv, tmp_path):
    holder = _holder_process(inv.path, tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.2)  # its host-side holder sees its input end
    with locks.acquire(inv, "deploy", str) as lock:
        assert list(lock.held) == ["one"]
        assert json.loads(open(tmp_path / "host.holder").read())["pid"] == os.getpid()
    assert not (tmp_path / "host.holder").exists()


def test_a_host_locked_from_another_machine_is_refused(inv, tmp_path):
    """Another operator's run, from another control machine, holds the host's lock."""
    other = {
        "what": "db.rejoin",
        "user": "alice",
        "machine": "laptop",
        "machine_id": "another-machine",
        "pid": 4242,
        "since": "today",
        "run": "abc",
    }
    first, held = LocalRemote(inv.hosts[0]).hold(locks._host_script(other), 60, "lock")
    assert first.startswith("LOCKED")
    try:
        with pytest.raises(locks.LockHeld, match=r"one: locked by `db.rejoin` by alice@laptop \(pid 4242"):
            locks.acquire(inv, "deploy", str)
        # Refused as a whole: this machine's lock was not kept.
        fd = os.open(locks.lock_path(inv), os.O_RDWR)
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        held.close()
    with locks.acquire(inv, "deploy", str):
        pass


def test_a_stale_host_lock_of_a_dead_local_process_is_taken_over(inv, tmp_path):
    """The host still holds a lock for a process of this machine that is gone (its
    connection was cut without the host noticing): it is ended and taken over."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = {**locks.holder_info("deploy"), "pid": dead.pid}
    first, held = LocalRemote(inv.hosts[0]).hold(locks._host_script(stale), 60, "lock")
    assert first.startswith("LOCKED")
    with locks.acquire(inv, "deploy", str) as lock:
        assert "one" in lock.held
    held.close()


def test_an_unreachable_host_is_left_to_the_run(inv, monkeypatch):
    monkeypatch.setattr(locks, "Remote", lambda host, redact, log: LocalRemote(host, fail_connect=True))
    with locks.acquire(inv, "deploy", str) as lock:
        assert lock.held == {} and "cannot connect" in lock.skipped["one"]


def test_deploy_failover_and_rejoin_take_the_lock_plan_does_not(monkeypatch):
    import inspect

    from mmdeploy import api

    assert '_locked(inventory, "deploy"' in inspect.getsource(api._run)
    assert '_locked(inventory, "failover-db"' in inspect.getsource(api.failover_db)
    assert '_locked(inventory, "db.rejoin"' in inspect.getsource(api.rejoin)
    assert 'if mode == "plan"' in inspect.getsource(api._run)


def test_a_run_waits_for_the_commands_an_interrupted_run_left_running(inv, tmp_path, capsys):
    """A script of a killed run still runs on the host (holding the scripts lock, shared,
    as every script does): the next run takes the host only once it has finished."""
    orphan = subprocess.Popen(["flock", "-s", str(tmp_path / "scripts.lock"), "sleep", "2"])
    time.sleep(0.2)
    t0 = time.monotonic()
    with locks.acquire(inv, "deploy", str) as lock:
        assert "one" in lock.held
        assert orphan.poll() == 0 and time.monotonic() - t0 >= 1.5
    orphan.wait()


def test_every_remote_script_holds_the_scripts_lock():
    import inspect

    from mmdeploy import remote

    assert 'shell = f"flock -s {SCRIPTS_LOCK} timeout' in inspect.getsource(remote.Remote.run)


def test_the_lock_brings_the_host_facts_so_reading_them_costs_no_round_trip(inv):
    """The run lock's script reads the host facts (distribution, memory, CPUs) on the host,
    where the run's first facts would have read them in a round trip of their own."""
    with locks.acquire(inv, "deploy", str) as lock:
        ((remote, _held),) = lock.held.values()
        assert set(remote.host_facts) == set(HOST_FACTS.values())
        cache = FactCache(remote)
        trips = remote.round_trips
        os_id, version = distros.parse_os(cache.host("os"))
        assert os_id == _local_os()[0] and version == _local_os()[1]
        assert int(cache.host("mem_kb")) > 0 and int(cache.host("cpus")) == os.cpu_count()
        assert remote.round_trips == trips  # read with the lock, not again
        # The same facts as a batch of facts reads them.
        fresh = FactCache(LocalRemote(remote.host)).get(HOST_FACTS.values())
        assert {c: f for c, f in fresh.items()} == {c: cache.get([c])[c] for c in HOST_FACTS.values()}


def _local_os() -> tuple[str, str]:
    fields = dict(line.split("=", 1) for line in open("/etc/os-release").read().splitlines() if "=" in line)
    return fields["ID"].strip('"'), fields["VERSION_ID"].strip('"')
