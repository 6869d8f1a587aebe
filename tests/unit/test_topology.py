"""The topology picture (mmdeploy/topology.py): a node per host, an edge per flow, flows
derived from the component declarations, live state drawn, and Graphviz's `dot` drawing
it for real. The example inventories are only read here: their documentation addresses
are never contacted (live state comes from a LiveState made in the test)."""

import re
import shutil
from pathlib import Path

import pytest

from mmdeploy import inventory, registry, topology
from mmdeploy.component import Balanced, Component
from mmdeploy.dbtier import NodeState, unreachable

ROOT = Path(__file__).resolve().parents[2]


def example(pattern):
    return inventory.load(ROOT / "hosts" / f"{pattern}.yml")


def edges(dot_source: str) -> list[tuple[str, str]]:
    return re.findall(r'^\s*"?([\w:.-]+)"?\s*->\s*"?([\w:.-]+)"?', dot_source, re.M)


@pytest.mark.parametrize("pattern", ["single", "multi", "cluster"])
def test_a_node_per_host_and_an_edge_per_flow(pattern):
    inv = example(pattern)
    graph = topology.build(inv)
    hosts = [n for n in graph.nodes.values() if n.kind == "host"]
    assert sorted(n.id for n in hosts) == sorted(h.name for h in inv.hosts)
    source = topology.to_dot(graph).source
    assert len(edges(source)) == len(graph.flows)
    for h in inv.hosts:  # each host drawn once, in its layer's cluster
        assert len(re.findall(rf'^\s*"?{re.escape(h.name)}"? \[label=', source, re.M)) == 1


def test_single_pattern_flows():
    graph = topology.build(example("single"))
    flows = {(f.kind, f.src, f.dst, f.port) for f in graph.flows}
    assert ("https", "users", "proxy1", 443) in flows
    assert ("http", "layer:proxy", "layer:app", 8065) in flows
    assert ("sql", "layer:app", "db1", 5432) in flows and ("sql", "layer:jobserver", "db1", 5432) in flows
    assert ("replication", "db1", "db2", 5432) in flows
    metrics = {f.dst: f.note for f in graph.flows if f.kind == "metrics"}
    assert metrics["layer:proxy"] == "nginx:9113, node:9100"  # from each component's Metrics declaration
    assert metrics["layer:db"] == "node:9100, postgres:9187"
    assert "layer:jobserver" not in metrics  # the monitoring host scrapes itself
    assert not [f for f in graph.flows if f.kind == "gossip"]  # one app server: no cluster


def test_multi_pattern_gossip_search_storage_push():
    kinds = {f.kind: f for f in topology.build(example("multi")).flows}
    assert kinds["gossip"].port == 8074
    assert {k for k in kinds} >= {"https", "http", "gossip", "sql", "replication", "search", "s3", "push", "metrics"}


def test_mysql_engine_port(write_inventory):
    text = (
        (ROOT / "hosts" / "single.yml")
        .read_text()
        .replace("engine: postgresql", "engine: mysql")
        .replace("version: 11.7.15", "version: 10.11.23")
    )  # the MySQL family runs Mattermost up to 10.11
    graph = topology.build(inventory.load(write_inventory(text)))
    assert {f.port for f in graph.flows if f.kind in ("sql", "replication")} == {3306}


class Search(Component):
    """A search component declaring its balanced layer, as the search component will."""

    name = "search-under-test"
    roles = ("search",)
    balanced = (Balanced("search", 9200, "/_cluster/health"),)


def test_balanced_layers_come_from_the_declarations(monkeypatch):
    real = registry.registry()
    built = registry.build([*real.components, Search()], real.template_dirs)
    monkeypatch.setattr(registry, "registry", lambda: built)
    inv = example("multi")  # proxy.vip 10.0.0.100: clients reach the balancer there
    entry = topology.vip_id("10.0.0.100")
    graph = topology.build(inv)
    search = [f for f in graph.flows if f.kind == "search"]
    assert {(f.src, f.dst, f.port) for f in search} == {
        ("layer:app", entry, 9200),
        ("layer:jobserver", entry, 9200),  # clients -> balancer
        ("layer:proxy", "layer:search", 9200),
    }  # balancer -> layer
    assert all(f.note == "(internal balancer)" for f in search if f.dst == entry)
    # The storage component declares its layer the same way (SeaweedFS's S3 port).
    s3 = {(f.src, f.dst, f.port) for f in graph.flows if f.kind == "s3"}
    assert ("layer:app", entry, 8333) in s3 and ("layer:proxy", "layer:storage", 8333) in s3


def node_state(inv, name, role, writable=False, streaming=False):
    return NodeState(
        host=inv.host(name),
        reachable=True,
        running=True,
        role=role,
        writable=writable,
        streaming=streaming,
        has_data=True,
    )


