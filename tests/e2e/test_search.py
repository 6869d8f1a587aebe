"""The search component on the test bed (issues 8 and 9): two search hosts and a job +
monitoring host, which carries the data-less cluster-manager tiebreaker. OpenSearch 2.19.6
from Maven Central with the analysis-icu stand-in (tests/standin/artifacts.py), installed
through the same tarball + plugin zip path as the official archives.

Deploy, deploy again (0 changes), a green cluster of 3 nodes with one elected manager, an
index with Mattermost's analysis (icu_tokenizer, icu_normalizer, snowball, stop) with its
replica on the other data node, Prometheus scraping the exporter; then `docker kill` of a
search host: the cluster stays available (yellow), search answers and indexes a new post
which it finds; the host back, a deploy brings the cluster back to green. Prints the
install time, the time to green and the longest search gap on the node's loss.

The bed is three generic hosts rewritten: host1 is the job + monitoring host (it also
carries the single pattern's other roles: as the proxy it runs HAProxy, the internal
balancer, and as an app and job server it is the balancer's client; the rest is not
deployed here: --only), host2 and host3 are the search hosts. Search is measured through
the balancer from host1, as Mattermost would use it, and on a surviving node directly (from
host1 too: the host firewall lets only the balancer's host reach the nodes' HTTP port).
"""

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

import mmdeploy
from mmdeploy import balancer, testbed
from mmdeploy.testbed.containers import ssh_answers

from .conftest import ROOT, inv, metric, on

pytestmark = pytest.mark.e2e
S1, S2, TIE = "host2", "host3", "host1"  # the search hosts and the tiebreaker's host
# The host firewall too (on by default): the cluster forms and answers through its rules.
ONLY = ("--only", "base,firewall,node-exporter,search,haproxy,prometheus")
TEMPLATE = {
    "index_patterns": ["mmtest_posts_*"],
    "template": {
        # What Mattermost's post template sets (PostIndexShards/PostIndexReplicas = search.replicas).
        "settings": {
            "index": {"number_of_shards": "1", "number_of_replicas": "1"},
            "analysis": {
                "char_filter": {
                    "leading_underscores": {
                        "type": "pattern_replace",
                        "pattern": r"(^|[\s\r\n])_",
                        "replacement": "$1",
                    },
                    "trailing_underscores": {
                        "type": "pattern_replace",
                        "pattern": r"_([\s\r\n]|$)",
                        "replacement": "$1",
                    },
                },
                "filter": {
                    "mm_snowball": {"type": "snowball", "language": "English"},
                    "mm_stop": {"type": "stop", "stopwords": "_english_"},
                },
                "analyzer": {
                    "mm_lowercaser": {
                        "tokenizer": "icu_tokenizer",
                        "filter": ["icu_normalizer", "mm_snowball", "mm_stop"],
                        "char_filter": ["leading_underscores", "trailing_underscores"],
                    }
                },
            },
        },
        "mappings": {
            "properties": {
                "message": {"type": "text", "analyzer": "mm_lowercaser"},
                "channel_id": {"type": "keyword"},
                "create_at": {"type": "long"},
            }
        },
    },
}
INDEX = "mmtest_posts_2026_11_29"


