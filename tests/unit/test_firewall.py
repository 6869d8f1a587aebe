"""The host firewall: the flow matrix derived from the components' declarations (single,
multi and cluster layouts), the nftables ruleset rendered from it, the safe apply (rolled
back unless confirmed), the firewall switched off, validation, and verify's exposure
check from the control machine (probes replaced by a fake)."""

import base64
import hashlib
import os
import re
import shutil
import subprocess

import pytest

import mmdeploy
from mmdeploy import inventory
from mmdeploy.component import ADMIN, CONTROL, Context, Info, Warn
from mmdeploy.components import firewall as fw
from mmdeploy.errors import InventoryError, StepFailed
from mmdeploy.facts import Fact
from mmdeploy.ops import Command, Packages, Service
from mmdeploy.registry import registry
from mmdeploy.remote import Result, Unreachable
from mmdeploy.secrets import Redactor, Secrets
from mmdeploy.step import Change

from .hostfacts import HostFacts

CONTROL_IP = "192.0.2.200"

SINGLE = """\
pattern: single
settings:
  domain: chat.example.com
hosts:
  - {name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.2, private_address: 10.0.0.2, roles: [app]}
  - {name: job1, address: 192.0.2.3, private_address: 10.0.0.3, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.4, private_address: 10.0.0.4, roles: [db]}
  - {name: db2, address: 192.0.2.5, private_address: 10.0.0.5, roles: [db]}
"""

MULTI = """\
pattern: multi
settings:
  domain: chat.example.com
  proxy: {vip: 10.0.0.100/24}
hosts:
  - {name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: lb2, address: 192.0.2.2, private_address: 10.0.0.2, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [app]}
  - {name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, private_address: 10.0.0.32, roles: [db]}
  - {name: db3, address: 192.0.2.33, private_address: 10.0.0.33, roles: [db]}
  - {name: s1, address: 192.0.2.41, private_address: 10.0.0.41, roles: [search, storage, pushproxy]}
  - {name: s2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [search, storage, pushproxy]}
"""

CLUSTER = """\
pattern: cluster
settings:
  domain: chat.example.com
  proxy: {vip: [10.0.0.100/24, 10.0.0.101/24]}
hosts:
  - {name: lb1, address: 10.0.0.1, roles: [proxy]}
  - {name: lb2, address: 10.0.0.2, roles: [proxy]}
  - {name: app1, address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 10.0.0.12, roles: [app]}
  - {name: app3, address: 10.0.0.13, roles: [app]}
  - {name: job1, address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 10.0.0.32, roles: [db]}
  - {name: db3, address: 10.0.0.33, roles: [db]}
  - {name: search1, address: 10.0.0.41, roles: [search]}
  - {name: search2, address: 10.0.0.42, roles: [search]}
  - {name: search3, address: 10.0.0.43, roles: [search]}
  - {name: st1, address: 10.0.0.51, roles: [storage]}
  - {name: st2, address: 10.0.0.52, roles: [storage]}
  - {name: st3, address: 10.0.0.53, roles: [storage]}
  - {name: st4, address: 10.0.0.54, roles: [storage]}
  - {name: push1, address: 10.0.0.61, roles: [pushproxy]}
  - {name: push2, address: 10.0.0.62, roles: [pushproxy]}
"""


def test_the_tree_under_test_is_this_worktree():
    assert "mmdeploy" in mmdeploy.__file__ and registry().component("firewall").name == "firewall"


@pytest.fixture
def load(write_inventory):
    def load(text=SINGLE, *overrides):
        return inventory.load(write_inventory(text), overrides)

    return load


@pytest.fixture
def ctx(load, tmp_path):
    def make(host, text=SINGLE, *overrides):
        inv = load(text, *overrides)
        return Context(inv, inv.host(host), Secrets(tmp_path / "s.yml", Redactor()), HostFacts())

    return make


def matrix(inv, host: str, control=(CONTROL_IP,)) -> dict[tuple[str, int], set[str] | str]:
    """(proto, port) -> the source networks the host's rules allow ("*" for anyone)."""
    out: dict[tuple[str, int], set[str] | str] = {}
    for r in fw.rules(inv, inv.host(host), list(control)):
        out[(r["proto"], r["port"])] = "*" if r["anyone"] else set(r["v4"] + r["v6"])
    return out


# --- the matrix ------------------------------------------------------------------------


