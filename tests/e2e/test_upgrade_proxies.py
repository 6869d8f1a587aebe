"""A rolling upgrade behind two NGINX proxies sharing floating addresses (keepalived, the
`proxies` bed layout: proxy1, proxy2, app1 (app, job, monitoring, DB), app2): each app
server is drained on both proxies, upgraded, verified and put back while a client posts
through the floating address: no failed request; then `inv drift` finds nothing."""

import time

import pytest
import yaml

import mmdeploy
from mmdeploy import testbed
from mmdeploy.components.mattermost import ADMIN_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import ROOT, figures, inv, on
from .poster import SpecPoster, Websocket
from .test_upgrade import sets

pytestmark = pytest.mark.e2e
FIGURES = figures("rolling upgrade behind 2 proxies and a floating address")
BED_SETTINGS = ["monitoring.grafana=false", "database.memory_mb=512"]


@pytest.fixture(scope="module")
def site(bed, standin_release):
    written = bed("proxies", fresh=True)
    doc = yaml.safe_load(written.read_text())
    net = doc["hosts"][0]["address"].rsplit(".", 1)[0]
    doc["settings"]["proxy"] = {"vip": [f"{net}.100/24"]}
    path = testbed.path_for(ROOT, "proxies-upgrade")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    overrides = standin_release("10.11.4") + BED_SETTINGS  # upgraded within its series below
    inv("deploy", "--inventory", str(path), *sets(overrides), "--yes")
    inventory = mmdeploy.load(path, overrides)
    password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
    return str(path), overrides, password, f"{net}.100", inventory.settings.domain


def test_rolling_upgrade_through_the_floating_address(site):
    from tests.standin import release

    path, overrides, password, vip, domain = site
    newer = release.overrides("10.11.5") + BED_SETTINGS
    poster = SpecPoster(f"https://{vip}", domain, "sysadmin", password, interval=0.05)
    ws = Websocket(f"wss://{vip}/api/v4/websocket", poster.client.headers["Authorization"].split()[1])
    poster.start()
    ws.start()
    time.sleep(1.5)
    try:
        report = mmdeploy.upgrade(mmdeploy.load(path, newer))
    finally:
        poster.stop()
        ws.stop()
    assert report.ok, report.message
    assert [(n.host, n.status) for n in report.nodes] == [("app1", "upgraded"), ("app2", "upgraded")]
    for proxy in ("proxy1", "proxy2"):  # both proxies drained each node and took it back
        assert "down;" not in on(proxy, "cat /etc/nginx/nginx.conf")
    assert poster.failures == [] and ws.failed == [], (poster.failures, ws.failed)
    assert len(poster.acked) > 50 and poster.missing() == []
    FIGURES.update(
        {
            "seconds": report.seconds,
            "posts acknowledged": len(poster.acked),
            "failed requests": 0,
            "re-sent after a GOAWAY": len(poster.resent),
            "per node": {n.host: n.seconds for n in report.nodes},
            "drain": {n.host: n.drain_seconds for n in report.nodes},
        }
    )
    drift = inv("drift", "--inventory", path, *sets(newer), check=False)
    assert drift.returncode == 0, drift.stdout
