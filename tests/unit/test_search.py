"""The search component's logic with fake facts: opensearch.yml for one, two (+ tiebreaker)
and three search hosts, the bootstrap setting only before the cluster formed, heap sizing,
the unit, Elasticsearch's rendering, the layouts validation refuses (file, line, key), the
balanced layer and scrape targets, and restarts one node at a time."""

import threading
import time

import pytest
import yaml

from mmdeploy import balancer, inventory
from mmdeploy.component import Context
from mmdeploy.components import search as se
from mmdeploy.errors import InventoryError, MMDeployError
from mmdeploy.facts import Fact
from mmdeploy.ops import Command, File, Sysctl
from mmdeploy.registry import registry
from mmdeploy.remote import Result
from mmdeploy.secrets import Redactor, Secrets
from mmdeploy.step import Change

SHA = {"sha256": "a" * 64, "icu_sha256": "b" * 64}

BASE = """\
pattern: {pattern}
settings:
  search: {{sha256: "{sha}", icu_sha256: "{icu}"{extra}}}
hosts:
  - {{name: proxy1, address: 192.0.2.1, roles: [proxy]}}
  - {{name: proxy2, address: 192.0.2.11, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.2, roles: [app]}}
  - {{name: app2, address: 192.0.2.3, roles: [app]}}
  - {{name: app3, address: 192.0.2.12, roles: [app]}}
  - {{name: st1, address: 192.0.2.21, roles: [storage, pushproxy]}}
  - {{name: st2, address: 192.0.2.22, roles: [storage, pushproxy]}}
  - {{name: st3, address: 192.0.2.23, roles: [storage]}}
  - {{name: st4, address: 192.0.2.24, roles: [storage]}}
  - {{name: job1, address: 192.0.2.4, private_address: 10.0.0.4, roles: [{job}]}}
  - {{name: db1, address: 192.0.2.5, roles: [db]}}
  - {{name: db2, address: 192.0.2.6, roles: [db]}}
  - {{name: db3, address: 192.0.2.7, roles: [db]}}
{search}"""


def layout(
    n: int, pattern: str = "multi", job: str = "jobserver, monitoring", extra: str = "", search_roles: str = "search"
) -> str:
    hosts = "".join(
        f"  - {{name: search{i}, address: 192.0.2.{40 + i}, private_address: 10.0.0.{40 + i}, "
        f"roles: [{search_roles}]}}\n"
        for i in range(1, n + 1)
    )
    return BASE.format(pattern=pattern, sha=SHA["sha256"], icu=SHA["icu_sha256"], extra=extra, job=job, search=hosts)


class FakeFacts:
    """The host facts and the two facts steps() and handlers() read."""

    def __init__(self, mem_kb=16 * 1024 * 1024, hard_nofile="1048576", os="debian 12 bookworm"):
        self.values = {"mem_kb": str(mem_kb), "os": os, "cpus": "2"}
        self.hard_nofile = hard_nofile

    def host(self, name):
        return self.values[name]

    def get(self, commands):
        known = {se.HARD_NOFILE: self.hard_nofile, se.NOW: "1700000000"}
        return {c: Fact(0, known[c]) for c in commands}


@pytest.fixture
def site(write_inventory, tmp_path):
    def load(text, *overrides, formed=False, facts=None):
        inv = inventory.load(write_inventory(text), overrides)
        secrets = Secrets(tmp_path / "s.yml", Redactor())

        def ctx(name):
            return Context(inv, inv.host(name), secrets, facts or FakeFacts(), se.ClusterState(formed))

        ctx.inv = inv
        return ctx

    return load


def config_of(ctx) -> dict:
    steps = se.Search().steps(ctx)
    (conf,) = [s for s in steps if isinstance(s, File) and s.path.endswith((".yml"))]
    return yaml.safe_load(conf.content.decode())


def step_named(steps, prefix):
    (found,) = [s for s in steps if s.name.startswith(prefix)]
    return found


# --- layouts and opensearch.yml ---------------------------------------------------------------


