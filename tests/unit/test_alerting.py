"""Alerting: Alertmanager's configuration with and without a webhook (a secret, never in a
plan's diff), its arguments for one or several monitoring hosts, Prometheus's rule glob
and Alertmanager targets, the rules' shape, and the certificate check on the proxies. The
rules' expressions are evaluated by promtool on the bed (tests/e2e/data/alert-rules-test.yml)."""

import re

import pytest
import yaml

from mmdeploy import inventory
from mmdeploy.component import Context
from mmdeploy.components.alerting import CONFIG, DEFAULTS, RULES, WEBHOOK, Alerting
from mmdeploy.components.prometheus import Prometheus
from mmdeploy.ops import File
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.secrets import Redactor, Secrets

SITE = """\
pattern: single
settings:
  domain: chat.example.com
hosts:
  - {name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app, jobserver]}
  - {name: mon1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
"""


class Facts:
    def host(self, key):
        return {"mem_kb": "4194304", "os": "ID=debian\nVERSION_ID=12\nVERSION_CODENAME=bookworm"}[key]


@pytest.fixture
def site(write_inventory, monkeypatch):
    def make(text=SITE, host="mon1", webhook=None):
        if webhook:
            monkeypatch.setenv(WEBHOOK.env, webhook)
        inv = inventory.load(write_inventory(text))
        return Context(inv, inv.host(host), Secrets(inv.secrets_path, Redactor()), facts=Facts())

    return make


def step(steps, path):
    return next(s for s in steps if isinstance(s, File) and s.path == path)


def test_alertmanager_without_a_webhook_keeps_alerts_in_its_api(site):
    steps = Alerting().steps(site())
    config = yaml.safe_load(step(steps, CONFIG).content)
    assert config["route"]["receiver"] == "none" and config["receivers"] == [{"name": "none"}]
    assert config["route"]["group_by"] == ["alertname", "host"]
    assert config["inhibit_rules"] == [
        {"source_matchers": ["alertname = HostDown"], "target_matchers": ["alertname != HostDown"], "equal": ["host"]}
    ]
    args = step(steps, DEFAULTS).content.decode()
    assert "--web.listen-address=10.0.0.21:9093" in args and args.rstrip().endswith('--cluster.listen-address="')


def test_the_webhook_is_a_secret(site):
    url = "https://chat.example.com/hooks/abcdefghijklmnop"
    steps = Alerting().steps(site(webhook=url))
    config = step(steps, CONFIG)
    assert isinstance(config, SecretFile) and (config.owner, config.group, config.mode) == (
        "root",
        "prometheus",
        "0640",
    )
    receivers = yaml.safe_load(config.content)["receivers"]
    assert receivers[1] == {"name": "webhook", "webhook_configs": [{"url": url, "send_resolved": True}]}
    assert config.validate == "amtool check-config {}"


def test_several_monitoring_hosts_gossip(site):
    text = SITE + "  - {name: mon2, address: 192.0.2.22, private_address: 10.0.0.22, roles: [monitoring]}\n"
    args = step(Alerting().steps(site(text=text, host="mon2")), DEFAULTS).content.decode()
    assert "--cluster.listen-address=10.0.0.22:9094" in args and "--cluster.peer=10.0.0.21:9094" in args


def test_prometheus_reads_every_rule_file_and_sends_to_alertmanager(site):
    ctx = site()
    config = yaml.safe_load(step(Prometheus().steps(ctx), "/etc/prometheus/prometheus.yml").content)
    assert config["rule_files"] == ["/etc/prometheus/rules.d/*.yml"]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["10.0.0.21:9093"]}]}]
    off = site(
        text=SITE.replace("  domain: chat.example.com\n", "  domain: chat.example.com\n  alerting: {enabled: false}\n")
    )
    assert "alerting" not in yaml.safe_load(step(Prometheus().steps(off), "/etc/prometheus/prometheus.yml").content)
    assert Alerting().hosts(off.inventory) == []


def test_rules_cover_each_concern_and_carry_the_settings(site):
    text = SITE.replace(
        "  domain: chat.example.com\n",
        "  domain: chat.example.com\n  alerting: {disk_percent: 90, certificate_days: 30}\n",
    )
    rules_file = step(Alerting().steps(site(text=text)), RULES)
    assert rules_file.validate == "promtool check rules {}" and rules_file.notify == ("reload prometheus",)
    groups = yaml.safe_load(rules_file.content)["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {
        "HostDown",
        "ServiceDown",
        "DiskAlmostFull",
        "BalancedNodeDown",
        "FloatingAddressMoved",
        "DatabaseReplicationLag",
        "DatabasePrimaryChanged",
        "DatabaseNoLeader",
        "SearchClusterNotGreen",
        "StorageDegraded",
        "CertificateExpiring",
        "CertificateUnreadable",
    }
    assert rules["DiskAlmostFull"]["expr"].endswith(">= 90")
    assert "< 30 * 86400" in rules["CertificateExpiring"]["expr"]
    assert all(
        "{{ $labels.host }}" in r["annotations"]["summary"] or "host" in r["annotations"]["summary"]
        for r in rules.values()
    )


def test_proxies_check_the_certificate_nginx_serves(site):
    steps = Alerting().steps(site(host="proxy1"))
    script = step(steps, "/usr/local/sbin/mmdeploy-tls-expiry").content.decode()
    assert "openssl s_client -connect 127.0.0.1:443 -servername chat.example.com" in script
    assert re.search(r'mv "\$out.tmp" "\$out"', script)  # the textfile replaced whole
    assert "file /etc/systemd/system/mmdeploy-tls-expiry.timer" in [s.name for s in steps]
    assert not any(isinstance(s, File) and s.path == CONFIG for s in steps)  # Alertmanager: monitoring only
