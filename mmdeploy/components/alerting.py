"""Alerting: Prometheus's alert rules and Alertmanager (Debian's prometheus-alertmanager,
0.25) on the monitoring hosts, and a certificate check on the proxies.

What is watched (templates/alerting/rules.yml.j2, one group per concern), each alert with
its host, so Alertmanager groups a dead host's alerts under it (HostDown silences the
other alerts of that host: inhibition):
- a host down (its node exporter does not answer), a service down (any other scrape
  target), a node out of a balanced layer's pool (HAProxy's checks);
- the database: a replica lagging, the primary changed (a failover: Patroni's, or
  failover-db), no node on HAProxy's leader route;
- a floating address moved (keepalived's transitions in the node exporter's textfile);
- the search cluster not green; the file storage degraded (a storage server or gateway
  down, or out of HAProxy's pool);
- a filesystem at `disk_percent` or more; NGINX's certificate expiring within
  `certificate_days` (each proxy asks its own NGINX for the certificate it serves, every
  hour, into the node exporter's textfile: no exporter to install).
Other components add rule files under /etc/prometheus/rules.d/ (Prometheus reads every
*.yml there: one rule_files glob).

Alertmanager sends every alert (firing, then resolved) to the webhook in the secret
alert_webhook_url when it is set (a Mattermost incoming webhook's URL holds its key, so
it is a secret, never a setting); without it the alerts are in its API and web page only.
It listens on the monitoring host's private address; with several monitoring hosts they
gossip as one cluster so a notification goes out once.
"""

from __future__ import annotations

import json
import urllib.request

from pydantic import Field

from ..component import ADMIN, CONTROL, PEERS, Check, Component, Context, Port, settled
from ..inventory import Host, Inventory
from ..ops import Command, Directory, File, Packages, Service, unit
from ..ops.secretfile import SecretFile
from ..ops.systemd import when_ready
from ..secrets import Secret
from ..settings import Section
from .prometheus import reload_prometheus

PORT = 9093
CLUSTER_PORT = 9094
RULES = "/etc/prometheus/rules.d/mmdeploy-alerts.yml"
CONFIG = "/etc/prometheus/alertmanager.yml"
DEFAULTS = "/etc/default/prometheus-alertmanager"
CERT_CHECK = "/usr/local/sbin/mmdeploy-tls-expiry"
# Debian's prometheus-node-exporter reads *.prom files here (its --collector.textfile.directory).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
WEBHOOK = Secret(
    "alert_webhook_url", "where Alertmanager posts alerts (e.g. a Mattermost incoming webhook)", generate=False
)


class AlertingSettings(Section):
    """Alert rules and Alertmanager (components/alerting.py)."""

    enabled: bool = True
    # A filesystem this full (percent) raises DiskAlmostFull.
    disk_percent: int = Field(default=85, ge=1, le=100)
    # NGINX's certificate expiring within this many days raises CertificateExpiring.
    certificate_days: int = Field(default=21, ge=1, le=365)
    # A replica this many seconds behind raises DatabaseReplicationLag.
    replication_lag_seconds: int = Field(default=30, ge=1)
    # How long a condition must hold before its alert fires (a blip is not an incident).
    after: str = Field(default="30s", pattern=r"^\d+[smh]$")
    # Alertmanager: wait this long to group alerts, and repeat an unresolved one this often.
    group_wait: str = Field(default="10s", pattern=r"^\d+[smh]$")
    repeat_interval: str = Field(default="4h", pattern=r"^\d+[smh]$")


