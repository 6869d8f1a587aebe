"""The host firewall (components/firewall.py, issue #16) on the single pattern's five hosts,
measured the way an outsider and each tier would see it: port scans from this machine (the
control machine), from a host of each role, and from a container on the same network that
is no host of the site. What answers must be exactly the flow matrix the topology declares
(mmdeploy.components.firewall.reachable), nothing more and nothing less; then a change that
would lock the control machine out is rolled back by itself, and `firewall.enabled: false`
removes the rules while verify still reports the exposure.

UDP flows (gossip's UDP half) and VRRP cannot be told apart from a drop by a scan; the
single pattern has neither in use, and the multi/cluster modules show gossip and VRRP work
with the firewall on (test_multi, test_cluster_pattern)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from dataclasses import dataclass

import pytest

import mmdeploy
from mmdeploy import testbed
from mmdeploy.components import firewall
from mmdeploy.inventory import Inventory

from .conftest import inv, on
from .portscan import (
    EXTRA,
    assert_bound_to_private_addresses,
    assert_exactly,
    control_address,
    expected,
    scan_from_container,
    scan_from_here,
    targets,
)

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]  # Grafana cannot be downloaded here
DOC_NET = "192.0.2.0/24"  # a documentation network: only ever a rule, never traffic


@dataclass
class Site:
    path: str
    overrides: list[str]
    inventory: Inventory

    def cli(self, *args: str, check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        sets = [a for o in [*self.overrides, *extra] for a in ("--set", o)]
        return inv(*args, "--inventory", self.path, *sets, check=check)


def deployed(run: subprocess.CompletedProcess) -> dict:
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def site(bed, standin_release):
    # The site test_single leaves (tests/conftest.py SHARED_BEDS), or fresh hosts.
    path = str(bed("single", sudo_user="deploy", share="single-postgresql"))
    overrides = standin_release() + BED_SETTINGS
    s = Site(path, overrides, mmdeploy.load(path, overrides))
    first = deployed(s.cli("deploy", "--yes", "--json"))
    assert first["ok"], [st for st in first["steps"] if st["status"] == "failed"]
    return s


def test_deploy_verifies_and_a_second_deploy_changes_nothing(site):
    checks = json.loads(site.cli("verify", "--json").stdout)
    exposure = [c for c in checks["checks"] if c["name"].startswith("network exposure of")]
    assert len(exposure) == len(site.inventory.hosts), [c["name"] for c in checks["checks"]]
    assert checks["ok"], [c for c in checks["checks"] if not c["ok"]]
    again = deployed(site.cli("deploy", "--yes", "--json"))
    assert again["ok"] and again["changed"] == 0, [s for s in again["steps"] if s["status"] != "ok"]
    for h in site.inventory.hosts:
        assert firewall.MARKER in on(h.name, f"nft list table {firewall.TABLE}")


def test_services_listen_on_their_private_address(site):
    """Mattermost, Prometheus and the exporters listen on the host's private address; only
    SSH and the site on the proxy listen on every interface."""
    assert_bound_to_private_addresses(site.inventory)
    for host, port in [("app1", 8065), ("app1", 8067), ("job1", 9090), ("db1", 9187), ("proxy1", 9113)]:
        address = site.inventory.host(host).private_address
        assert f"{address}:{port}" in on(host, f"ss -Hltn 'sport = :{port}'"), (host, port)


def test_the_control_machine_reaches_exactly_its_flows(site):
    wanted = expected(site.inventory, control_address())
    # SSH everywhere, the site on the proxy, and the ports verify asks directly.
    assert {(h.name, 22) for h in site.inventory.hosts} <= wanted
    assert {("proxy1", 80), ("proxy1", 443)} <= wanted
    assert_exactly(scan_from_here(site.inventory), wanted, "the control machine")


@pytest.mark.parametrize("source", ["proxy1", "app1", "job1", "db1", "db2"])
def test_each_tier_reaches_exactly_its_flows(site, source):
    host = site.inventory.host(source)
    ports = [*firewall.scanned_ports(site.inventory), *EXTRA]
    found = scan_from_container(testbed.container_name(source), targets(site.inventory, ports, skip=source))
    assert_exactly(found, expected(site.inventory, host.private_address), source)


def test_a_host_with_no_role_reaches_only_the_proxy_over_http_and_https(site):
    """The issue's table, measured again from a container on the same network that is no
    host of the site: only 80 and 443 on the proxy answer (SSH is the control machine's)."""
    prefix = testbed.GATEWAY.rsplit(".", 1)[0]
    address, name = f"{prefix}.250", f"{testbed.NETWORK}-outsider"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network", testbed.NETWORK, "--ip", address]
        + ["--entrypoint", "sleep", testbed.IMAGE, "900"],
        check=True,
        capture_output=True,
    )
    try:
        ports = [*range(1, 1025), *firewall.scanned_ports(site.inventory), *EXTRA]
        found = scan_from_container(name, targets(site.inventory, ports))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert expected(site.inventory, address) == {("proxy1", 80), ("proxy1", 443)}
    assert_exactly(found, {("proxy1", 80), ("proxy1", 443)}, "a host with no role")