def test_one_search_host_is_a_single_node(site):
    ctx = site(layout(1, pattern="single"))
    assert [h.name for h in se.Search().hosts(ctx.inv)] == ["search1"]
    conf = config_of(ctx("search1"))
    assert conf["discovery.type"] == "single-node"
    assert "discovery.seed_providers" not in conf and "cluster.initial_cluster_manager_nodes" not in conf
    assert conf["node.roles"] == ["cluster_manager", "data"]
    assert conf["network.host"] == "10.0.0.41" and conf["http.port"] == 9200 and conf["transport.port"] == 9300
    assert conf["cluster.default_number_of_replicas"] == 0  # nowhere to put a replica
    assert conf["path.data"] == "/var/lib/opensearch" and conf["path.logs"] == "/var/log/opensearch"
    # No bootstrap to undo on a single node.
    assert not [s for s in se.Search().steps(ctx("search1")) if "cluster formed" in s.name]


def test_two_search_hosts_and_a_tiebreaker_on_the_monitoring_host(site):
    ctx = site(layout(2))
    assert [h.name for h in se.Search().hosts(ctx.inv)] == ["search1", "search2", "job1"]
    conf = config_of(ctx("search1"))
    assert conf["node.roles"] == ["cluster_manager", "data"]
    assert conf["discovery.seed_providers"] == "file"
    seeds = [s for s in se.Search().steps(ctx("search1")) if s.name == "file /etc/opensearch/unicast_hosts.txt"]
    assert seeds[0].content.decode().splitlines()[1:] == ["10.0.0.41:9300", "10.0.0.42:9300", "10.0.0.4:9300"]
    assert not seeds[0].notify  # the node re-reads it: a new node restarts no other
    assert conf["cluster.initial_cluster_manager_nodes"] == ["search1", "search2", "job1"]
    assert conf["cluster.default_number_of_replicas"] == 1  # each index on both data nodes
    tie = config_of(ctx("job1"))
    assert tie["node.roles"] == ["cluster_manager"]  # votes, holds no data
    assert tie["network.host"] == "10.0.0.4" and tie["discovery.seed_providers"] == "file"
    # It serves no clients: HTTP on loopback, so a proxy on that host can balance port 9200.
    assert tie["http.host"] == "127.0.0.1" and "http.host" not in conf
    assert se.url_of(ctx.inv.host("job1")) == "http://127.0.0.1:9200"
    assert se.url_of(ctx.inv.host("search1")) == "http://10.0.0.41:9200"
    # The tiebreaker may be the elected manager, which checks Mattermost's icu analyzers.
    assert [s for s in se.Search().steps(ctx("job1")) if isinstance(s, se.Plugin)]


def test_tiebreaker_prefers_monitoring_then_jobserver_and_never_a_search_host(write_inventory):
    text = (
        layout(2)
        .replace("roles: [jobserver, monitoring]", "roles: [jobserver]")
        .replace(
            "  - {name: db3, address: 192.0.2.7, roles: [db]}\n",
            "  - {name: db3, address: 192.0.2.7, roles: [db]}\n  - {name: mon1, address: 192.0.2.8, roles: [monitoring]}\n",
        )
    )
    assert se.tiebreaker(inventory.load(write_inventory(text))).name == "mon1"
    only_jobs = (
        layout(2, pattern="single", job="jobserver")
        .replace("192.0.2.2, roles: [app]", "192.0.2.2, roles: [app, monitoring, search]")
        .replace("  - {name: search2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [search]}\n", "")
    )
    assert se.tiebreaker(inventory.load(write_inventory(only_jobs, "jobs.yml"))).name == "job1"


def test_three_search_hosts_are_all_data_nodes(site):
    ctx = site(layout(3, pattern="cluster"))
    assert [h.name for h in se.Search().hosts(ctx.inv)] == ["search1", "search2", "search3"]
    assert se.tiebreaker(ctx.inv) is None
    for name in ("search1", "search3"):
        conf = config_of(ctx(name))
        assert conf["node.roles"] == ["cluster_manager", "data"]
        assert conf["cluster.initial_cluster_manager_nodes"] == ["search1", "search2", "search3"]
        assert conf["cluster.default_number_of_replicas"] == 1  # one node's loss loses nothing
    assert ctx.inv.settings.search.replicas_for(3) == 1