class Alerting(Component):
    name = "alerting"
    roles = ("monitoring", "proxy")
    settings = {"alerting": AlertingSettings}
    secrets = (WEBHOOK,)
    # Alertmanager on the monitoring hosts: Prometheus sends it alerts, administrators
    # read them (verify too); several Alertmanagers gossip among themselves.
    ports = (
        Port("alertmanager", PORT, ("monitoring", ADMIN, CONTROL), when=lambda h: h.has("monitoring")),
        Port("alertmanager cluster", CLUSTER_PORT, (PEERS,), when=lambda h: h.has("monitoring")),
        Port("alertmanager cluster", CLUSTER_PORT, (PEERS,), proto="udp", when=lambda h: h.has("monitoring")),
    )
    # The certificate check asks NGINX; Prometheus reloads after its own config.
    after = ("base", "node-exporter", "nginx", "prometheus")

    def enabled(self, host: Host) -> bool:
        return host.settings.alerting.enabled

    def steps(self, ctx: Context):
        steps = []
        if ctx.host.has("proxy"):
            steps += self._certificate_check(ctx)
        if ctx.host.has("monitoring"):
            steps += self._alertmanager(ctx)
        return steps

    def _alertmanager(self, ctx: Context):
        s = ctx.settings.alerting
        monitors = [h for h in ctx.inventory.with_role("monitoring") if h.settings.alerting.enabled]
        config = ctx.render(
            "alerting/alertmanager.yml.j2",
            webhook=ctx.secrets.optional(WEBHOOK) or "",
            group_wait=s.group_wait,
            repeat_interval=s.repeat_interval,
        )
        args = [
            f"--web.listen-address={ctx.host.private_address}:{PORT}",
            f"--web.external-url=http://{ctx.host.private_address}:{PORT}/",
        ]
        peers = [h for h in monitors if h.name != ctx.host.name]
        if peers:
            args.append(f"--cluster.listen-address={ctx.host.private_address}:{CLUSTER_PORT}")
            args += [f"--cluster.peer={h.private_address}:{CLUSTER_PORT}" for h in peers]
        else:
            args.append("--cluster.listen-address=")  # one Alertmanager: no gossip port open
        return [
            # Its listen address before the package starts it (with the package's config,
            # replaced next: amtool, which checks it, comes with the package).
            File(
                DEFAULTS,
                f'# Managed by mmdeploy (components/alerting.py).\nARGS="{" ".join(args)}"\n',
                notify=("restart alertmanager",),
            ),
            Packages("prometheus-alertmanager"),
            SecretFile(
                CONFIG,
                config,
                group="prometheus",
                mode="0640",
                validate="amtool check-config {}",
                notify=("reload alertmanager",),
            ),
            Service("prometheus-alertmanager"),
            Directory("/etc/prometheus/rules.d"),
            File(
                RULES,
                ctx.render("alerting/rules.yml.j2", s=s),
                validate="promtool check rules {}",
                notify=("reload prometheus",),
            ),
        ]

    def _certificate_check(self, ctx: Context):
        script = ctx.render("alerting/tls-expiry.sh.j2", textfile_dir=TEXTFILE_DIR, domain=ctx.settings.domain)
        return [
            Packages("openssl"),
            Directory(TEXTFILE_DIR),
            File(CERT_CHECK, script, mode="0755", notify=("check certificate",)),
            unit(
                "mmdeploy-tls-expiry.service",
                ctx.render("alerting/tls-expiry.service.j2", script=CERT_CHECK),
                notify=("check certificate",),
            ),
            unit("mmdeploy-tls-expiry.timer", ctx.render("alerting/tls-expiry.timer.j2")),
            Service("mmdeploy-tls-expiry.timer"),
        ]

    def handlers(self, ctx: Context):
        ready = f"curl -fsS -m 2 -o /dev/null http://{ctx.host.private_address}:{PORT}/-/ready"
        return {
            "check certificate": Command(
                "check the certificate now", "systemctl start mmdeploy-tls-expiry.service", timeout=60
            ),
            # Each waits until Alertmanager answers: the package has just started it, and a
            # reload before it handles SIGHUP would end it (ops.systemd.when_ready). Its
            # own reload endpoint reports a config it refuses.
            "restart alertmanager": Command(
                "restart alertmanager",
                "systemctl restart prometheus-alertmanager\n" + when_ready(ready, wait=90),
                timeout=120,
            ),
            "reload alertmanager": Command(
                "reload alertmanager",
                when_ready(ready, f"curl -fsS -m 10 -X POST http://{ctx.host.private_address}:{PORT}/-/reload"),
                timeout=90,
            ),
            "reload prometheus": reload_prometheus(ctx.host),
        }

    def checks(self, inventory: Inventory):
        return [
            Check(
                f"alerting on {h.name}: rules loaded, Alertmanager ready and used by Prometheus", _pipeline(h), h.name
            )
            for h in inventory.with_role("monitoring")
            if h.settings.alerting.enabled
        ]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _pipeline(host: Host, wait: float = 60):
    """Prometheus has loaded mmdeploy's rules and sends to an Alertmanager that is ready."""
    from .prometheus import prometheus_url

    def once() -> str | None:
        try:
            groups = _get(f"{prometheus_url(host)}/api/v1/rules")["data"]["groups"]
            active = _get(f"{prometheus_url(host)}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
            with urllib.request.urlopen(f"http://{host.private_address}:{PORT}/-/ready", timeout=10) as r:
                ready = r.status == 200
            names = {g["name"] for g in groups}
        except (OSError, ValueError, KeyError) as e:
            return f"{type(e).__name__}: {e}"
        if not {"mmdeploy-hosts", "mmdeploy-database"} <= names:
            return f"mmdeploy's rule groups not loaded (loaded: {', '.join(sorted(names)) or 'none'})"
        if not active:
            return "Prometheus sends alerts to no Alertmanager"
        return None if ready else "Alertmanager is not ready"

    return lambda: settled(once, wait)


def firing(host: Host) -> list[dict]:
    """The alerts Alertmanager on `host` holds (active, not silenced), from its API v2."""
    return _get(f"http://{host.private_address}:{PORT}/api/v2/alerts?active=true&silenced=false&inhibited=true")


COMPONENTS = [Alerting()]