def test_single_matrix(load):
    inv = load()
    assert matrix(inv, "proxy1") == {
        ("tcp", 22): {CONTROL_IP},
        ("tcp", 80): "*",
        ("tcp", 443): "*",
        ("tcp", 9100): {"10.0.0.3"},
        ("tcp", 9113): {"10.0.0.3"},
    }
    assert matrix(inv, "app1") == {
        ("tcp", 22): {CONTROL_IP},
        # NGINX, the job server (waits for the first server's first start), verify.
        ("tcp", 8065): {"10.0.0.1", "10.0.0.3", CONTROL_IP},
        ("tcp", 8067): {"10.0.0.3"},
        # No gossip: one app server and a job server are not a cluster.
        ("tcp", 9100): {"10.0.0.3"},
    }
    assert matrix(inv, "db1") == {
        ("tcp", 22): {CONTROL_IP},
        ("tcp", 5432): {"10.0.0.2", "10.0.0.3", "10.0.0.5"},
        ("tcp", 9100): {"10.0.0.3"},
        ("tcp", 9187): {"10.0.0.3"},
    }
    job = matrix(inv, "job1")
    # Prometheus, Grafana, Alertmanager: the administrators (none given) and verify.
    assert job[("tcp", 9090)] == job[("tcp", 3000)] == job[("tcp", 9093)] == {CONTROL_IP}
    # Its own exporters are scraped over loopback: no other source.
    assert job[("tcp", 9100)] == job[("tcp", 8067)] == set()
    # The job server serves no API (Mattermost's port is the app servers'), and gossips
    # only in cluster mode.
    assert ("tcp", 8065) not in job and ("tcp", 8074) not in job


def test_the_issue_table_from_a_host_with_no_role(load):
    """From an address no flow names (an outsider on the same network): 80 and 443 on the
    proxy, nothing anywhere else; the control machine adds SSH (and verify's ports)."""
    inv = load(SINGLE, "firewall.verify_from_control=false")
    outsider = "10.0.0.250"
    reachable = set()
    for h in inv.hosts:
        for (proto, port), sources in matrix(inv, h.name).items():
            if sources == "*" or outsider in sources:
                reachable.add((h.name, port))
    assert reachable == {("proxy1", 80), ("proxy1", 443)}
    from_control = {
        (h.name, port)
        for h in inv.hosts
        for (proto, port), s in matrix(inv, h.name).items()
        if s == "*" or CONTROL_IP in s
    }
    assert from_control == {(h.name, 22) for h in inv.hosts} | {("proxy1", 80), ("proxy1", 443)}


def test_what_a_host_of_each_role_may_reach(load):
    """The port scan's expectation from each host (and from the control machine)."""
    inv = load()

    def ports(address, control=()):
        return {(h, proto, port) for (h, proto, port) in fw.reachable(inv, address, control)}

    web = {("proxy1", "tcp", 80), ("proxy1", "tcp", 443)}
    assert ports("10.0.0.250") == web  # an outsider
    # The proxy (its own ports are not filtered for itself: loopback).
    assert ports("10.0.0.1") == {("app1", "tcp", 8065)}
    monitoring = {(h, "tcp", 9100) for h in ("proxy1", "app1", "db1", "db2")} | {
        ("proxy1", "tcp", 9113),
        ("app1", "tcp", 8067),
        ("db1", "tcp", 9187),
        ("db2", "tcp", 9187),
    }
    job = ports("10.0.0.3")
    assert (
        monitoring
        | {
            ("app1", "tcp", 8065),
            ("db1", "tcp", 5432),
            ("db2", "tcp", 5432),
        }
        | web
        == job
    )
    assert ports("10.0.0.4") == web | {("db2", "tcp", 5432)}  # a DB host: its peer's SQL port
    control = ports(CONTROL_IP, [CONTROL_IP])
    assert {(h.name, "tcp", 22) for h in inv.hosts} | web <= control
    assert ("app1", "tcp", 8065) in control and ("db1", "tcp", 5432) not in control


def test_database_extra_clients_and_admin_cidrs(load):
    inv = load(SINGLE, "database.extra_clients=[10.9.0.0/16, 10.8.0.7]", "firewall.admin_cidrs=[198.51.100.0/24]")
    assert matrix(inv, "db1")[("tcp", 5432)] == {"10.0.0.2", "10.0.0.3", "10.0.0.5", "10.9.0.0/16", "10.8.0.7"}
    for h in inv.hosts:
        assert matrix(inv, h.name)[("tcp", 22)] == {CONTROL_IP, "198.51.100.0/24"}
    job = matrix(inv, "job1")
    assert job[("tcp", 9090)] == job[("tcp", 3000)] == job[("tcp", 9093)] == {CONTROL_IP, "198.51.100.0/24"}
    assert "198.51.100.0/24" not in matrix(inv, "app1")[("tcp", 8065)]


def test_monitoring_cidrs_reach_every_exporter_and_nothing_else(load):
    inv = load(SINGLE, "firewall.monitoring_cidrs=[172.16.5.0/24]")
    for h in inv.hosts:
        for (proto, port), sources in matrix(inv, h.name).items():
            scraped = port in (9100, 9113, 9187, 8067)
            assert (sources != "*" and "172.16.5.0/24" in sources) == scraped, (h.name, port)