def test_bootstrap_setting_only_until_the_cluster_formed(site):
    new = site(layout(2))
    steps = se.Search().steps(new("search1"))
    done = step_named(steps, "cluster formed")
    assert "sed -i" in done.script and "'/^cluster.initial_cluster_manager_nodes:/d'" in done.script
    assert done.unless == "! grep '^cluster.initial_cluster_manager_nodes:' /etc/opensearch/opensearch.yml >/dev/null"
    assert done.notify == ()  # read only by a node that never joined a cluster: no restart
    # It runs after the node was started by the Service step.
    assert steps.index(done) > steps.index(step_named(steps, "service opensearch"))
    formed = site(layout(2), formed=True)
    assert "cluster.initial_cluster_manager_nodes" not in config_of(formed("search1"))
    assert not [s for s in se.Search().steps(formed("search1")) if "cluster formed" in s.name]


def test_prepare_reads_the_cluster_uuid_of_any_node_that_answers(site):
    inv = site(layout(2)).inv

    class View:
        def __init__(self, answers):
            self.answers = answers

        def facts(self, host, commands):
            if host.name not in self.answers:
                raise MMDeployError(f"cannot connect to {host.name}")
            return {commands[0]: Fact(0, self.answers[host.name])}

    formed = '{"name": "search2", "cluster_uuid": "bT0o0Ul0QzKfQqYtUSnYqQ"}'
    assert se.Search().prepare(inv, View({"search2": formed})).formed  # search1 and job1 unreachable
    assert not se.Search().prepare(inv, View({"search1": '{"cluster_uuid": "_na_"}', "search2": ""})).formed
    assert not se.Search().prepare(inv, View({})).formed


# --- validation -----------------------------------------------------------------------------


def problems(write_inventory, text, *overrides):
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text, "bad.yml"), overrides)
    return e.value.problems if hasattr(e.value, "problems") else str(e.value).splitlines()


def test_two_search_hosts_without_a_tiebreaker_host_are_refused(write_inventory):
    text = layout(2, search_roles="search, jobserver, monitoring", job="proxy")
    found = problems(write_inventory, text)
    (line,) = [p for p in found if "quorum" in p]
    assert ": hosts: 2 search hosts cannot keep a quorum when one of them dies" in line
    assert "bad.yml:" in line


def test_layouts_that_lose_data_or_never_turn_green_are_refused(write_inventory):
    (zero,) = [p for p in problems(write_inventory, layout(2, extra=", replicas: 0")) if "replicas" in p]
    assert "bad.yml:3: settings.search.replicas: 0 replicas on 2 search hosts: losing one would lose" in zero
    (many,) = [
        p for p in problems(write_inventory, layout(3, pattern="cluster", extra=", replicas: 3")) if "replicas" in p
    ]
    assert "settings.search.replicas: 3 replica(s) of every index need 4 search hosts, found 3" in many
    # The pattern's own minimum: multi needs two search hosts, cluster three.
    assert any(
        "pattern 'multi' needs at least 2 hosts with role 'search', found 1" in p
        for p in problems(write_inventory, layout(1))
    )
    assert any(
        "pattern 'cluster' needs at least 3 hosts with role 'search', found 2" in p
        for p in problems(write_inventory, layout(2, pattern="cluster"))
    )


def test_elasticsearch_needs_a_version(write_inventory):
    found = problems(write_inventory, layout(2), "search.engine=elasticsearch")
    assert any("search.version: required with engine 'elasticsearch'" in p for p in found)


def test_single_node_and_replicas_within_the_nodes_are_valid(write_inventory):
    inventory.load(write_inventory(layout(1, pattern="single")))
    inventory.load(write_inventory(layout(3, pattern="cluster", extra=", replicas: 2"), "r2.yml"))


