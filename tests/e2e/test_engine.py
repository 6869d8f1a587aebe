"""The engine on the test bed: the demo component (package, user, directory, templates,
unit file, service, handler) deployed over real SSH onto five Debian containers."""

import re
import urllib.request

import pytest

import mmdeploy

from .conftest import inv, on

pytestmark = pytest.mark.e2e
DEMO = ("--set", "demo.enabled=true", "--only", "base,demo")


@pytest.fixture(scope="module")
def single(bed):
    # Fresh hosts: an earlier module of the session may have left the demo on one
    # (test_hardening does), and this module counts a cold deploy's changes.
    path = str(bed("single", fresh=True))
    first = inv("deploy", "--inventory", path, *DEMO, "--yes")
    return path, first


@pytest.fixture(scope="module")
def addr(single):
    """Host name -> address on this bed."""
    return {h.name: h.address for h in mmdeploy.load(single[0]).hosts}


def changed_total(output: str) -> int:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    assert total[1] == "0", output
    return int(total[0])


def page(address: str, port: int = 8080) -> str:
    return urllib.request.urlopen(f"http://{address}:{port}/", timeout=5).read().decode()


def starts(host: str) -> int:
    return int(on(host, "journalctl -q -u mmdeploy-demo --no-pager | grep -c 'Started mmdeploy-demo' || true"))


def test_demo_deploys_on_every_host(single, addr):
    path, first = single
    assert changed_total(first.stdout) > 5 * 8
    for host in ("proxy1", "db2"):
        assert "mmdeploy demo" in page(addr[host])
        assert on(host, "systemctl is-active mmdeploy-demo").strip() == "active"
        assert on(host, "stat -c '%U %a' /srv/mmdeploy-demo").strip() == "mmdemo 755"
    verify = inv("verify", "--inventory", path, *DEMO)
    assert verify.stdout.count("ok   demo answers on") == 5


def test_second_deploy_changes_nothing(single):
    path, _ = single
    again = inv("deploy", "--inventory", path, *DEMO, "--yes")
    assert changed_total(again.stdout) == 0


def test_edited_template_diffs_in_plan_and_restarts_once(single, addr):
    path, _ = single
    before = {h: starts(h) for h in ("app1", "db1")}
    plan = inv("plan", "--inventory", path, *DEMO, "--set", "demo.port=8081")
    assert "-DEMO_PORT=8080" in plan.stdout and "+DEMO_PORT=8081" in plan.stdout
    assert "would run (notified)" in plan.stdout
    assert "mmdeploy demo" in page(addr["app1"], 8080)  # plan changed nothing
    inv("deploy", "--inventory", path, *DEMO, "--set", "demo.port=8081", "--yes")
    assert "mmdeploy demo" in page(addr["app1"], 8081)
    assert {h: starts(h) - n for h, n in before.items()} == {"app1": 1, "db1": 1}
    inv("deploy", "--inventory", path, *DEMO, "--yes")  # back to 8080 for the other tests


def test_host_with_closed_ssh_port_fails_alone(single, addr):
    path, _ = single
    on("db2", "systemctl stop ssh.service ssh.socket 2>/dev/null; true")
    try:
        run = inv("deploy", "--inventory", path, *DEMO, "--set", "demo.message=partition", "--yes", check=False)
    finally:
        on("db2", "systemctl start ssh.service")
    assert run.returncode == 1
    assert re.search(rf"^db2: FAILED: cannot connect over SSH to root@{addr['db2']}:22", run.stdout, re.M), run.stdout
    for host in ("proxy1", "app1", "job1", "db1"):
        assert "partition" in page(addr[host])
    assert "partition" not in page(addr["db2"])
    inv("deploy", "--inventory", path, *DEMO, "--yes")


def test_limit_touches_only_the_named_hosts(single, addr):
    path, _ = single
    run = inv("deploy", "--inventory", path, *DEMO, "--set", "demo.message=limited", "--limit", "app1,job1", "--yes")
    assert sorted(re.findall(r"^(\w+)\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+s$", run.stdout, re.M)) == [
        "app1",
        "job1",
        "total",
    ]
    assert "limited" in page(addr["app1"]) and "limited" in page(addr["job1"])
    assert "limited" not in page(addr["proxy1"]) and "limited" not in page(addr["db1"])
    inv("deploy", "--inventory", path, *DEMO, "--yes")


def test_interactive_deploy_shows_the_plan_and_asks(single, addr):
    """On a terminal, deploy shows the plan and asks; 'n' applies nothing."""
    import os
    import pty
    import subprocess
    import sys

    from .conftest import ROOT

    path, _ = single
    leader, follower = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "invoke", "deploy", "--inventory", path, *DEMO, "--set", "demo.message=asked"],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while b"[y/N]" not in seen:
        chunk = os.read(leader, 4096)
        assert chunk, seen.decode()
        seen += chunk
    os.write(leader, b"n\n")
    assert p.wait(timeout=30) == 1
    text = seen.decode()
    assert "+<p>asked</p>" in text and "Apply these" in text
    assert "asked" not in page(addr["app1"])


