"""Rolling upgrades on the test bed (issue 12): three app servers behind two NGINX proxies
sharing a floating address (keepalived), a job server, one database node (bed layout
`apps3`), the stand-in Mattermost releases. The clients go through the floating address.

- A rolling upgrade 10.11.4 -> 10.11.5 while a client posts all along and a websocket
  client stays connected: 0 failed requests; every node upgraded and verified, drained on
  both proxies and taken back by both; the websocket of a drained node is closed and
  reconnects; then `inv drift` finds nothing.
- `rollback` back to 10.11.4, the same way: 0 failed requests.
- A deliberately broken release (the stand-in's --broken build): rolled back
  automatically on the first node, the others untouched, no failed request; on the job
  server (the first node of a full upgrade) and on an app server (a canary --limit).
- `inv drift`: a config edited on one node, a plugin on another and a node left drained
  on the proxy are each named; exit 1; once settled, exit 0.
"""

import time

import pytest

import mmdeploy
from mmdeploy.components.mattermost import ADMIN_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import figures, inv, on
from .poster import SpecPoster, Websocket

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false", "database.memory_mb=512"]
FIGURES = figures("rolling upgrades and rollback (3 app servers behind 2 proxies and a floating address)")


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def site(bed, standin_release):
    path = str(bed("apps3", fresh=True))  # with the bed's floating address for its two proxies
    overrides = standin_release("10.11.4") + BED_SETTINGS  # upgraded within its series below
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    inventory = mmdeploy.load(path, overrides)
    password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
    return {
        "path": path,
        "overrides": overrides,
        "password": password,
        "vip": inventory.settings.proxy.vips[0].split("/")[0],
        "domain": inventory.settings.domain,
    }


def clients(site):
    poster = SpecPoster(f"https://{site['vip']}", site["domain"], "sysadmin", site["password"], interval=0.05)
    token = poster.client.headers["Authorization"].split()[1]
    ws = Websocket(f"wss://{site['vip']}/api/v4/websocket", token)
    poster.start()
    ws.start()
    time.sleep(1.5)
    assert poster.acked and ws.opened, (poster.failures, ws.failed)
    return poster, ws


def versions(path):
    return {
        h.name: on(h.name, "cat /opt/mattermost/.mmdeploy-version").strip()
        for h in mmdeploy.load(path).hosts
        if h.has("app") or h.has("jobserver")
    }


def test_rolling_upgrade_without_a_failed_request(site):
    from tests.standin import release

    newer = release.overrides("10.11.5") + BED_SETTINGS
    poster, ws = clients(site)
    t0 = time.monotonic()
    try:
        report = mmdeploy.upgrade(mmdeploy.load(site["path"], newer), verify_timeout=60)
    finally:
        poster.stop()
        ws.stop()
    seconds = time.monotonic() - t0
    assert report.ok, report.message
    assert report.procedure == "rolling"
    assert [(n.host, n.status) for n in report.nodes] == [
        ("job1", "upgraded"),
        ("app1", "upgraded"),
        ("app2", "upgraded"),
        ("app3", "upgraded"),
    ]
    assert all(n.drain_seconds is not None for n in report.nodes if n.role == "app")
    for proxy in ("proxy1", "proxy2"):  # both proxies drained each node and took it back
        assert "down;" not in on(proxy, "cat /etc/nginx/nginx.conf")
    assert set(versions(site["path"]).values()) == {"10.11.5"}
    assert poster.failures == [], poster.failures
    assert len(poster.acked) > 100
    assert poster.missing() == []
    # The websocket was on one of the app servers: closed when it stopped, reopened elsewhere.
    assert ws.failed == [] and ws.closed >= 1 and ws.opened >= 2, (ws.opened, ws.closed, ws.failed)
    FIGURES["rolling upgrade, 3 app servers + job server"] = {
        "seconds": round(seconds, 1),
        "posts acknowledged": len(poster.acked),
        "slowest acknowledged post (s)": round(poster.slowest, 2),
        "failed requests": 0,
        "re-sent after an NGINX GOAWAY (not processed)": len(poster.resent),
        "websocket reconnects": ws.closed,
        "per node": {n.host: n.seconds for n in report.nodes},
        "drain": {n.host: n.drain_seconds for n in report.nodes if n.drain_seconds is not None},
    }
    assert inv("drift", "--inventory", site["path"], *sets(newer), check=False).returncode == 0