def test_checksums_are_required_before_anything_is_installed(site, write_inventory):
    bare = layout(2).replace(f'sha256: "{SHA["sha256"]}", icu_sha256: "{SHA["icu_sha256"]}"', "cluster_name: mm")
    ctx = site(bare)
    with pytest.raises(MMDeployError) as e:
        se.Search().steps(ctx("search1"))
    message = str(e.value)
    assert "settings.search.sha256 and settings.search.icu_sha256 required" in message
    assert (
        "https://artifacts.opensearch.org/releases/bundle/opensearch/2.19.6/opensearch-2.19.6-linux-x64.tar.gz"
        in message
    )
    assert "https://artifacts.opensearch.org/releases/plugins/analysis-icu/2.19.6/analysis-icu-2.19.6.zip" in message


# --- heap, unit, host limits ------------------------------------------------------------------


def test_heap_from_the_hosts_memory(site):
    inv = site(layout(2, pattern="single", search_roles="search")).inv
    gib = 1024 * 1024
    assert se.heap_mb(inv.host("search1"), 16 * gib) == 8192  # half of a dedicated host
    assert se.heap_mb(inv.host("search1"), 128 * gib) == 31744  # compressed oops: below 32 GB
    assert se.heap_mb(inv.host("search1"), 256 * 1024) == 256  # a floor on tiny hosts
    assert se.heap_mb(inv.host("job1"), 16 * gib) == 512  # the tiebreaker: manager_heap_mb
    shared = site(layout(2, pattern="single", search_roles="search, app")).inv
    assert se.heap_mb(shared.host("search1"), 16 * gib) == 4096  # a quarter beside other roles
    fixed = site(layout(2, extra=", heap_mb: 512, manager_heap_mb: 256")).inv
    assert se.heap_mb(fixed.host("search2"), 16 * gib) == 512
    assert se.heap_mb(fixed.host("job1"), 16 * gib) == 256


def test_heap_options_file(site):
    ctx = site(layout(2))
    steps = se.Search().steps(ctx("search1"))
    heap = step_named(steps, "file /etc/opensearch/jvm.options.d/heap.options")
    assert heap.content == b"-Xms8192m\n-Xmx8192m\n"
    assert (heap.owner, heap.group, heap.mode) == ("root", "opensearch", "0640") and heap.notify == ("restart",)


def test_unit_and_its_open_file_limit(site):
    ctx = site(layout(2))
    unit = step_named(se.Search().steps(ctx("search1")), "file /etc/systemd/system/opensearch.service")
    text = unit.content.decode()
    for line in (
        "Type=simple",
        "User=opensearch",
        "WorkingDirectory=/opt/opensearch",
        "Environment=OPENSEARCH_HOME=/opt/opensearch",
        "Environment=OPENSEARCH_PATH_CONF=/etc/opensearch",
        "Environment=OPENSEARCH_JAVA_HOME=/opt/opensearch/jdk",
        "ExecStart=/opt/opensearch/bin/opensearch --quiet",
        "LimitNOFILE=65535",
        "LimitNPROC=4096",
        "TimeoutStartSec=180",
        "TimeoutStopSec=60",
        "KillMode=process",
        "SuccessExitStatus=143",
    ):
        assert line in text.splitlines(), line
    assert unit.then == "systemctl daemon-reload" and unit.notify == ("restart",)
    # A host whose hard limit is lower gets it (systemd could not start the unit above it).
    capped = site(layout(2), facts=FakeFacts(hard_nofile="20000"))
    text = step_named(se.Search().steps(capped("search1")), "file /etc/systemd/system/opensearch.service").content
    assert b"LimitNOFILE=20000\n" in text
    assert se.nofile_limit("unlimited") == 65535