def test_live_state_after_a_failover_and_a_host_down():
    inv = example("multi")
    live = topology.LiveState(
        down={"app2": "cannot connect over SSH"},
        db={
            "db1": unreachable(inv.host("db1"), "no answer"),
            "db2": node_state(inv, "db2", "primary", writable=True),
            "db3": node_state(inv, "db3", "replica", streaming=True),
        },
    )
    live.db["db1"].fenced = True
    graph = topology.build(inv, live)
    assert graph.nodes["app2"].state == "down" and "DOWN" in graph.nodes["app2"].notes
    assert "primary, writable" in graph.nodes["db2"].notes
    assert "replica, streaming" in graph.nodes["db3"].notes
    flows = {(f.kind, f.src, f.dst) for f in graph.flows}
    assert ("sql", "layer:app", "db2") in flows  # the clients follow the live primary
    assert ("replication", "db2", "db3") in flows and ("replication", "db2", "db1") in flows
    source = topology.to_dot(graph).source
    assert "[DOWN]" in source and "live state" in source


def test_floating_address_and_its_holder():
    inv = example("multi")  # proxy.vip: 10.0.0.100/24
    vip = topology.vip_id("10.0.0.100")
    offline = topology.build(inv)
    assert ("https", "users", vip) in {(f.kind, f.src, f.dst) for f in offline.flows}
    assert ("vip", vip, "layer:proxy") in {(f.kind, f.src, f.dst) for f in offline.flows}
    assert not [f for f in offline.flows if f.kind == "https" and f.dst.startswith("proxy")]
    live = topology.build(inv, topology.LiveState(vip_holders={"10.0.0.100": "proxy2"}))
    assert ("vip", vip, "proxy2") in {(f.kind, f.src, f.dst) for f in live.flows}
    assert "held by proxy2" in live.nodes[vip].notes
    source = topology.to_dot(live).source
    assert f"{vip} -> proxy2" in source and "vip:" not in source  # a ':' would be read as a port


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (scripts/bootstrap installs Debian's graphviz)"
)
def test_dot_draws_an_svg(tmp_path):
    inv = example("single")
    path = topology.render(topology.build(inv), tmp_path / "single.svg")
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for h in inv.hosts:
        assert f">{h.name}</text>" in svg
    assert "replication :5432" in svg and "https :443" in svg
    dot = topology.render(topology.build(inv), tmp_path / "single.dot")
    assert "digraph" in dot.read_text()


# --- the host firewall's flow matrix ---------------------------------------------------------


def test_firewall_view_draws_the_flow_matrix():
    """inv topology --firewall: an edge per source and destination layer with every port
    the host firewall lets that source reach (registry.flows), nothing else."""
    inv = example("single")
    graph = topology.build(inv, firewall=True)
    edges_ = {(f.src, f.dst): f for f in graph.flows if f.kind == "allow"}
    assert edges_[("users", "layer:proxy")].label == "tcp 80 http\ntcp 443 https"  # anyone: the site only
    assert edges_[("layer:proxy", "layer:app")].label == "tcp 8065 mattermost"
    assert edges_[("layer:app", "layer:db")].label == "tcp 5432 postgresql"
    assert ("users", "layer:app") not in edges_ and ("users", "layer:db") not in edges_
    scrape = {f.dst: f.label for f in graph.flows if f.kind == "scrape" and f.src == "layer:jobserver"}
    assert scrape["layer:db"] == "tcp 9100 node metrics\ntcp 9187 postgres metrics"
    ssh = {f.dst for f in graph.flows if f.kind == "ssh" and f.src == "control"}
    assert ssh == {f"layer:{topology.layer_of(h)}" for h in inv.hosts}
    # Every (host, port) of the matrix is drawn from each of its host sources' layers.
    from mmdeploy.registry import registry

    drawn = {(f.src, f.dst, line) for f in graph.flows for line in f.label.split("\n")}
    for flow in registry().flows(inv):
        for h in flow.sources:
            line = f"{flow.proto} {flow.port} {flow.name}"
            assert (f"layer:{topology.layer_of(h)}", f"layer:{topology.layer_of(flow.host)}", line) in drawn
    assert "everything else dropped" in graph.title
    # Sources with networks get a node of their own; empty ones are not drawn.
    assert "admins" not in graph.nodes and "setting_database_extra_clients" not in graph.nodes
    extra = inventory.load(
        ROOT / "hosts" / "single.yml",
        ["firewall.admin_cidrs=[198.51.100.0/24]", "database.extra_clients=[198.51.100.7]", "firewall.enabled=false"],
    )
    graph = topology.build(extra, firewall=True)
    kinds = {(f.src, f.dst) for f in graph.flows}
    assert ("admins", "layer:jobserver") in kinds and ("setting_database_extra_clients", "layer:db") in kinds
    assert "NOT ENFORCED" in graph.title
    assert len(edges(topology.to_dot(graph).source)) == len(graph.flows)
