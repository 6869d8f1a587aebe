"""Two Mattermost app servers in cluster mode on the `pair` bed (proxy1; app1 and app2, each
with a push proxy and SeaweedFS S3 storage; job1 with the job server, monitoring, the
database and the storage's third master), the config in the database as in the multi
pattern, with the stand-in release and the push proxy stand-in.

The license gate end to end: without a license everything is deployed and verify says which
features are inactive, and the cross-node websocket check fails as it must; a license
without the cluster feature is a warning; the full license, a changed file the server would
ignore, is uploaded by the deploy and the cluster forms. Then the quiet HA failure of a node
with another ClusterName fails verify, naming that node.

Mattermost reaches the push proxies and the S3 gateways through the internal balancer
(HAProxy on proxy1). Not here: search (its e2e is the search component's; the bulk index job
and the search check are unit-tested)."""

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

import mmdeploy
from mmdeploy import releases
from mmdeploy.components import mattermost as mm
from mmdeploy.inventory import merge

from .conftest import ROOT, inv, on
from .test_single import totals

pytestmark = pytest.mark.e2e
CROSS = ["every app server in the cluster (cluster/status)", "websocket on app2 receives a post made on app1"]


def checks(output: str) -> dict[str, tuple[str, str]]:
    """verify's lines: name -> (ok | warn | FAIL, detail)."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"^(ok|warn|FAIL) +([^:]+?)(?:: (.*))?$", line)
        if m:
            found[m.group(2)] = (m.group(1), m.group(3) or "")
    return found


@pytest.fixture(scope="module")
def site(bed):
    from tests.standin import bed as standin_bed

    base = Path(bed("pair", fresh=True))
    data = yaml.safe_load(base.read_text())
    roles = {r for h in data["hosts"] for r in h["roles"]}
    settings = merge(data["settings"], standin_bed.settings(ROOT, roles, licensed=False))
    settings["mattermost"]["config_in_database"] = True  # as the multi pattern does
    data["settings"] = settings
    path = base.with_name(base.stem + "-cluster.yml")
    path.with_name(path.stem + ".secrets.yml").unlink(missing_ok=True)

    def write(**mattermost) -> str:
        data["settings"]["mattermost"].update(mattermost)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    write.path, write.data = str(path), data
    return write


def verify(path) -> tuple[dict, str]:
    p = inv("verify", "--inventory", path, check=False)
    return checks(p.stdout), p.stdout + p.stderr


def test_unlicensed_everything_deployed_features_inactive_websocket_fails(site):
    path = site()
    first = inv("deploy", "--inventory", path, "--yes")
    assert totals(first.stdout)[0] > 100 and totals(first.stdout)[1] == 0
    results, out = verify(path)
    assert results["Enterprise license"][0] == "warn", out
    assert results["Enterprise license"][1].startswith("no license (mattermost.license_file): inactive: cluster mode")
    assert results["every app server in the cluster (cluster/status)"][0] == "warn", out
    # The quiet HA failure: both servers answer, events stay on the node that made them.
    status, detail = results["websocket on app2 receives a post made on app1"]
    assert status == "FAIL" and detail.startswith("app2 got no posted event for a post made on app1"), out
    assert results["same config on every app server"][0] == "ok", out
    assert results["post written through the proxy readable on every app server"][0] == "ok", out
    assert results["file uploaded on app1 downloads from app2"][0] == "ok", out  # S3 needs no license
    assert results["a mention reaches the push proxy"][0] == "ok", out
    # The cluster settings are in place, waiting for a license.
    cfg = json.loads(
        on("job1", "runuser -u postgres -- psql -d mattermost -tAc 'SELECT value FROM configurations WHERE active'")
    )
    assert (
        cfg["ClusterSettings"]["Enable"] is True
        and cfg["ClusterSettings"]["ClusterName"] == "mmdeploy-mm.testbed.local"
    )
    secrets = yaml.safe_load(open(path.replace(".yml", ".secrets.yml")))
    files = cfg["FileSettings"]
    proxy1 = next(h for h in site.data["hosts"] if h["name"] == "proxy1")["private_address"]
    assert (files["DriverName"], files["AmazonS3Bucket"], files["AmazonS3SSL"]) == ("amazons3", "mattermost", False)
    assert files["AmazonS3Endpoint"] == f"{proxy1}:8333"  # HAProxy on proxy1 in front of the gateways
    assert cfg["EmailSettings"]["PushNotificationServer"] == f"http://{proxy1}:8066"
    assert files["AmazonS3AccessKeyId"] == secrets["storage_access_key"]  # the storage tier's S3 user
    assert "AdvertiseAddress=" not in on("app1", "systemctl show -p Environment mattermost")
    assert 'MM_CLUSTERSETTINGS_ADVERTISEADDRESS="10.213.' in on("app2", "cat /etc/mattermost/mattermost.env")


def test_a_license_without_the_cluster_feature_is_a_warning(site):
    from tests.standin import bed as standin_bed

    path = site(license_file=str(standin_bed.license_path(ROOT, features="elastic_search")))
    deploy = inv("deploy", "--inventory", path, "--yes")
    assert "handler license: run" in deploy.stdout
    results, out = verify(path)
    assert (
        results["Enterprise license"][0] == "warn"
        and "does not grant: cluster mode" in results["Enterprise license"][1]
    )
    assert results["websocket on app2 receives a post made on app1"][0] == "FAIL", out


def test_the_full_license_is_uploaded_and_the_cluster_forms(site):
    """The database holds the first license: the server ignores the changed file, so the
    deploy uploads it (mmctl license upload) and restarts; the nodes then gossip."""
    from tests.standin import bed as standin_bed

    path = site(license_file=str(standin_bed.license_path(ROOT)))
    deploy = inv("deploy", "--inventory", path, "--yes")
    assert len(re.findall(r"^app[12] +mattermost +~ handler license: run", deploy.stdout, re.M)) == 2
    results, out = verify(path)
    failed = {name: r for name, r in results.items() if r[0] != "ok"}
    assert not failed, out
    assert results["Enterprise license"][1].startswith("enterprise, expires")
    assert (
        results["every app server in the cluster (cluster/status)"][1]
        == "2 app servers in 'mmdeploy-mm.testbed.local': app1, app2"
    )
    assert results["Mattermost version on every app server"][1].startswith(
        f"Mattermost {releases.DEFAULT_VERSION} (11.7 ESR): supported until 2027-05-15"
    )


def test_second_deploy_changes_nothing(site):
    again = inv("deploy", "--inventory", site.path, "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_the_push_reached_a_proxy_and_its_counter(site):
    """What verify saw, seen here on the proxies themselves: the stand-in's record holds a
    push check notification, and the real metric counted it."""
    records = [
        json.loads(line)
        for host in ("app1", "app2")
        for line in on(
            host, "cat /opt/mattermost-push-proxy/logs/standin-received.jsonl 2>/dev/null || true"
        ).splitlines()
    ]
    pushes = [r for r in records if "push check" in (r["notification"].get("message") or "")]
    assert pushes and all(r["target"] == "apple_rn" for r in pushes)  # the first platform with credentials
    assert pushes[-1]["notification"]["device_id"].startswith("mmdeploy-verify-")
    inventory = mmdeploy.load(site.path)
    total = sum(
        mm.push_total(httpx.get(f"http://{h.address}:8066/metrics", timeout=5).text)
        for h in inventory.with_role("pushproxy")
    )
    assert total >= len(pushes)


def test_plan_prints_release_warnings_first(site):
    plan = inv(
        "plan", "--inventory", site.path, "--set", "mattermost.version=10.5.1", "--only", "mattermost", check=False
    )
    lines = plan.stdout.splitlines()
    assert lines[0].startswith("warning: Mattermost 10.5.1 is a known-bad patch")
    assert lines[1].startswith("warning: Mattermost 10.5.1: support for the 10.5 ESR ended on 2025-11-15")
    assert sum(line.startswith("warning:") for line in lines) == 2  # once, though three hosts run it


def test_a_node_with_another_cluster_name_fails_verify(site):
    """The same database, another ClusterName on app2 (an operator's override): both nodes
    answer, but they are two clusters; verify names app2."""
    dropin = "/etc/systemd/system/mattermost.service.d/zz-test-cluster-name.conf"
    on(
        "app2",
        f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nEnvironment=MM_CLUSTERSETTINGS_CLUSTERNAME=green\\n'"
        f" > {dropin} && systemctl daemon-reload && systemctl restart mattermost",
    )
    try:
        time.sleep(2)
        results, out = verify(site.path)
        # Two nodes, two clusters of one: nobody is the majority, both are named with what they see.
        status, detail = results["every app server in the cluster (cluster/status)"]
        assert status == "FAIL" and detail.startswith(
            "the app servers do not form one cluster 'mmdeploy-mm.testbed.local' (app1 sees app1; app2 sees app2)"
        ), out
        status, detail = results["same config on every app server"]
        assert status == "FAIL" and detail.startswith("config differs on app1, app2 (cluster/status"), out
        assert results["websocket on app2 receives a post made on app1"][0] == "FAIL", out
    finally:
        on("app2", f"rm -f {dropin} && systemctl daemon-reload && systemctl restart mattermost")
    for _ in range(6):  # the nodes find each other through ClusterDiscovery, every few seconds
        results, out = verify(site.path)
        if all(r[0] == "ok" for name, r in results.items() if name in CROSS):
            break
        time.sleep(5)
    assert all(r[0] == "ok" for name, r in results.items() if name in CROSS), out