def test_release_side_by_side_with_plugin_before_it_goes_live(site):
    steps = se.Search().steps(site(layout(2))("search1"))
    names = [s.name for s in steps]
    unpack = names.index("release opensearch 2.19.6 in /opt/opensearch-releases/2.19.6")
    java = names.index("Java runtime in /opt/opensearch-releases/2.19.6/jdk")
    plugin = names.index("plugin analysis-icu 2.19.6 in /opt/opensearch-releases/2.19.6")
    activate = names.index("activate release 2.19.6")
    assert unpack < java < plugin < activate
    assert steps[activate].unless == 'test "$(readlink /opt/opensearch)" = /opt/opensearch-releases/2.19.6'
    assert "ln -sfn /opt/opensearch-releases/2.19.6 /opt/opensearch" in steps[activate].script
    config = step_named(steps, "jvm.options and log4j2.properties")
    assert "s#logs/#/var/log/opensearch/#g" in config.script and "HeapDumpPath=/var/lib/opensearch" in config.script
    sysctl = step_named(steps, "sysctl vm.max_map_count")
    assert isinstance(sysctl, Sysctl) and sysctl.minimum and sysctl.value == "262144"
    keystore = step_named(steps, "keystore")
    assert keystore.unless == "test -f /etc/opensearch/opensearch.keystore" and "chmod 0660" in keystore.script


def test_exporter_on_data_nodes_only(site):
    ctx = site(layout(2))
    data = se.Search().steps(ctx("search1"))
    env = step_named(data, "file /etc/default/prometheus-elasticsearch-exporter")
    assert b'ARGS="--es.uri=http://10.0.0.41:9200 --es.timeout=10s --web.listen-address=10.0.0.41:9114"' in env.content
    assert not [s for s in se.Search().steps(ctx("job1")) if "exporter" in s.name]


# --- Java, plugin, sysctl -------------------------------------------------------------------------


def test_java_from_the_release_or_debians_openjdk():
    java = se.JavaRuntime("/opt/opensearch-releases/2.19.6", "debian 12 bookworm")
    (probe,) = java.facts()
    assert java.check({probe: Fact(0, "unpacked\njava\n")}) is None  # the release brings jdk/
    assert (
        java.check({probe: Fact(0, "unpacked\n")}).summary
        == "install openjdk-17-jre-headless, link it as jdk/ (the release brings no JDK)"
    )
    assert "once unpacked" in java.check({probe: Fact(1, "")}).summary
    assert se.JavaRuntime("/r", "debian 13 trixie").package == "openjdk-21-jre-headless"
    # From the one map of distributions (distros.py): Ubuntu 24.04's is 21, linked as such.
    noble = se.JavaRuntime("/r", "ubuntu 24.04 noble")
    assert (noble.package, noble.java) == ("openjdk-21-jre-headless", 21)


def test_plugin_reinstalled_only_for_another_zip():
    e = se.ENGINES["opensearch"]
    artifact = se.Artifact("opensearch-analysis-icu", "2.19.6", "/tmp/analysis-icu-2.19.6.zip", "c" * 64)
    plugin = se.Plugin(e, artifact, "/opt/opensearch-releases/2.19.6", False)
    (probe,) = plugin.facts()
    assert plugin.check({probe: Fact(0, "c" * 64 + "\n")}) is None
    assert plugin.check({probe: Fact(1, "")}).summary.startswith("install analysis-icu-2.19.6.zip")


def test_sysctl_minimum_accepts_a_higher_value_and_never_writes_it():
    step = Sysctl("vm.max_map_count", 262144, minimum=True)
    (probe,) = step.facts()
    persisted = "vm.max_map_count = 262144\n"
    assert step.check({probe: Fact(0, f"262144\n|\n{persisted}")}) is None
    assert step.check({probe: Fact(0, f"1048576\n|\n{persisted}")}) is None
    assert step.check({probe: Fact(0, f"65530\n|\n{persisted}")}).summary == "live 65530 -> 262144"
    only_file = step.check({probe: Fact(0, "262144\n|\n")})
    assert only_file.summary == "persist in /etc/sysctl.d/60-mmdeploy-vm.max_map_count.conf"

    class Recorder:
        scripts = []

        def run(self, script, **kw):
            self.scripts.append(script)
            return Result(0, "", "")

    remote = Recorder()
    step.apply(remote, only_file)  # a read-only /proc/sys is never written when high enough
    assert "sysctl -q -w" not in remote.scripts[0] and "/etc/sysctl.d/" in remote.scripts[0]