def test_mysql_port_instead_of_postgresql(load):
    text = SINGLE.replace(
        "  domain: chat.example.com\n",
        "  domain: chat.example.com\n  mattermost: {version: 10.11.9}\n  database: {engine: mysql}\n",
    )
    db = matrix(load(text), "db1")
    assert db[("tcp", 3306)] == {"10.0.0.2", "10.0.0.3", "10.0.0.5"} and db[("tcp", 9104)] == {"10.0.0.3"}
    # PostgreSQL's port too: db.migrate starts it beside MySQL and cuts over without a
    # firewall deploy (nothing listens there before).
    assert db[("tcp", 5432)] == {"10.0.0.2", "10.0.0.3", "10.0.0.5"}
    assert ("tcp", 3306) not in matrix(load(), "db1")


def test_multi_matrix(load):
    inv = load(MULTI)
    lb1 = matrix(inv, "lb1")
    clients = {"10.0.0.11", "10.0.0.12", "10.0.0.21"}
    assert lb1[("vrrp", 0)] == {"10.0.0.2"}  # keepalived between the proxies
    assert lb1[("tcp", 80)] == lb1[("tcp", 443)] == "*"
    # The internal balancer's frontends: the layers' clients (app and job servers).
    assert lb1[("tcp", 9200)] == lb1[("tcp", 8333)] == lb1[("tcp", 8066)] == clients
    assert lb1[("tcp", 8405)] == {"10.0.0.21"}  # HAProxy's stats: Prometheus
    s1 = matrix(inv, "s1")
    # The layers' hosts: the balancer on the proxies (and verify, where it asks them directly).
    assert s1[("tcp", 9200)] == {"10.0.0.1", "10.0.0.2"}
    assert s1[("tcp", 8333)] == {"10.0.0.1", "10.0.0.2", CONTROL_IP}
    assert s1[("tcp", 8066)] == {"10.0.0.1", "10.0.0.2", "10.0.0.21", CONTROL_IP}
    # Search transport between the nodes, the tiebreaker on the job host included.
    assert s1[("tcp", 9300)] == {"10.0.0.42", "10.0.0.21"}
    # SeaweedFS: its HTTP and gRPC ports between its own hosts only.
    assert s1[("tcp", 18888)] == s1[("tcp", 8888)] == {"10.0.0.42", "10.0.0.21"}
    app1 = matrix(inv, "app1")
    assert app1[("tcp", 8074)] == {"10.0.0.12", "10.0.0.21"}
    assert app1[("tcp", 8065)] == {"10.0.0.1", "10.0.0.2", "10.0.0.12", "10.0.0.21", CONTROL_IP}


def test_cluster_matrix(load):
    inv = load(CLUSTER)
    db1 = matrix(inv, "db1")
    assert db1[("tcp", 2380)] == {"10.0.0.32", "10.0.0.33"}  # etcd peers
    assert db1[("tcp", 2379)] == {"10.0.0.32", "10.0.0.33", "10.0.0.21"}  # Patroni; Prometheus
    # Patroni's REST API: the other members and HAProxy's checks on the proxies.
    assert db1[("tcp", 8008)] == {"10.0.0.1", "10.0.0.2", "10.0.0.32", "10.0.0.33"}
    # PostgreSQL: Mattermost, the replicas, and HAProxy's leader route.
    assert db1[("tcp", 5432)] == {
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.11",
        "10.0.0.12",
        "10.0.0.13",
        "10.0.0.21",
        "10.0.0.32",
        "10.0.0.33",
    }
    lb1 = matrix(inv, "lb1")
    assert lb1[("tcp", 5432)] == lb1[("tcp", 5433)] == {"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.21"}
    st4 = matrix(inv, "st4")
    assert ("tcp", 9333) not in st4  # masters on the first three storage hosts only
    assert st4[("tcp", 8080)] == {"10.0.0.51", "10.0.0.52", "10.0.0.53"}


def test_backup_ssh_flows(load):
    inv = load(SINGLE, "backup.enabled=true")
    # The backup host (the monitoring host) pulls from the DB hosts; pgBackRest pushes back.
    assert matrix(inv, "db1")[("tcp", 22)] == {CONTROL_IP, "10.0.0.3"}
    assert matrix(inv, "job1")[("tcp", 22)] == {CONTROL_IP, "10.0.0.4", "10.0.0.5"}
    assert matrix(inv, "app1")[("tcp", 22)] == {CONTROL_IP, "10.0.0.3"}  # files (backup.files)


def test_every_declared_source_is_known():
    """The registry refuses a port reached from an unknown role or source."""
    from mmdeploy.component import Component, Port
    from mmdeploy.registry import RegistryError, build

    class Bad(Component):
        name = "bad"
        ports = (Port("x", 1, ("nosuchrole",)),)

    with pytest.raises(RegistryError, match="reached from 'nosuchrole'"):
        build([*registry().components, Bad()])


# --- the ruleset -----------------------------------------------------------------------


