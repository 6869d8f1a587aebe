"""The cluster pattern end to end (issue 9): `inv up --pattern cluster` on 18 fresh bed hosts
(two proxies, each the master of one of two floating addresses; three Mattermost servers
and a job server; three search, four storage and two push nodes; three DB nodes under
Patroni with etcd; monitoring and alerting on the job host), verify, a second deploy that
changes nothing; then the chaos round of tests/e2e/chaos.py: one node of each kind only the
cluster pattern has (the DB leader, an etcd member, the proxy holding the first address,
the job server with monitoring) killed in turn while clients post through both addresses,
with no command run; the balanced tiers' nodes are lost on the multi bed (test_multi), and
benchmarks/chaos.py kills one of every kind. After the round,
the killed nodes are back by themselves or through one deploy, a deploy after it changes
nothing, verify passes, and no acknowledged post is lost.

The rolling upgrade and its rollback are asserted on three app servers behind two proxies'
floating address (test_upgrade); benchmarks/chaos.py runs them on this bed too and prints
the same figures.

One bed for the module, made by `inv up` on the suite's bed number (the `bed` fixture
makes a fresh one for the next module, as after test_multi).
"""

from __future__ import annotations

import json
import time

import pytest

import mmdeploy

from tests.e2e import chaos, multi_site, portscan
from tests.e2e.conftest import figures
from tests.e2e.test_multi import cli, deployed, inv_up

pytestmark = pytest.mark.e2e

FIGURES = figures("cluster pattern (tests/e2e/test_cluster_pattern.py)")


@pytest.fixture(scope="module")
def up():
    yield from inv_up("cluster", FIGURES, 3000)


@pytest.fixture(scope="module")
def site(up):
    return deployed(up, "cluster")


def test_inv_up_deploys_the_cluster_pattern_and_verify_passes(up, site):
    assert "FAIL" not in up.stdout
    checks = json.loads(cli("verify", "--inventory", str(site.path), "--json").stdout)
    failing = [c for c in checks["checks"] if not c["ok"]]
    assert checks["ok"] and not failing, failing
    names = "\n".join(c["name"] for c in checks["checks"])
    vips = [v.split("/")[0] for v in site.inv.settings.proxy.vips]
    assert len(vips) == 2  # active-active: each proxy the master of one
    for expected in (
        *(f"exactly one proxy holds {vip}" for vip in vips),
        "every app server in the cluster (cluster/status)",
        "websocket on app2, app3 receives a post made on app1",
        "patroni: one leader, a synchronous standby, every member running",
        "etcd: a quorum of 3 members with one leader",
        "search cluster mattermost: green, 3 node(s), one elected cluster manager",
        "SeaweedFS: every file has its copies",
    ):
        assert expected in names, f"verify has no check {expected!r}:\n{names}"


def test_a_second_deploy_changes_nothing(site):
    t0 = time.monotonic()
    report = json.loads(cli("deploy", "--inventory", str(site.path), "--yes", "--json").stdout)
    assert report["ok"] and report["changed"] == 0, [s for s in report["steps"] if s["status"] != "ok"]
    FIGURES["no-op inv deploy, whole process (s)"] = round(time.monotonic() - t0, 2)


def test_each_tier_reaches_exactly_its_flows(site):
    """The host firewall (issue #16): a port scan from a host of each tier finds open
    exactly the flows the topology declares for that tier, every other port dropped."""
    assert len(portscan.assert_each_tier_reaches_exactly_its_flows(site.inv)) >= 7
    # Mattermost, Prometheus and the exporters on the private address only.
    portscan.assert_bound_to_private_addresses(site.inv, portscan.PRIVATE_ONLY)


@pytest.fixture(scope="module")
def round_(site):
    faults, totals = chaos.round_(site, kinds=chaos.CLUSTER_KINDS)
    table = {
        f"{f.kind} ({f.host})": {
            "gap (s)": f.gap and round(f.gap, 2),
            "files missed at first": f.files_failed,
            "alert": f.alert,
            "verify (s)": f.verify_seconds and round(f.verify_seconds, 1),
        }
        for f in faults
    }
    FIGURES["chaos round: longest gap between acknowledged posts per fault"] = table
    FIGURES["chaos round: totals"] = totals
    return faults, totals


def test_chaos_round_loses_no_acknowledged_post(round_):
    faults, totals = round_
    assert totals["posts acknowledged"] > 0 and totals["posts lost"] == 0, multi_site.SAID[-12:]


@pytest.mark.parametrize("kind", chaos.CLUSTER_KINDS)
def test_chaos_each_fault_is_survived(round_, kind):
    faults, totals = round_
    fault = next(f for f in faults if f.kind == kind)
    said = "\n".join(multi_site.SAID[-12:])
    assert fault.back_after is not None, f"posting did not work again through both addresses: {said}"
    assert fault.files_back is not None, said  # every earlier file downloads (the first-pass misses are figures)
    assert fault.found_after is not None, said
    # Not the job server: it runs Alertmanager. Not etcd: systemd starts it again at once.
    if kind not in ("job server", "etcd member"):
        assert fault.alert, f"no alert for {fault.host} in Alertmanager: {said}"
    # verify passes while the node is down, and names it as down (etcd: only its process
    # was killed, and systemd started it again: no host is down).
    assert fault.verify_ok, f"verify failed with {fault.host} down: {fault.verify_failing}"
    assert fault.verify_down == ([] if fault.how != "docker kill" else [fault.host]), fault.verify_down


def test_after_the_round_one_deploy_heals_then_nothing_changes_and_verify_passes(round_, site):
    first = json.loads(cli("deploy", "--inventory", str(site.path), "--yes", "--json").stdout)
    assert first["ok"], [s for s in first["steps"] if s["status"] not in ("ok", "changed")]
    again = json.loads(cli("deploy", "--inventory", str(site.path), "--yes", "--json").stdout)
    assert again["ok"] and again["changed"] == 0, [s for s in again["steps"] if s["status"] != "ok"]
    checks = json.loads(cli("verify", "--inventory", str(site.path), "--json").stdout)
    assert checks["ok"], [c for c in checks["checks"] if not c["ok"]]
    FIGURES["healing deploy changes"] = first["changed"]
    # The old DB leader is a replica, never a second writer.
    states = mmdeploy.db_status(site.inv)
    assert sum(s.writable for s in states) == 1, [(s.host.name, s.role) for s in states]
    # Every alert of the round resolved once the nodes were back.
    left = multi_site.wait(lambda: not chaos.still_firing(site), 180, 5)
    assert left is not None, chaos.still_firing(site)