# --- Elasticsearch ----------------------------------------------------------------------------------


def test_elasticsearch_rendering(site):
    ctx = site(layout(2, extra=", engine: elasticsearch, version: 8.19.3"))
    steps = se.Search().steps(ctx("search1"))
    conf = yaml.safe_load(step_named(steps, "file /etc/elasticsearch/elasticsearch.yml").content)
    assert conf["node.roles"] == ["master", "data"]
    assert conf["cluster.initial_master_nodes"] == ["search1", "search2", "job1"]
    assert conf["xpack.security.enabled"] is False
    assert "cluster.default_number_of_replicas" not in conf  # not an Elasticsearch setting
    tie = yaml.safe_load(
        step_named(se.Search().steps(ctx("job1")), "file /etc/elasticsearch/elasticsearch.yml").content
    )
    assert tie["node.roles"] == ["master", "voting_only"]
    unit = step_named(steps, "file /etc/systemd/system/elasticsearch.service").content.decode()
    assert (
        "Environment=ES_PATH_CONF=/etc/elasticsearch" in unit
        and "Environment=ES_JAVA_HOME=/opt/elasticsearch/jdk" in unit
    )
    assert "ExecStart=/opt/elasticsearch/bin/elasticsearch --quiet" in unit and "User=elasticsearch" in unit
    tarball, icu = se.artifacts(ctx.inv.settings)
    assert (
        tarball.url == "https://artifacts.elastic.co/downloads/elasticsearch/elasticsearch-8.19.3-linux-x86_64.tar.gz"
    )
    assert (
        icu.url == "https://artifacts.elastic.co/downloads/elasticsearch-plugins/analysis-icu/analysis-icu-8.19.3.zip"
    )
    (plugin,) = [s for s in steps if isinstance(s, se.Plugin)]
    assert plugin.engine.name == "elasticsearch" and plugin.release == "/opt/elasticsearch-releases/8.19.3"


# --- what other components see ------------------------------------------------------------------------


def test_balanced_layer_and_scrape_targets_leave_out_the_tiebreaker(site):
    inv = site(layout(2)).inv
    (layer,) = [(b, hosts) for b, hosts in registry().balanced_layers(inv) if b.name == "search"]
    balanced, hosts = layer
    assert [h.name for h in hosts] == ["search1", "search2"]
    assert balanced.port_for(inv.settings) == 9200 and balanced.clients == ("app", "jobserver")
    assert balanced.health == "/_cluster/health?master_timeout=2s"
    assert balancer.endpoint(inv, "search") == ("192.0.2.1", 9200)  # the proxy host
    jobs = dict(registry().scrape_jobs(inv))
    assert [(h.name, m.port) for h, m in jobs["search"]] == [("search1", 9114), ("search2", 9114)]


def test_replicas_for_mattermost():
    s = se.SearchSettings()
    assert (s.replicas_for(1), s.replicas_for(2), s.replicas_for(3)) == (0, 1, 1)
    assert se.SearchSettings(replicas=2).replicas_for(3) == 2


# --- restarts -------------------------------------------------------------------------------------


def test_restart_skips_a_node_this_run_started_and_waits_for_green(site):
    ctx = site(layout(2))
    handler = se.Search().handlers(ctx("search1"))["restart"]
    assert isinstance(handler, se.RollingRestart) and isinstance(handler, Command)
    assert "-ge 1700000000 ]" in handler.script  # the run's start on the host's clock
    assert "wait_for_status=green&timeout=300s" in handler.script
    assert handler.script.index("green=yes") < handler.script.index("systemctl restart opensearch")