def test_rollback_without_a_failed_request(site):
    poster, ws = clients(site)
    try:
        report = mmdeploy.rollback(mmdeploy.load(site["path"], site["overrides"]))
    finally:
        poster.stop()
        ws.stop()
    assert report.ok, report.message
    assert [n.status for n in report.nodes] == ["rolled-back"] * 4
    assert set(versions(site["path"]).values()) == {"10.11.4"}
    assert poster.failures == [] and ws.failed == [], (poster.failures, ws.failed)
    FIGURES["rollback"] = {
        "seconds": report.seconds,
        "per node": {n.host: n.seconds for n in report.nodes},
        "failed requests": 0,
        "re-sent after a GOAWAY": len(poster.resent),
    }


@pytest.mark.parametrize("limit", [None, ["app1", "app2", "app3"]], ids=["full", "apps-canary"])
def test_broken_release_is_rolled_back_on_the_first_node(site, limit):
    from tests.standin import release

    broken = release.overrides("10.11.6", broken=True) + BED_SETTINGS
    before = versions(site["path"])
    poster, ws = clients(site)
    try:
        report = mmdeploy.upgrade(mmdeploy.load(site["path"], broken), verify_timeout=30, limit=limit)
    finally:
        poster.stop()
        ws.stop()
    assert not report.ok
    first = "job1" if limit is None else "app1"
    statuses = {n.host: n.status for n in report.nodes}
    assert statuses[first] == "rolled-back", report.nodes
    assert all(statuses[h] == "untouched" for h in statuses if h != first), statuses
    assert "failed its check" in report.message and "untouched" in report.message
    assert versions(site["path"]) == before  # the first node back on 10.11.4, the others never left it
    assert poster.failures == [], poster.failures
    assert ws.failed == [], ws.failed
    for proxy in ("proxy1", "proxy2"):  # every node back behind both proxies
        assert "down;" not in on(proxy, "cat /etc/nginx/nginx.conf")
    FIGURES[f"broken release, {first} rolled back"] = {
        "seconds": report.seconds,
        "failed requests": 0,
        "re-sent after a GOAWAY": len(poster.resent),
        "node": next(n.seconds for n in report.nodes if n.host == first),
    }


def test_drift_names_each_difference(site):
    from mmdeploy import upgrades
    from mmdeploy.fleet import Fleet

    path, overrides = site["path"], site["overrides"]
    config = "/opt/mattermost/config/config.json"
    original = on("app2", f"cat {config}")
    on(
        "app2",
        f"jq '.TeamSettings.SiteName = \"Edited On app2\"' {config} > /tmp/c && "
        f"install -o mattermost -g mattermost -m 0600 /tmp/c {config}",
    )
    on(
        "app3",
        "mkdir -p /opt/mattermost/plugins/com.example.demo && echo "
        '\'{"id": "com.example.demo", "version": "1.2.3"}\' > /opt/mattermost/plugins/com.example.demo/plugin.json',
    )
    inventory = mmdeploy.load(path, overrides)
    with Fleet(inventory, "test") as fleet:
        upgrades.set_upstream(fleet, inventory.host("app1"), down=True)
    result = inv("drift", "--inventory", path, *sets(overrides), check=False)
    assert result.returncode == 1, result.stdout
    report = mmdeploy.drift(inventory)
    found = {(d.host, d.what) for d in report.differences}
    assert {("app2", "config"), ("app3", "plugins"), ("proxy1", "drained")} <= found, report.differences
    assert not any(d.host in ("app1", "app3") and d.what == "config" for d in report.differences)
    # A deploy ends the drain; the console edit and the plugin are the operator's to settle.
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    on("app3", "rm -rf /opt/mattermost/plugins/com.example.demo")
    on("app2", f"cat > /tmp/c <<'EOF'\n{original}\nEOF\ninstall -o mattermost -g mattermost -m 0600 /tmp/c {config}")
    result = inv("drift", "--inventory", path, *sets(overrides), check=False)
    assert result.returncode == 0, result.stdout