def test_ruleset_content(ctx):
    c = ctx("db1", SINGLE, "database.extra_clients=[10.9.0.0/16]")
    steps = fw.Firewall().steps(c)
    assert isinstance(steps[0], Packages) and list(steps[0].wanted) == ["nftables"]
    (ruleset,) = [s for s in steps if isinstance(s, fw.Ruleset)]
    assert isinstance(steps[-1], Service) and steps[-1].unit == fw.UNIT
    ruleset.prepare([CONTROL_IP])
    text = ruleset.content.decode()
    assert ruleset.path == fw.RULESET and ruleset.mode == "0600"
    assert text.startswith("#!/usr/sbin/nft -f\n")
    # Only mmdeploy's own table, replaced as a whole; never `flush ruleset`.
    assert "table inet mmdeploy\ndelete table inet mmdeploy\n" in text and "flush ruleset" not in text
    assert "type filter hook input priority filter; policy drop;" in text
    assert "ct state established,related accept" in text and 'iif "lo" accept' in text
    assert "icmp type {" in text and "nd-neighbor-solicit" in text
    assert "chain output" not in text and "chain forward" not in text  # outbound open
    assert f"ip saddr {{ {CONTROL_IP} }} tcp dport 22 accept" in text
    assert "ip saddr { 10.0.0.2, 10.0.0.3, 10.0.0.5, 10.9.0.0/16 } tcp dport 5432 accept" in text
    assert "ip saddr { 10.0.0.3 } tcp dport 9187 accept" in text
    # The marker names the hash of the file without it: the live table can be compared.
    digest = fw.digest_of(text)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert hashlib.sha256(text.replace(digest, "").encode()).hexdigest()[:16] == digest


def test_ruleset_vrrp_and_anyone(ctx):
    text = fw.ruleset(ctx("lb1", MULTI), [CONTROL_IP])
    assert "ip saddr { 10.0.0.2 } ip protocol 112 accept" in text
    assert "        tcp dport 443 accept\n" in text and "        tcp dport 80 accept\n" in text


def test_ruleset_is_stable(ctx):
    """The same inventory renders byte for byte the same file: a second deploy changes nothing."""
    a = fw.ruleset(ctx("lb1", MULTI), [CONTROL_IP])
    b = fw.ruleset(ctx("lb1", MULTI), [CONTROL_IP])
    assert a == b


def test_ssh_never_dropped_for_the_control_machine(ctx):
    """Whatever the settings, the control machine as the host sees it reaches SSH."""
    for overrides in (
        (),
        ("firewall.verify_from_control=false",),
        ("firewall.admin_cidrs=[198.51.100.0/24]",),
        ("firewall.control=[203.0.113.0/24]",),
    ):
        for host in ("proxy1", "app1", "job1", "db1"):
            text = fw.ruleset(ctx(host, SINGLE, *overrides), [CONTROL_IP])
            (line,) = [ln for ln in text.splitlines() if ln.strip().endswith("tcp dport 22 accept")]
            assert CONTROL_IP in line, (overrides, host)


def test_control_address_from_the_ssh_session_and_the_setting(load):
    app = load().host("app1")
    seen = Fact(0, f"{CONTROL_IP}\n")
    assert fw.control_addresses(seen, app) == [CONTROL_IP]
    assert fw.control_addresses(Fact(0, "::ffff:192.0.2.7\n"), app) == ["192.0.2.7"]
    assert fw.control_addresses(Fact(0, "fe80::1%eth0\n"), app) == ["fe80::1"]
    both = load(SINGLE, "firewall.control=[203.0.113.0/24]").host("app1")
    assert fw.control_addresses(seen, both) == [CONTROL_IP, "203.0.113.0/24"]
    only = load(SINGLE, "firewall.control=[203.0.113.5]").host("app1")
    assert fw.control_addresses(Fact(1, ""), only) == ["203.0.113.5"]
    with pytest.raises(StepFailed, match="app1: cannot tell the control machine's address .* set firewall.control"):
        fw.control_addresses(Fact(1, ""), app)


def test_the_control_address_is_read_with_the_other_facts(ctx):
    """No round trip of its own: the ruleset step names the fact, the runner batches it."""
    step = ruleset_step(ctx)
    assert fw.CONTROL_FACT in step.facts()
    assert "SSH_CONNECTION" in fw.CONTROL_FACT and "/proc/$p/environ" in fw.CONTROL_FACT


def test_verify_from_control_off_keeps_ssh_only(ctx):
    text = fw.ruleset(ctx("job1", SINGLE, "firewall.verify_from_control=false"), [CONTROL_IP])
    assert text.count(CONTROL_IP) == 1
    assert "tcp 9090: prometheus\n        # (no source allowed: firewall.admin_cidrs is empty)" in text


def test_firewall_runs_first():
    from mmdeploy.component import ordered

    names = [c.name for c in ordered(list(registry().components))]
    assert names[:2] == ["base", "firewall"]


# --- the firewall off --------------------------------------------------------------------