def test_every_command_has_a_time_limit(single):
    """A command that runs too long is stopped on the host at its limit; a host that stops
    answering mid-command (packets dropped, not refused) costs the limit, not forever."""
    import subprocess
    import time

    from mmdeploy import testbed
    from mmdeploy.remote import Remote, TimedOut, Unreachable

    inventory = mmdeploy.load(single[0])
    host = inventory.host("app1")
    remote = Remote(host, lambda s: s)
    try:
        t0 = time.monotonic()
        result = remote.run("sleep 30", timeout=2, what="a long sleep")
        assert result.rc == 124 and time.monotonic() - t0 < 10
        assert remote.run("echo still usable", timeout=10).stdout.strip() == "still usable"
        subprocess.run(
            ["docker", "network", "disconnect", testbed.NETWORK, testbed.container_name("app1")],
            check=True,
            capture_output=True,
        )
        try:
            t0 = time.monotonic()
            # Either the session cannot open, or it opened and the command never answers.
            with pytest.raises((TimedOut, Unreachable), match=r"a hung probe.* within 3 s"):
                remote.run("sleep 1; echo done", timeout=3, what="a hung probe")
            assert time.monotonic() - t0 < 3 + 15
        finally:
            subprocess.run(
                ["docker", "network", "connect", "--ip", host.address, testbed.NETWORK, testbed.container_name("app1")],
                check=True,
                capture_output=True,
            )
        # The connection was dropped; the next command reconnects.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert remote.run("echo back", timeout=10).stdout.strip() == "back"
                break
            except mmdeploy.MMDeployError:
                assert time.monotonic() < deadline
                time.sleep(1)
    finally:
        remote.close()


def test_fresh_hosts_install_from_the_images_package_lists(single):
    """The bed's image carries the package lists it was built with (mmdeploy.testbed.image),
    so a cold deploy installs without `apt-get update` on every host at once: such a burst
    made the bed's apt-cacher-ng 3.7.4 answer 503s and bodies cut short, and apt waited one
    out for minutes. The deploy above installed busybox on these hosts; apt never rewrote
    their lists (the directory is as old as the image, older than the boot)."""
    for host in ("proxy1", "db1"):
        assert on(host, "dpkg-query -W -f='${db:Status-Abbrev}' busybox").strip() == "ii"
        lists, booted = on(host, "stat -c %Y /var/lib/apt/lists /proc/1").split()
        assert int(lists) < int(booted), f"{host} ran apt-get update: its package lists are newer than its boot"


def test_a_cold_deploy_fetches_ahead_only_what_is_not_installed_at_once(single):
    """busybox, the demo's package, was not fetched ahead: the demo comes right after base,
    whose component would start the download, so its own install fetched it at once
    (runner._Pipelines._fetch_ahead; the unit tests cover the packages it does fetch)."""
    _, first = single
    assert "fetching" not in first.stdout and "busybox" in first.stdout


def test_fetching_ahead_runs_detached_takes_no_lock_and_fills_apts_cache(single):
    """The download starts and the command returns at once, holding neither apt's locks
    nor the run's script lock (a later run does not wait for it); a set that apt cannot
    resolve at once is fetched per component; each file reaches apt's cache only whole and
    verified, and the install then downloads nothing."""
    import time

    from mmdeploy.ops.apt import AHEAD_DIR, fetch_ahead_script
    from mmdeploy.remote import SCRIPTS_LOCK, Remote

    remote = Remote(mmdeploy.load(single[0]).host("db2"), lambda s: s)
    try:
        on("db2", "rm -f /var/cache/apt/archives/hello_*.deb")
        t0 = time.monotonic()
        # Four resolutions, a second or so; the second "hello" finds it in apt's cache.
        groups = [["no-such-package-here"], ["hello"], ["hello"], ["nor-this-one"]]
        assert remote.run(fetch_ahead_script(groups), timeout=30).ok
        assert time.monotonic() - t0 < 10
        # At once, while it resolves: the lock is free and the fetcher holds no file but its log.
        held = on(
            "db2",
            f"flock -x -n {SCRIPTS_LOCK} true && echo free; "
            "for p in $(pgrep -f mmdeploy-fetch-ahea[d]); do readlink /proc/$p/fd/* || true; done",
        ).split()
        assert held[0] == "free" and set(held[1:]) <= {"/dev/null", "/var/log/mmdeploy/fetch-ahead.log"}, held
        deadline = time.monotonic() + 120
        while on("db2", f"test -e {AHEAD_DIR} && echo staging || true").strip():
            assert time.monotonic() < deadline, on("db2", "cat /var/log/mmdeploy/fetch-ahead.log")
            time.sleep(0.5)
        log = on("db2", "cat /var/log/mmdeploy/fetch-ahead.log")
        assert "Unable to locate package nor-this-one" in log and "Download complete" in log
        assert log.count("Get:") == 1 and "Need to get 0 B" in log, log  # hello fetched once
        assert on("db2", "ls /var/cache/apt/archives/").count("hello_") == 1
        installed = remote.run("apt-get -q -y install --no-install-recommends hello", timeout=300)
        assert installed.ok and "Need to get 0 B" in installed.stdout, installed.stdout
    finally:
        remote.run("apt-get -q -y purge hello", timeout=300)
        remote.close()