def api(address: str, path: str, body=None, method: str | None = None, timeout: float = 30):
    """OpenSearch's REST API of the node at `address`, asked from the tiebreaker's host (the
    balancer's host, which the host firewall lets reach the nodes' HTTP port; this machine
    is not let in: no real operator's machine talks to the nodes directly)."""
    command = ["curl", "-sS", "--fail-with-body", "-m", str(timeout), "-H", "Content-Type: application/json"]
    command += ["-X", method or ("POST" if body is not None else "GET")]
    command += ["--data-binary", "@-"] if body is not None else []
    try:
        p = subprocess.run(
            ["docker", "exec", "-i", testbed.container_name(TIE), *command, f"http://{address}:9200{path}"],
            input=json.dumps(body) if body is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
    except subprocess.TimeoutExpired as e:
        raise OSError(f"{path} on {address}: no answer in {timeout} s") from e
    if p.returncode != 0:
        raise OSError(f"{path} on {address}: curl exited {p.returncode}: {p.stderr.strip()} {p.stdout[:300]}")
    return json.loads(p.stdout)


def changed_total(output: str) -> int:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    assert total[1] == "0", output
    return int(total[0])


def find(address: str, words: str) -> list[str]:
    found = api(
        address, f"/{INDEX}/_search", {"query": {"match": {"message": {"query": words, "operator": "and"}}}}, timeout=10
    )
    return [h["_id"] for h in found["hits"]["hits"]]


def wait_for_status(address: str, status: str, seconds: int = 300, nodes: int = 3) -> dict:
    return api(
        address,
        f"/_cluster/health?wait_for_status={status}&wait_for_nodes={nodes}&timeout={seconds}s",
        timeout=seconds + 10,
    )


@pytest.fixture(scope="module")
def site(bed):
    from tests.standin import artifacts

    generic = bed(hosts=3, fresh=True)
    document = yaml.safe_load(generic.read_text())
    for host in document["hosts"]:
        if host["name"] != TIE:
            host["roles"] = ["search"]
    document["settings"].update(artifacts.bed_settings({"search"}))
    # This machine reads the search exporter, as a central Prometheus outside the
    # deployment would: the operator allows it so.
    document["settings"]["firewall"] = {"monitoring_cidrs": [testbed.GATEWAY]}
    path = generic.with_name(generic.name.replace("-3.yml", "-search.yml"))
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.with_name(path.stem + ".secrets.yml").unlink(missing_ok=True)
    artifacts.prepare_bed([(h["name"], h["roles"]) for h in document["hosts"]])  # before any deploy
    path = str(path)
    t0 = time.monotonic()
    first = inv("deploy", "--inventory", path, *ONLY, "--yes")
    installed = time.monotonic() - t0
    inventory = mmdeploy.load(path)
    addr = {h.name: h.address for h in inventory.hosts}
    health = wait_for_status(addr[S1], "green")
    green = time.monotonic() - t0
    print(f"\nsearch: first deploy (install + cluster formed) {installed:.0f} s, green {green:.0f} s after it began")
    return {"path": path, "inv": inventory, "addr": addr, "first": first, "health": health}


def test_cluster_of_two_data_nodes_and_a_tiebreaker(site):
    assert site["health"]["status"] == "green"
    assert site["health"]["number_of_nodes"] == 3 and site["health"]["number_of_data_nodes"] == 2
    nodes = api(site["addr"][S1], "/_cat/nodes?format=json&h=name,node.role,cluster_manager,heap.max")
    roles = {n["name"]: n["node.role"] for n in nodes}
    assert roles == {S1: "dm", S2: "dm", TIE: "m"}  # the tiebreaker holds no data
    assert sum(n["cluster_manager"] == "*" for n in nodes) == 1
    heaps = {n["name"]: n["heap.max"] for n in nodes}
    assert heaps == {S1: "512mb", S2: "512mb", TIE: "256mb"}  # the bed's settings
    for host in (S1, S2, TIE):
        conf = on(host, "cat /etc/opensearch/opensearch.yml")
        assert "cluster.initial_cluster_manager_nodes" not in conf  # removed once the cluster formed
        unit = on(host, "cat /etc/systemd/system/opensearch.service")
        assert "LD_PRELOAD" not in unit and "LimitNOFILE=20000" in unit  # the bed's hard limit
        assert on(host, "readlink /opt/opensearch").strip() == "/opt/opensearch-releases/2.19.6"
        assert on(host, "ls /opt/opensearch/plugins").split() == ["analysis-icu"]
    verify = inv("verify", "--inventory", site["path"], "--only", "search,haproxy")
    assert "ok   search cluster mattermost: green, 3 node(s), one elected cluster manager" in verify.stdout
    assert f"ok   HAProxy on {TIE}: every server of search up" in verify.stdout
    # Through the balancer from a client host, to the data nodes only (the tiebreaker's HTTP
    # is on its loopback interface; HAProxy listens on the same host's private address).
    host, port = balancer.endpoint(site["inv"], "search")
    assert host == site["addr"][TIE]
    assert '"number_of_data_nodes":2' in on(TIE, f"curl -s -m 10 http://{host}:{port}/_cluster/health")
    assert "127.0.0.1:9200" in on(TIE, "ss -Hltn 'sport = :9200'")


def test_second_deploy_changes_nothing(site):
    again = inv("deploy", "--inventory", site["path"], *ONLY, "--yes")
    assert changed_total(again.stdout) == 0


def test_mattermost_like_index_with_icu_analysis(site):
    a = site["addr"]
    assert api(a[S1], "/_index_template/mmtest_posts", TEMPLATE, "PUT")["acknowledged"]
    api(
        a[S1],
        f"/{INDEX}/_doc/p1?refresh=true",
        {"message": "Größere Übersetzungen running quickly 日本語のテキスト", "channel_id": "c1", "create_at": 1},
        "PUT",
    )
    # icu_normalizer folds ß, snowball stems, icu_tokenizer splits Japanese: asked of the other node.
    assert find(a[S2], "grössere") == ["p1"]
    assert find(a[S2], "run") == ["p1"]
    assert find(a[S2], "テキスト") == ["p1"]
    wait_for_status(a[S1], "green", 120)
    shards = api(a[S1], f"/_cat/shards/{INDEX}?format=json&h=prirep,node,state")
    assert sorted((s["prirep"], s["state"]) for s in shards) == [("p", "STARTED"), ("r", "STARTED")]
    assert sorted(s["node"] for s in shards) == [S1, S2]  # a copy on each data node


def test_prometheus_scrapes_the_search_exporter(site):
    a = site["addr"]
    assert metric(a[S1], 9114, 'elasticsearch_cluster_health_status{cluster="mattermost",color="green"} 1')
    url = f"http://{a[TIE]}:9090/api/v1/targets?state=active"
    deadline = time.monotonic() + 90
    while True:
        with urllib.request.urlopen(url, timeout=10) as r:
            targets = [t for t in json.load(r)["data"]["activeTargets"] if t["labels"]["job"] == "search"]
        up = sorted(t["labels"]["host"] for t in targets if t["health"] == "up")
        if up == [S1, S2] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert up == [S1, S2], targets


PROBE = "/tmp/mmtest-search-probe"


def start_probe(host: str, url: str) -> None:
    """A search every 0.2 s from `host` (a client of the balancer), each answer's time and
    HTTP status logged on the host."""
    loop = (
        f"echo $$ > {PROBE}.pid; while :; do t=$(date +%s.%N); "
        f"c=$(curl -s -o /dev/null -m 3 -w '%{{http_code}}' '{url}/{INDEX}/_search?q=message:gr%C3%B6ssere'); "
        f'echo "$t $c"; sleep 0.2; done > {PROBE}.log'
    )
    subprocess.run(["docker", "exec", "-d", testbed.container_name(host), "bash", "-c", loop], check=True)


def stop_probe(host: str) -> tuple[float, int, int]:
    """(longest time between two answers, answers, failures) of the probe, which is stopped."""
    on(host, f"kill $(cat {PROBE}.pid)")
    ok, failed, gap, last = 0, 0, 0.0, None
    for line in on(host, f"cat {PROBE}.log").splitlines():
        t, code = line.split()
        if code == "200":
            gap = max(gap, float(t) - last) if last is not None else gap
            last, ok = float(t), ok + 1
        else:
            failed += 1
    return gap, ok, failed


class Searcher(threading.Thread):
    """Searches every 0.2 s, asking the nodes in turn until one answers (as a balancer
    would); records the longest time without an answer."""

    def __init__(self, *addresses: str):
        super().__init__(daemon=True)
        self.addresses, self.stop = addresses, threading.Event()
        self.last_ok = time.monotonic()
        self.gap = 0.0
        self.answers = self.failures = 0

    def run(self):
        while not self.stop.is_set():
            for address in self.addresses:
                try:
                    if find(address, "grössere") == ["p1"]:
                        now = time.monotonic()
                        self.gap = max(self.gap, now - self.last_ok)
                        self.last_ok = now
                        self.answers += 1
                        break
                except (OSError, urllib.error.URLError, ValueError):
                    self.failures += 1
            time.sleep(0.2)


def test_search_survives_the_loss_of_a_search_node(site):
    a = site["addr"]
    manager = api(a[S1], "/_cat/cluster_manager?format=json")[0]["node"]
    # The elected manager when it is a data node (the worst case), else the second one.
    victim = manager if manager in (S1, S2) else S2
    survivor = S2 if victim == S1 else S1
    host, port = balancer.endpoint(site["inv"], "search")
    start_probe(TIE, f"http://{host}:{port}")
    searcher = Searcher(a[survivor])
    searcher.start()
    time.sleep(2)
    killed = time.monotonic()
    subprocess.run(["docker", "kill", testbed.container_name(victim)], check=True, capture_output=True)
    try:
        # Still available: a manager (the tiebreaker's vote keeps the quorum), yellow.
        health = wait_for_status(a[survivor], "yellow", 120, nodes=2)
        assert health["status"] == "yellow" and health["number_of_nodes"] == 2, health
        api(
            a[survivor],
            f"/{INDEX}/_doc/p2?refresh=true",
            {"message": "written after the node died", "channel_id": "c1", "create_at": 2},
            "PUT",
        )
        assert find(a[survivor], "after node died") == ["p2"]
        time.sleep(10)  # the balancer keeps answering once its checks took the node out
    finally:
        searcher.stop.set()
        searcher.join()
        through = stop_probe(TIE)
    print(
        f"\nsearch: {victim} killed (manager was {manager}); longest search gap through the balancer: "
        f"{through[0]:.1f} s ({through[1]} answers, {through[2]} failed); on {survivor} directly: "
        f"{searcher.gap:.1f} s ({searcher.answers} answers, {searcher.failures} failures); "
        f"new post indexed and found {time.monotonic() - killed:.1f} s after the kill"
    )
    assert searcher.answers > 10 and through[1] > 5
    # HAProxy takes the dead node out (2 failed checks 2 s apart) and redispatches
    # connections that fail; a search in flight at the kill may fail (a 502).
    assert through[0] < 10 and through[2] <= 3

    # The host back: the unit starts with the container; a deploy brings it back in line.
    subprocess.run(["docker", "start", testbed.container_name(victim)], check=True, capture_output=True)
    back = time.monotonic()
    while not ssh_answers(testbed.key_path(ROOT), a[victim]):
        assert time.monotonic() - back < 120, f"{victim} did not answer SSH after its restart"
        time.sleep(1)
    redeploy = inv("deploy", "--inventory", site["path"], *ONLY, "--yes")
    health = wait_for_status(a[survivor], "green", 600)
    print(
        f"search: {victim} back; deploy changed {changed_total(redeploy.stdout)} step(s); "
        f"green {time.monotonic() - back:.0f} s after the container started"
    )
    assert health["status"] == "green" and health["number_of_nodes"] == 3
    assert find(a[victim], "after node died") == ["p2"]  # the post written while it was down
    verify = inv("verify", "--inventory", site["path"], "--only", "search")
    assert "ok   search cluster mattermost: green, 3 node(s)" in verify.stdout


def test_a_configuration_change_restarts_one_node_at_a_time(site):
    """A new heap on the data nodes: each restarts only once the cluster is green again, so
    one of them always answers (the tiebreaker's heap is unchanged: it is not restarted)."""
    a = site["addr"]
    wait_for_status(a[S1], "green", 300)
    searcher = Searcher(a[S1], a[S2])
    searcher.start()
    t0 = time.monotonic()
    try:
        run = inv("deploy", "--inventory", site["path"], *ONLY, "--set", "search.heap_mb=448", "--yes")
    finally:
        searcher.stop.set()
        searcher.join()
    restarts = re.findall(r"^(\S+)\s+search\s+~ handler restart: run", run.stdout, re.M)
    print(
        f"\nsearch: heap change deployed in {time.monotonic() - t0:.0f} s, restarts on {', '.join(restarts)}; "
        f"longest time with no data node answering a search: {searcher.gap:.1f} s"
    )
    assert sorted(restarts) == [S1, S2]
    assert searcher.gap < 10 and searcher.answers > 10
    nodes = api(a[S1], "/_cat/nodes?format=json&h=name,heap.max")
    assert {n["name"]: n["heap.max"] for n in nodes} == {S1: "448mb", S2: "448mb", TIE: "256mb"}
    assert wait_for_status(a[S1], "green", 60)["status"] == "green"