def test_disabled_renders_nothing(ctx):
    c = ctx("app1", SINGLE, "firewall.enabled=false")
    (step,) = fw.Firewall().steps(c)
    assert isinstance(step, Command) and "nft delete table inet mmdeploy" in step.script
    assert fw.RULESET in step.unless and "nft list table inet mmdeploy" in step.unless
    assert step.check({step.unless: Fact(0, "")}) is None  # nothing there: no change


def test_disabled_per_host(ctx):
    text = SINGLE.replace("roles: [app]}", "roles: [app], vars: {firewall: {enabled: false}}}")
    (step,) = fw.Firewall().steps(ctx("app1", text))
    assert isinstance(step, Command)
    assert any(isinstance(s, fw.Ruleset) for s in fw.Firewall().steps(ctx("db1", text)))


# --- validation ------------------------------------------------------------------------


def test_admin_cidrs_validated_with_the_key(load):
    with pytest.raises(InventoryError) as e:
        load(
            SINGLE.replace(
                "  domain: chat.example.com\n",
                "  domain: chat.example.com\n  firewall: {admin_cidrs: [10.0.0.1/24, nonsense]}\n",
            )
        )
    text = str(e.value)
    assert "firewall.admin_cidrs[0]: expected a network address: host bits are set (did you mean 10.0.0.0/24?)" in text
    assert "firewall.admin_cidrs[1]: expected an IP address or a network in CIDR form" in text


def test_unknown_key_and_wrong_type_named(load):
    with pytest.raises(InventoryError) as e:
        load(SINGLE, "firewall.enable=false")
    assert "firewall.enable: unknown key (did you mean 'enabled'?)" in str(e.value)
    with pytest.raises(InventoryError) as e:
        load(SINGLE, "firewall.rollback_seconds=2")
    assert "firewall.rollback_seconds" in str(e.value)


def test_host_names_refused_while_the_firewall_is_on(load):
    text = SINGLE.replace("private_address: 10.0.0.2,", "private_address: app1.internal,")
    with pytest.raises(InventoryError) as e:
        load(text)
    assert re.search(r"hosts\[1\]\.private_address: expected an IP address with firewall.enabled", str(e.value))
    load(text, "firewall.enabled=false")  # off: host names are fine


def test_admin_cidrs_of_everyone_warned(load):
    inv = load(SINGLE, "firewall.admin_cidrs=[0.0.0.0/0]")
    (warning,) = fw.Firewall().warnings(inv, None)
    assert "open to anyone" in warning


# --- safe apply ------------------------------------------------------------------------


class FakeRemote:
    def __init__(self, confirm=Result(0, "confirmed\n", ""), fail_confirm=False, arm=Result(0, "armed\n", "")):
        self.scripts: list[str] = []
        self.confirm, self.fail_confirm, self.arm = confirm, fail_confirm, arm

    def run(self, script, timeout=300, log_as=None, log_output=True, what=None):
        self.scripts.append(script)
        if script == fw.CONFIRM:
            if self.fail_confirm:
                raise Unreachable("SSH connection to 192.0.2.2 was lost")
            return self.confirm
        return self.arm if "systemd-run" in script else Result(0, "", "")


def ruleset_step(ctx) -> fw.Ruleset:
    c = ctx("app1")
    (step,) = [s for s in fw.Firewall().steps(c) if isinstance(s, fw.Ruleset)]
    step.prepare([CONTROL_IP])
    return step


def file_fact(content: bytes) -> Fact:
    return Fact(0, f"regular file|root|root|600|{len(content)}\nb64:{base64.b64encode(content).decode()}")


def test_plan_shows_the_rule_diff_and_a_second_deploy_changes_nothing(ctx):
    step = ruleset_step(ctx)
    probe, live, control = step.facts()
    seen = Fact(0, f"{CONTROL_IP}\n")

    def check(file: Fact, table: Fact):
        return step.check({probe: file, live: table, control: seen})

    first = check(Fact(0, ""), Fact(0, ""))
    assert first.summary.startswith("create") and "rolled back in 30 s unless confirmed" in first.summary
    assert "+        ip saddr { 10.0.0.1, 10.0.0.3, 192.0.2.200 } tcp dport 8065 accept" in first.diff
    # Applied: the file and the live table are the wanted ones.
    assert check(file_fact(step.content), Fact(0, f"{fw.MARKER} {step.digest}\n")) is None
    # The file is there but the live table is not (flushed by hand): loaded again.
    again = check(file_fact(step.content), Fact(0, ""))
    assert again is not None and "not loaded" in again.summary and again.diff == ""
    # A changed matrix: the diff names the rule.
    old = step.content.replace(b"10.0.0.1, ", b"")
    changed = check(file_fact(old), Fact(0, f"{fw.MARKER} 0123456789abcdef\n"))
    assert "-        ip saddr { 10.0.0.3, 192.0.2.200 } tcp dport 8065 accept" in changed.diff
    assert "+        ip saddr { 10.0.0.1, 10.0.0.3, 192.0.2.200 } tcp dport 8065 accept" in changed.diff


