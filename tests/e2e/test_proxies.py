"""The proxy tier on the bed's `proxies` layout (proxy1, proxy2 in front of app1, app2):
keepalived with two floating addresses (active-active), NGINX on both proxies, HAProxy
balancing a layer. The demo component stands in for the app servers (port 8065, with a
static /api/v4/system/ping) and, declared as a Balanced layer by a test-only component
(balanced_demo.py), for a balanced service; only the job server (app1) may use it.

Runs through the Python API in-process, because the registry is extended with the
test-only component. The last test kills a proxy: it runs last."""

import os
import re
import socket
import subprocess
import time
from io import StringIO

import pytest
import yaml

import mmdeploy
from mmdeploy import registry as registry_module
from mmdeploy import testbed
from mmdeploy.components.haproxy import server_states

from .balanced_demo import registry_with_layer
from .conftest import ROOT, metric, on
from .probe import Probe

pytestmark = pytest.mark.e2e
# The host firewall too: it is on by default, so VRRP between the proxies, NGINX to the
# app servers and the balanced layer are tested through the rules a real deploy loads.
ONLY = ["base", "firewall", "node-exporter", "demo", "nginx", "haproxy", "keepalived", "keepalived-start"]
PING = '{"status":"OK"}'


@pytest.fixture(scope="module")
def site(bed):
    with pytest.MonkeyPatch.context() as patch:
        extended = registry_with_layer()
        patch.setattr(registry_module, "registry", lambda: extended)
        written = bed("proxies", fresh=True)
        doc = yaml.safe_load(written.read_text())
        net = doc["hosts"][0]["address"].rsplit(".", 1)[0]
        doc["settings"]["proxy"] = {"vip": [f"{net}.100/24", f"{net}.101/24"]}
        doc["settings"]["demo"] = {"port": 8065}
        # This machine reads keepalived's state from the proxies' node exporter, as a
        # central Prometheus outside the deployment would: the operator allows it so.
        doc["settings"]["firewall"] = {"monitoring_cidrs": [testbed.GATEWAY]}
        for h in doc["hosts"]:
            if h["name"].startswith("app"):  # the demo on the app servers only
                h["vars"] = {"demo": {"enabled": True}}
        path = testbed.path_for(ROOT, "proxies-e2e")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        inv = mmdeploy.load(path)
        t0 = time.monotonic()
        report = mmdeploy.deploy(inv, only=ONLY, out=StringIO())
        print(f"\ncold deploy of {','.join(ONLY)} on 4 hosts: {time.monotonic() - t0:.1f}s")
        assert not report.failed, [r for r in report.results if r.status == "failed"]
        for app in ("app1", "app2"):  # Mattermost's health path, served by the demo
            on(
                app,
                f"mkdir -p /srv/mmdeploy-demo/api/v4/system && printf '%s' '{PING}' "
                "> /srv/mmdeploy-demo/api/v4/system/ping",
            )
        yield inv, [v.split("/")[0] for v in inv.settings.proxy.vips]


def holds(host: str, address: str) -> bool:
    out = on(host, "ip -o -4 addr show")
    return any(line.split()[3].split("/")[0] == address for line in out.splitlines())


