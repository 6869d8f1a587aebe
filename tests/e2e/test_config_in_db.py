"""mattermost.config_in_database on the all-in-one bed: MM_CONFIG from a root-only
environment file, the keys mmdeploy owns patched in with `mmctl --local config patch`, the
active row of the Configurations table is what the server runs on."""

import json

import pytest
import yaml

from .conftest import inv, on
from .test_single import BED_SETTINGS, sets, totals

pytestmark = pytest.mark.e2e
DB_CONFIG = ["mattermost.config_in_database=true"]
EMOJI = ["mattermost.config={ServiceSettings: {EnableCustomEmoji: true}}"]


def active_config() -> dict:
    out = on("aio1", "runuser -u postgres -- psql -d mattermost -tAc 'SELECT value FROM configurations WHERE active'")
    return json.loads(out)


@pytest.fixture(scope="module")
def site(bed, standin_release):
    path = str(bed("allinone", fresh=True))
    overrides = standin_release() + BED_SETTINGS + DB_CONFIG
    first = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    return path, overrides, first


def test_deploy_then_verify(site):
    path, overrides, first = site
    assert totals(first.stdout)[0] > 0
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_second_deploy_changes_nothing(site):
    path, overrides, _ = site
    again = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_the_database_holds_the_active_config(site):
    path, _, first = site
    cfg = active_config()
    assert cfg["ServiceSettings"]["SiteURL"].startswith("https://")
    assert cfg["MetricsSettings"]["Enable"] is True
    assert cfg["SqlSettings"]["DataSource"].startswith("postgres://mmuser:")
    assert on("aio1", "stat -c '%U %a' /etc/mattermost/mattermost.env /etc/mattermost/config-patch.json").split("\n")[
        :2
    ] == ["root 600", "root 600"]
    assert "EnvironmentFile=/etc/mattermost/mattermost.env" in on("aio1", "systemctl cat mattermost")
    password = yaml.safe_load(open(path.replace(".yml", ".secrets.yml")))["db_password"]
    assert password not in on("aio1", "ps -eo args") and password not in first.stdout


def test_a_changed_setting_reaches_the_database(site):
    path, overrides, _ = site
    assert not active_config()["ServiceSettings"].get("EnableCustomEmoji")
    plan = inv("plan", "--inventory", path, *sets(overrides + EMOJI))
    assert "/etc/mattermost/config-patch.json" in plan.stdout and "secret: content not shown" in plan.stdout
    inv("deploy", "--inventory", path, *sets(overrides + EMOJI), "--yes")
    assert active_config()["ServiceSettings"]["EnableCustomEmoji"] is True
    again = inv("deploy", "--inventory", path, *sets(overrides + EMOJI), "--yes")
    assert totals(again.stdout) == (0, 0), again.stdout
    verify = inv("verify", "--inventory", path, *sets(overrides + EMOJI), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