def test_safe_apply_confirms_in_the_same_session(ctx, monkeypatch):
    step = ruleset_step(ctx)
    asked = []
    monkeypatch.setattr(fw, "ssh_answers", lambda address, port: asked.append((address, port)))
    remote = FakeRemote()
    step.apply(remote, Change("create"))
    arm, confirm = remote.scripts
    assert asked == [("192.0.2.2", 22)]  # a new connection, from the control machine
    assert 'nft -c -f "$new"' in arm and "systemd-run --quiet --unit=mmdeploy-firewall-rollback --on-active=30" in arm
    # The rollback is armed before the new ruleset is loaded.
    assert arm.index("systemd-run") < arm.index(f"nft -f {fw.RULESET}")
    assert confirm == fw.CONFIRM and "systemctl stop mmdeploy-firewall-rollback.timer" in confirm


def test_lock_out_is_rolled_back_and_reported(ctx, monkeypatch):
    step = ruleset_step(ctx)
    monkeypatch.setattr(fw, "ssh_answers", lambda address, port: "a new SSH connection to 192.0.2.2:22 failed")
    remote = FakeRemote()
    with pytest.raises(StepFailed, match="ROLLED BACK: a new SSH connection .* would lock the control machine out"):
        step.apply(remote, Change("create"))
    assert remote.scripts[1] == fw.ROLLBACK_NOW and fw.CONFIRM not in remote.scripts


def test_no_confirmation_leaves_the_timer_to_roll_back(ctx, monkeypatch):
    step = ruleset_step(ctx)
    monkeypatch.setattr(fw, "ssh_answers", lambda address, port: None)
    with pytest.raises(StepFailed, match="NOT confirmed .* restores its previous ruleset by itself within 30 s"):
        step.apply(FakeRemote(fail_confirm=True), Change("create"))
    late = FakeRemote(confirm=Result(0, "rolled-back\n", ""))
    with pytest.raises(StepFailed, match="ROLLED BACK: the confirmation came after the rollback timer fired"):
        step.apply(late, Change("create"))


def test_a_ruleset_nft_refuses_changes_nothing_and_a_failed_load_says_it_rolls_back(ctx, monkeypatch):
    step = ruleset_step(ctx)
    monkeypatch.setattr(fw, "ssh_answers", lambda address, port: pytest.fail("no probe after a failed load"))
    refused = FakeRemote(arm=Result(3, "", "the new ruleset does not load: syntax error"))
    with pytest.raises(StepFailed, match="syntax error .nothing changed."):
        step.apply(refused, Change("create"))
    failed = FakeRemote(arm=Result(1, "", "Error: Could not process rule"))
    with pytest.raises(StepFailed, match="loading the ruleset failed .* restores its previous ruleset within 30 s"):
        step.apply(failed, Change("create"))


def test_rollback_restores_the_previous_file_or_removes_the_table():
    arm = fw.arm_script("AAAA", 45)
    assert "--on-active=45" in arm
    assert f"cp {fw.RULESET} {fw.STATE}/previous.nft" in arm
    assert "nft -f /var/lib/mmdeploy/firewall/previous.nft" in arm
    assert "nft delete table inet mmdeploy" in arm


# --- verify: exposure from the control machine -----------------------------------------


def fake_network(monkeypatch, answers: dict[tuple[str, int], str], source=CONTROL_IP):
    monkeypatch.setattr(fw, "source_address", lambda address, port: source)
    monkeypatch.setattr(
        fw, "probe", lambda address, port, timeout=fw.PROBE_TIMEOUT: answers.get((address, port), "filtered")
    )


def test_exposure_matches_the_matrix(load, monkeypatch):
    inv = load()
    app = inv.host("app1")
    fake_network(monkeypatch, {("192.0.2.2", 22): "open", ("192.0.2.2", 8065): "open"})
    result = fw.exposure_check(inv, app)()
    assert isinstance(result, Info) and "answers on 22, 8065" in result


def test_exposure_beyond_the_matrix_fails(load, monkeypatch):
    inv = load()
    fake_network(monkeypatch, {("192.0.2.4", 22): "open", ("192.0.2.4", 5432): "open", ("192.0.2.4", 9100): "refused"})
    problem = fw.exposure_check(inv, inv.host("db1"))()
    assert not isinstance(problem, (Info, Warn))
    assert "open beyond the flow matrix: 5432" in problem
    assert "not filtered (refused instead of dropped): 9100" in problem


def test_a_needed_flow_dropped_fails(load, monkeypatch):
    inv = load()
    fake_network(monkeypatch, {("192.0.2.1", 80): "open"})  # 22 and 443 dropped
    problem = fw.exposure_check(inv, inv.host("proxy1"))()
    assert "dropped although the matrix allows the control machine: 22 (ssh (firewall)), 443 (https (nginx))" in problem