def test_restarts_run_one_node_at_a_time(site):
    ctx = site(layout(2))
    handlers = [se.Search().handlers(ctx(n))["restart"] for n in ("search1", "search2", "job1")]
    running, overlap = [], []

    class Slow:
        def run(self, script, **kw):
            running.append(1)
            if len(running) > 1:
                overlap.append(True)
            time.sleep(0.2)
            running.pop()
            return Result(0, "", "")

    threads = [threading.Thread(target=h.apply, args=(Slow(), Change("run"))) for h in handlers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap


def test_verify_takes_yellow_for_a_warning_only_while_a_node_is_down(write_inventory, monkeypatch):
    """Three search nodes, search1 dead: the first node asked is a live one, the cluster
    is waited for until yellow (its replicas not reassigned yet), and yellow is a warning
    naming search1. With every node up, yellow stays a failure; red always fails."""
    from mmdeploy.component import Warn, hosts_down

    inv = inventory.load(write_inventory(layout(3)))
    asked, state = [], {"status": "yellow"}

    def node_get(host, path, timeout=15):
        asked.append((host.name, path.split("?")[0], path))
        if path.startswith("/_cluster/health"):
            return {"status": state["status"], "unassigned_shards": 4}
        if path.startswith("/_cat/nodes"):
            return [{"name": "search2"}, {"name": "search3"}]
        return [{"node": "search2"}]

    monkeypatch.setattr(se, "_node_get", node_get)
    with hosts_down(frozenset({"search1"})):
        found = se.cluster_problem(inv, wait=1)
    assert isinstance(found, Warn) and found == "yellow (4 replica shards unassigned), search1 down"
    assert {name for name, _, _ in asked} == {"search2"}
    assert "wait_for_status=yellow" in asked[0][2]
    state["status"] = "red"
    with hosts_down(frozenset({"search1"})):
        assert se.cluster_problem(inv, wait=1) == "status red (4 unassigned shards)"
    state["status"] = "yellow"
    assert se.cluster_problem(inv, wait=1) == "status yellow (4 unassigned shards); not in the cluster: search1"


def _quorum_kept(states: list, name: str = "search1", wait: int = 5):
    """Run the restart's quorum probe here against a fake cluster API answering `states`
    in turn (the last one repeated; None: no elected manager); (exit code, stderr, asks)."""
    import subprocess

    from .fakehttp import serving

    asked = []

    def answer(path):
        asked.append(path)
        return states[min(len(asked), len(states)) - 1]

    with serving(answer) as url:
        script = se._QUORUM_KEPT.format(url=url, name=name, wait=wait)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    return done.returncode, done.stderr, len(asked)


def _state(voting, nodes):
    return {
        "metadata": {"cluster_coordination": {"last_committed_config": voting}},
        "nodes": {node: {"name": name} for node, name in nodes.items()},
    }


def test_a_node_restarts_only_when_the_others_keep_a_quorum():
    """Growing two search hosts and their tiebreaker into three: the firewall cut the
    tiebreaker off, the voting configuration still names it; search1 restarts only once
    search3 joined and took its place. Three voters of which two others are up: at once."""
    up = {"a": "search1", "b": "search2", "c": "job1"}
    assert _quorum_kept([_state(["a", "b", "c"], up)]) == (0, "", 1)
    cut = {"a": "search1", "b": "search2"}
    joined = {**cut, "d": "search3"}
    rc, _, asked = _quorum_kept(
        [_state(["a", "b", "c"], cut), _state(["a", "b", "c"], cut), _state(["a", "b", "d"], joined)]
    )
    assert rc == 0 and asked == 3
    rc, err, _ = _quorum_kept([_state(["a", "b", "c"], cut)], wait=2)
    assert rc == 1 and "restarting search1 would leave 1 of the 3 voting nodes (search2): no quorum" in err
    # A single node, or a cluster without an elected manager (nothing to keep): at once.
    assert _quorum_kept([_state(["a"], {"a": "search1"})])[0] == 0
    assert _quorum_kept([None])[:2] == (0, "")