def live_rules(host: str) -> str:
    """The live table, without its counters' values (they move with every packet)."""
    return re.sub(r"counter packets \d+ bytes \d+", "counter", on(host, f"nft list table {firewall.TABLE}"))


def test_a_ruleset_that_would_lock_out_ssh_is_rolled_back(site):
    """The new ruleset is loaded, then a new SSH connection from this machine must get the
    SSH server's banner before the run confirms. Here app1 takes one SSH connection at a
    time from this machine (conntrack's count, in a table of the test's own): the run's own
    (its host lock's, which its steps share) is in, the confirmation probe, a second, is
    dropped, exactly as if the new rules refused SSH. The run says ROLLED BACK and app1 is
    on its previous rules; without the obstacle the same change goes through, and the
    site's own settings come back."""
    before = live_rules("app1")
    block = (
        "nft add table inet mmtest && "
        "nft add chain inet mmtest input '{ type filter hook input priority -10; }' && "
        f"nft add rule inet mmtest input ip saddr {control_address()} tcp dport 22 ct state new ct count over 1 drop"
    )
    on("app1", block)
    change = (f"firewall.admin_cidrs=[{DOC_NET}]",)
    try:
        run = site.cli("deploy", "--limit", "app1", "--only", "firewall", "--yes", check=False, extra=change)
    finally:
        on("app1", "nft delete table inet mmtest")
    said = run.stdout + run.stderr
    assert run.returncode != 0, said
    assert "firewall ROLLED BACK" in said and "would lock the control machine out" in said, said
    assert live_rules("app1") == before and DOC_NET not in on("app1", f"cat {firewall.RULESET}")
    # Nothing in the way: the change is confirmed and stays.
    applied = deployed(site.cli("deploy", "--limit", "app1", "--only", "firewall", "--yes", "--json", extra=change))
    assert applied["ok"] and applied["changed"] == 1, applied["steps"]
    assert DOC_NET in live_rules("app1")
    back = deployed(site.cli("deploy", "--limit", "app1", "--only", "firewall", "--yes", "--json"))
    assert back["ok"] and back["changed"] == 1 and live_rules("app1") == before, back["steps"]


def test_firewall_off_removes_the_rules_and_verify_reports_the_exposure(site):
    off = ("firewall.enabled=false",)
    run = deployed(site.cli("deploy", "--yes", "--json", extra=off))
    assert run["ok"], [s for s in run["steps"] if s["status"] == "failed"]
    for h in site.inventory.hosts:
        assert "mmdeploy" not in on(h.name, "nft list tables")
    checks = json.loads(site.cli("verify", "--json", check=False, extra=off).stdout)
    exposure = {c["name"]: c for c in checks["checks"] if c["name"].startswith("network exposure of")}
    # The database and the exporters answer this machine, which has no business with them.
    db1 = exposure["network exposure of db1 from the control machine"]
    assert db1["ok"] and db1["warning"] and "open beyond the flow matrix" in (db1["detail"] or ""), db1
    assert "5432" in db1["detail"]
    on_again = deployed(site.cli("deploy", "--yes", "--json"))
    assert on_again["ok"], [s for s in on_again["steps"] if s["status"] == "failed"]
    assert_exactly(scan_from_here(site.inventory), expected(site.inventory, control_address()), "the control machine")
    last = deployed(site.cli("deploy", "--yes", "--json"))
    assert last["ok"] and last["changed"] == 0, [s for s in last["steps"] if s["status"] != "ok"]


def test_outbound_restricted_lets_out_only_what_the_site_needs(site):
    """firewall.outbound: restricted: the site still works (verify passes, a second deploy
    changes nothing), and app1 can no longer open a connection to a port of this machine
    that nothing in the site needs, until firewall.outbound_allow names this machine."""
    listener = socket.create_server((control_address(), 0))  # this machine, on the bed network
    port = listener.getsockname()[1]
    probe = [("control", control_address(), port)]
    try:
        assert ("control", port) in scan_from_container(testbed.container_name("app1"), probe)["open"]
        restricted = ("firewall.outbound=restricted",)
        run = deployed(site.cli("deploy", "--yes", "--json", extra=restricted))
        assert run["ok"], [s for s in run["steps"] if s["status"] == "failed"]
        assert "chain output" in on("app1", f"nft list table {firewall.TABLE}")
        checks = json.loads(site.cli("verify", "--json", check=False, extra=restricted).stdout)
        assert checks["ok"], [c for c in checks["checks"] if not c["ok"]]
        again = deployed(site.cli("deploy", "--yes", "--json", extra=restricted))
        assert again["ok"] and again["changed"] == 0, [s for s in again["steps"] if s["status"] != "ok"]
        assert ("control", port) in scan_from_container(testbed.container_name("app1"), probe)["filtered"]
        allowed = (*restricted, f"firewall.outbound_allow=[{control_address()}]")
        run = deployed(site.cli("deploy", "--only", "firewall", "--yes", "--json", extra=allowed))
        assert run["ok"] and run["changed"] == len(site.inventory.hosts), run["steps"]
        assert ("control", port) in scan_from_container(testbed.container_name("app1"), probe)["open"]
    finally:
        listener.close()
        back = deployed(site.cli("deploy", "--only", "firewall", "--yes", "--json"))
        assert back["ok"] and "chain output" not in on("app1", f"nft list table {firewall.TABLE}")