def test_admin_cidrs_count_for_the_control_machine(load, monkeypatch):
    inv = load(SINGLE, "firewall.admin_cidrs=[192.0.2.0/24]", "firewall.verify_from_control=false")
    wanted = fw.expected_from_control(inv, inv.host("job1"), "192.0.2.77")
    assert {22, 3000, 9090, 9093} <= set(wanted) and 8065 not in wanted


def test_disabled_firewall_still_reports_exposure(load, monkeypatch):
    inv = load(SINGLE, "firewall.enabled=false", "firewall.verify_from_control=false")
    fake_network(
        monkeypatch,
        {
            ("192.0.2.3", 22): "open",
            ("192.0.2.3", 9090): "open",
            ("192.0.2.3", 9100): "open",
            ("192.0.2.3", 5432): "refused",
        },
    )
    result = fw.exposure_check(inv, inv.host("job1"))()
    assert isinstance(result, Warn)
    assert "firewall off: open beyond the flow matrix: 9090, 9100" in result
    names = [c.name for c in fw.Firewall().checks(inv)]
    assert names == [f"network exposure of {h.name} from the control machine" for h in inv.hosts]


def test_exposure_is_bounded_in_time(load, monkeypatch):
    import time

    inv = load()
    monkeypatch.setattr(fw, "source_address", lambda address, port: CONTROL_IP)
    monkeypatch.setattr(fw, "probe", lambda address, port, timeout=1.5: time.sleep(0.3) or "filtered")
    started = time.monotonic()
    problem = fw.exposure_check(inv, inv.host("app1"), deadline=0.5)()
    assert time.monotonic() - started < 5
    assert "not measured within" in problem or "dropped" in problem


def test_sources_constants_are_the_documented_ones():
    assert (CONTROL, ADMIN) == ("@control", "@admin")


def test_rendered_rulesets_pass_nft_check(load, tmp_path):
    """Every host's file of the three layouts passes `nft -c` (in a network namespace of
    its own: nothing is loaded anywhere); skipped where nft or namespaces are not available."""
    import shutil
    import subprocess

    if (
        not shutil.which("nft")
        or not shutil.which("unshare")
        or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0
    ):
        pytest.skip("nft, or an unprivileged network namespace, is not available here")
    for text in (SINGLE, MULTI, CLUSTER):
        inv = load(text, "firewall.admin_cidrs=[198.51.100.0/24, '2001:db8::/32']")
        for h in inv.hosts:
            c = Context(inv, h, Secrets(tmp_path / "s.yml", Redactor()), HostFacts())
            path = tmp_path / f"{h.name}.nft"
            path.write_text(fw.ruleset(c, [CONTROL_IP]))
            done = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, (h.name, done.stderr)