def wait_for(condition, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def test_second_deploy_changes_nothing(site):
    inv, _ = site
    report = mmdeploy.deploy(inv, only=ONLY, out=StringIO())
    assert not report.failed and report.changed == 0, [r for r in report.results if r.status != "ok"]


def test_each_address_has_one_holder_and_the_site_answers_on_it(site):
    inv, (vip1, vip2) = site
    results = mmdeploy.verify(inv, only=["keepalived", "haproxy", "nginx"], out=StringIO())
    assert [r.problem for r in results if not r.ok] == []
    assert {r.name for r in results} >= {
        f"exactly one proxy holds {vip1}",
        f"exactly one proxy holds {vip2}",
        f"Mattermost answers through {vip1} over HTTPS",
    }
    # Active-active: each proxy holds the address it is preferred for.
    assert holds("proxy1", vip1) and not holds("proxy1", vip2)
    assert holds("proxy2", vip2) and not holds("proxy2", vip1)


def test_vrrp_goes_only_between_the_proxies(site):
    """Every VRRP packet on the bed's interfaces, caught for 3 s: unicast, proxy to proxy."""
    if os.geteuid() != 0:
        pytest.skip("capturing the bed's packets needs root on the control machine")
    inv, _ = site
    proxies = {h.private_address for h in inv.with_role("proxy")}
    sockets = []
    for h in inv.hosts:  # the host side of each container's interface
        index = int(
            subprocess.run(
                ["docker", "exec", testbed.container_name(h.name), "cat", "/sys/class/net/eth0/iflink"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((socket.if_indextoname(index), 0))
        s.setblocking(False)
        sockets.append(s)
    seen: dict[tuple[str, str, int], int] = {}
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for s in sockets:
            try:
                frame = s.recv(4096)
            except BlockingIOError:
                continue
            ip = frame[14:]
            if frame[12:14] == b"\x08\x00" and ip[9] == 112:  # IPv4, protocol VRRP
                key = (socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[20] >> 4)
                seen[key] = seen.get(key, 0) + 1
        time.sleep(0.005)
    for s in sockets:
        s.close()
    print(f"\nVRRP packets in 3 s (source, destination, version): {seen}")
    assert seen, "no VRRP advert seen"
    for src, dst, version in seen:
        assert src in proxies and dst in proxies and src != dst, (src, dst)
        assert version == 3


def test_state_reaches_the_node_exporter(site):
    inv, (vip1, vip2) = site
    proxy1, proxy2 = inv.host("proxy1").address, inv.host("proxy2").address
    assert metric(proxy1, 9100, f'keepalived_vrrp_state{{instance="mm_vip1",vip="{vip1}"}} 2')
    assert metric(proxy1, 9100, f'keepalived_vrrp_state{{instance="mm_vip2",vip="{vip2}"}} 1')
    assert metric(proxy2, 9100, f'keepalived_vrrp_state{{instance="mm_vip2",vip="{vip2}"}} 2')
    page = on(
        "proxy2", f"curl -s http://{inv.host('proxy2').private_address}:9100/metrics"
    )  # the exporter listens on the private address
    assert re.search(
        rf'^keepalived_vrrp_transitions_total\{{instance="mm_vip1",vip="{re.escape(vip1)}"\}} \d+$', page, re.M
    )


def curl_from(host: str, url: str) -> tuple[int, str]:
    p = subprocess.run(
        ["docker", "exec", testbed.container_name(host), "curl", "-sS", "--max-time", "5", url],
        capture_output=True,
        text=True,
    )
    return p.returncode, p.stdout + p.stderr


def test_haproxy_serves_the_layer_to_its_clients_only(site):
    inv, (vip1, vip2) = site
    for vip in (vip1, vip2):
        rc, page = curl_from("app1", f"http://{vip}:8065/")  # the job server: a client
        assert rc == 0 and "mmdeploy demo" in page, page
        rc, page = curl_from("app2", f"http://{vip}:8065/")  # an app server only: refused
        assert rc != 0 and "mmdeploy demo" not in page, (rc, page)
    # Its metrics: for the monitoring host (app1), not for others.
    rc, page = curl_from("app1", f"http://{inv.host('proxy2').private_address}:8405/metrics")
    assert rc == 0 and 'haproxy_backend_active_servers{proxy="demo"} 2' in page, page[-500:]
    rc, page = curl_from("app2", f"http://{inv.host('proxy2').private_address}:8405/metrics")
    assert rc != 0


def requests_from_app1(url: str, count: int) -> list[str]:
    script = (
        f"for i in $(seq {count}); do curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 5 {url}; sleep 0.05; done"
    )
    return on("app1", script).split()


def test_haproxy_keeps_answering_when_a_backend_stops(site):
    inv, (vip1, _) = site
    holder = "proxy1" if holds("proxy1", vip1) else "proxy2"

    def app2_down() -> bool:
        return server_states(on(holder, "curl -s http://127.0.0.1:8405/metrics")).get(("demo", "app2")) is False

    on("app2", "systemctl stop mmdeploy-demo")
    try:
        # Requests while HAProxy has not yet noticed: connections refused by app2 are
        # retried on app1 (redispatch).
        during = requests_from_app1(f"http://{vip1}:8065/", 40)
        marked = wait_for(app2_down, 15, "HAProxy marks app2 down")
        after = requests_from_app1(f"http://{vip1}:8065/", 100)
        print(
            f"\nbackend stopped: marked down after {marked:.1f}s more; failed requests before: "
            f"{sum(c != '200' for c in during)}/40, after: {sum(c != '200' for c in after)}/100"
        )
        assert after == ["200"] * 100
        assert during == ["200"] * 40
    finally:
        on("app2", "systemctl start mmdeploy-demo")
    wait_for(
        lambda: server_states(on(holder, "curl -s http://127.0.0.1:8405/metrics")).get(("demo", "app2")),
        15,
        "HAProxy takes app2 back",
    )


def test_nginx_stopped_on_a_holder_gives_its_address_away(site):
    """The track script asks NGINX itself: a stopped NGINX is a FAULT, not just a dead host."""
    inv, (vip1, vip2) = site
    assert holds("proxy2", vip2)
    on("proxy2", "systemctl stop nginx")
    try:
        moved = wait_for(lambda: holds("proxy1", vip2), 10, f"{vip2} moves to proxy1")
        print(f"\nNGINX stopped on the holder of {vip2}: the address moved in {moved:.1f}s")
        assert not holds("proxy2", vip2)
    finally:
        on("proxy2", "systemctl start nginx")
    assert metric(inv.host("proxy2").address, 9100, f'keepalived_vrrp_state{{instance="mm_vip2",vip="{vip2}"}} 1')
    time.sleep(3)  # back as a backup, and with nopreempt it leaves the address where it is
    assert holds("proxy1", vip2) and not holds("proxy2", vip2)


def test_killed_holder_moves_its_address_and_recovery_does_not_move_it_back(site):
    inv, (vip1, vip2) = site
    assert holds("proxy1", vip1)
    before = on("proxy2", "cat /var/lib/mmdeploy/keepalived/mm_vip1.transitions").strip()
    probe = Probe(vip1, inv.settings.domain)
    probe.start()
    try:
        time.sleep(2)
        killed = time.monotonic()
        subprocess.run(["docker", "kill", testbed.container_name("proxy1")], check=True, capture_output=True)
        wait_for(lambda: probe.recovered_after(killed), 30, f"{vip1} answers again")
        time.sleep(2)
    finally:
        probe.stop.set()
        probe.join()
    gap = probe.gap_after(killed)
    failed = sum(not ok for t, ok in probe.results if t > killed)
    print(
        f"\nVIP failover after docker kill of its holder: {gap:.2f}s without an answer "
        f"({failed} failed of {len(probe.results)} probes, one every 50 ms plus its own time)"
    )
    assert holds("proxy2", vip1) and holds("proxy2", vip2)
    assert gap <= 3.0, f"failover took {gap:.2f}s"
    results = mmdeploy.verify(inv, only=["keepalived"], out=StringIO())
    assert [r.problem for r in results if not r.ok] == []
    assert int(on("proxy2", "cat /var/lib/mmdeploy/keepalived/mm_vip1.transitions")) > int(before)

    # The killed proxy comes back as a backup; with nopreempt the addresses stay put.
    subprocess.run(["docker", "start", testbed.container_name("proxy1")], check=True, capture_output=True)
    wait_for(
        lambda: (
            subprocess.run(
                ["docker", "exec", testbed.container_name("proxy1"), "systemctl", "is-active", "keepalived"],
                capture_output=True,
            ).returncode
            == 0
        ),
        60,
        "keepalived runs again on proxy1",
    )
    proxy1 = inv.host("proxy1").address
    assert metric(proxy1, 9100, f'keepalived_vrrp_state{{instance="mm_vip1",vip="{vip1}"}} 1', timeout=60)
    assert metric(proxy1, 9100, f'keepalived_vrrp_state{{instance="mm_vip2",vip="{vip2}"}} 1', timeout=60)
    time.sleep(5)  # many advert intervals: a preempting node would have taken it back by now
    assert holds("proxy2", vip1) and holds("proxy2", vip2)
    assert not holds("proxy1", vip1) and not holds("proxy1", vip2)