def test_arm_confirm_and_rollback_scripts_in_a_namespace(tmp_path):
    """The safe apply's shell, run for real against nft in a network namespace of its own
    (paths moved under tmp_path, systemd-run and systemctl replaced by recorders): a first
    ruleset rolled back leaves no table; a confirmed one stays; a later one rolled back
    brings the confirmed one back, in the table and in the file."""
    import shutil
    import subprocess

    if (
        not shutil.which("nft")
        or not shutil.which("unshare")
        or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0
    ):
        pytest.skip("nft, or an unprivileged network namespace, is not available here")
    state, etc, bin_ = tmp_path / "state", tmp_path / "etc", tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "systemd-run").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/armed\n')
    (bin_ / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_.iterdir():
        f.chmod(0o755)

    def local(script: str) -> str:
        return script.replace(fw.STATE, str(state)).replace("/etc/mmdeploy", str(etc))

    def ruleset(port: int) -> str:
        return (
            f"table inet mmdeploy\ndelete table inet mmdeploy\ntable inet mmdeploy {{\n chain input {{\n"
            f"  type filter hook input priority filter; policy drop;\n"
            f'  counter comment "{fw.MARKER} {port:016x}"\n  tcp dport {port} accept\n }}\n}}\n'
        )

    def arm(port: int) -> str:
        return local(fw.arm_script(base64.b64encode(ruleset(port).encode()).decode(), 30))

    fire = f"/bin/sh {state}/rollback.sh"
    live = "nft list table inet mmdeploy 2>/dev/null | grep -o 'dport [0-9]*' || echo none"
    scenario = "\n".join(
        [
            f"export PATH={bin_}:$PATH",
            "set -e",
            arm(1111),
            f"echo first: $({live})",
            fire,
            f"echo after-rollback: $({live}) file: $(ls {etc})",
            arm(2222),
            local(fw.CONFIRM),
            f"echo confirmed: $({live})",
            arm(3333),
            f"echo third: $({live})",
            fire,
            f"echo restored: $({live}) file: $(grep -o 'dport [0-9]*' {etc}/firewall.nft)",
        ]
    )
    done = subprocess.run(["unshare", "-n", "bash", "-c", scenario], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "first: dport 1111" in out and "after-rollback: none file:\n" in out
    assert "confirmed\nconfirmed: dport 2222" in out
    assert "third: dport 3333" in out and "restored: dport 2222 file: dport 2222" in out
    assert "--on-active=30" in (tmp_path / "armed").read_text()


def test_the_control_fact_finds_ssh_connection_above_a_cleared_environment(tmp_path):
    """sudo clears SSH_CONNECTION from its children: the probe reads it from an ancestor."""
    import subprocess

    script = tmp_path / "fact.sh"
    script.write_text(f"( {fw.CONTROL_FACT}\n)\n")
    done = subprocess.run(
        ["env", "SSH_CONNECTION=198.51.100.7 50022 10.0.0.2 2222", "bash", "-c", f"env -i /bin/bash {script}; true"],
        capture_output=True,
        text=True,
    )
    assert done.stdout == "198.51.100.7 2222\n"
    assert fw.seen_ssh_port(Fact(0, done.stdout)) == 2222
    assert fw.seen_ssh_port(Fact(0, "198.51.100.7\n")) is None


def test_a_forwarded_ssh_port_is_opened_to_the_control_machine(ctx):
    c = ctx("app1")
    text = fw.ruleset(c, [CONTROL_IP], ssh_port=2222)
    assert f"ip saddr {{ {CONTROL_IP} }} tcp dport 2222 accept" in text
    assert f"ip saddr {{ {CONTROL_IP} }} tcp dport 22 accept" in text
    assert fw.ruleset(c, [CONTROL_IP], ssh_port=22) == fw.ruleset(c, [CONTROL_IP])


# --- outbound -----------------------------------------------------------------------------


def outbound(inv, host: str) -> dict[str, set[str]]:
    """ "proto port" (or "any port") -> the destinations the host may open connections to."""
    return {r["what"]: set(r["v4"] + r["v6"]) for r in fw.outbound_rules(inv, inv.host(host))}


def test_outbound_open_by_default_no_output_chain(ctx):
    text = fw.ruleset(ctx("app1"), [CONTROL_IP])
    assert "chain output" not in text and "policy drop" in text  # inbound only


def test_outbound_restricted_follows_the_matrix(load, ctx, tmp_path):
    sets = (
        "firewall.outbound=restricted",
        "apt_proxy=http://10.0.0.200:3142",
        "time.servers=[10.0.0.201, ntp.example.com]",
        "smtp.host=10.0.0.202",
        "firewall.outbound_allow=[198.51.100.0/24, 2001:db8::/32]",
    )
    inv = load(SINGLE, *sets)
    app = outbound(inv, "app1")
    # The app server opens connections to the databases, and to what the settings name.
    assert app["tcp 5432"] == {"10.0.0.4", "10.0.0.5"}
    assert app["udp 53"] == app["tcp 53"] == {"0.0.0.0/0", "::/0"}
    assert app["tcp 3142"] == {"10.0.0.200"} and app["udp 123"] == {"10.0.0.201"}  # a name: outbound_allow
    assert app["tcp 587"] == {"10.0.0.202"}
    assert app["any port"] == {"198.51.100.0/24", "2001:db8::/32"}
    assert "tcp 9100" not in app  # scraping is the monitoring host's
    job = outbound(inv, "job1")  # Prometheus scrapes every host's exporters
    assert job["tcp 9100"] == {"10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"}
    assert job["tcp 8065"] == {"10.0.0.2"} and job["tcp 9187"] == {"10.0.0.4", "10.0.0.5"}
    assert outbound(inv, "proxy1")["tcp 8065"] == {"10.0.0.2"}
    assert outbound(inv, "db2")["tcp 5432"] == {"10.0.0.4"}  # the replica streams from db1
    assert "tcp 587" not in outbound(inv, "db1")  # mail is the app and job servers'
    text = fw.ruleset(ctx("app1", SINGLE, *sets), [CONTROL_IP])
    chain = text.split("chain output", 1)[1]
    assert "policy drop;" in chain and "ct state established,related accept" in chain and 'oif "lo" accept' in chain
    assert "ip daddr { 10.0.0.4, 10.0.0.5 } tcp dport 5432 accept" in chain
    assert "ip daddr { 198.51.100.0/24 }  accept" in chain and "ip6 daddr { 2001:db8::/32 }  accept" in chain
    if shutil.which("nft") and os.geteuid() == 0:  # nftables itself parses it (check mode: nothing loaded)
        path = tmp_path / "ruleset.nft"
        path.write_text(text)
        check = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_outbound_restricted_floating_addresses_and_vrrp(load):
    inv = load(MULTI, "firewall.outbound=restricted")
    app = outbound(inv, "app1")
    # The internal balancers listen on the floating address: the layers' clients reach it.
    assert {"10.0.0.100", "10.0.0.1", "10.0.0.2"} <= app["tcp 9200"]
    assert outbound(inv, "lb1")["vrrp (IP protocol 112)"] == {"10.0.0.2"}  # unicast to the peer
    assert outbound(inv, "lb1")["tcp 9200"] == {"10.0.0.41", "10.0.0.42"}  # HAProxy to the search nodes
