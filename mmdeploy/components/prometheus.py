"""Prometheus from Debian's package on the `monitoring` hosts, scraping every target the
components declare (component.Metrics: Mattermost on app and job servers, the node
exporter everywhere, the database, NGINX and other services' exporters on their hosts).
A new configuration is checked with `promtool check config` before it goes live, and
applied by a reload. It listens on the host's private address only (the Debian package
listens on every interface), where Grafana, verify and the administrators reach it.

`verify` asks each Prometheus (its HTTP API, from the control machine) whether every
target is up.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field

from typing import Literal

from pydantic import Field

from ..component import ADMIN, CONTROL, Check, Component, Context, Port, Role, down_hosts, settled
from ..grammar import Source, hostport
from ..inventory import Host, Inventory
from ..ops import Command, File
from ..ops.exporter import env_file, exporter_handlers, exporter_steps, listen_flag
from ..ops.systemd import when_ready
from ..settings import Section

PORT = 9090


class GrafanaDashboard(Section):
    id: int = Field(ge=1)
    # A grafana.com revision; "latest" is fetched once and then kept in the local cache.
    revision: int | Literal["latest"] = "latest"
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    url: Source | None = None  # a mirror or local file instead of grafana.com


class MonitoringSettings(Section):
    """Prometheus, the exporters and Grafana (components/prometheus.py, exporters.py,
    grafana.py)."""

    # Grafana from Grafana's APT repository on the monitoring host.
    grafana: bool = True
    scrape_interval: str = Field(default="15s", pattern=r"^\d+[smh]$")
    # The DB user the postgres/mysqld exporter logs in as, with the secret
    # db_monitoring_password; the database components create it.
    db_user: str = Field(default="mmmonitor", pattern=r"^[a-z_][a-z0-9_]{0,31}$")
    # Mattermost's official dashboards: performance monitoring v2, KPI metrics, bonus metrics.
    dashboards: list[GrafanaDashboard] = [GrafanaDashboard(id=i) for i in (15582, 2539, 2545)]


@dataclass
class Target:
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)
    path: str = "/metrics"


@dataclass
class Job:
    name: str
    targets: list[Target]


class Prometheus(Component):
    name = "prometheus"
    roles = ("monitoring",)
    owns_roles = (
        Role("monitoring", "Prometheus (and Grafana): scrapes every host", {"single": 1, "multi": 1, "cluster": 1}),
    )
    settings = {"monitoring": MonitoringSettings}
    # Unauthenticated, with the whole site's target map: administrators only (and
    # verify's checks from the control machine). Grafana asks it on the same host.
    ports = (Port("prometheus", PORT, (ADMIN, CONTROL)),)
    # Every other component first: the targets it scrapes should be up by then.
    after = ("base", "node-exporter")

    def steps(self, ctx: Context):
        # Alertmanager runs on the monitoring hosts where alerting is on (components/alerting.py).
        alertmanagers = [
            f"{h.private_address}:9093" for h in ctx.inventory.with_role("monitoring") if h.settings.alerting.enabled
        ]
        config = ctx.render(
            "prometheus/prometheus.yml.j2", jobs=scrape_jobs(ctx.inventory, ctx.host), alertmanagers=alertmanagers
        )
        # Its listen address in place before the package starts it, as an exporter's.
        args = env_file("components/prometheus", ARGS=listen_flag(ctx.host.private_address, PORT))
        return [
            *exporter_steps("prometheus", args, secret=False),
            File("/etc/prometheus/prometheus.yml", config, validate="promtool check config {}", notify=("reload",)),
        ]

    def handlers(self, ctx: Context):
        return {"reload": reload_prometheus(ctx.host), **exporter_handlers("prometheus")}

    def checks(self, inventory):
        return [
            Check(
                f"every Prometheus target up on {h.name}",
                targets_up(
                    f"{prometheus_url(h)}/api/v1/targets?state=active",
                    wait=2 * seconds(h.settings.monitoring.scrape_interval) + 10,
                    gone=down_hosts(),
                ),
                h.name,
            )
            for h in self.hosts(inventory)
        ]


def prometheus_url(host: Host) -> str:
    """The Prometheus on `host` (a monitoring host), where it listens."""
    return f"http://{hostport(host.private_address, PORT)}"


def reload_prometheus(host: Host) -> Command:
    """The Prometheus on `host` re-reads its config and rule files (once it answers: it
    may have just started)."""
    return Command(
        "reload prometheus",
        when_ready(f"curl -fsS -m 2 -o /dev/null {prometheus_url(host)}/-/ready", "systemctl reload prometheus"),
        timeout=90,
    )


def scrape_jobs(inventory: Inventory, monitor: Host) -> list[Job]:
    """What the Prometheus on `monitor` scrapes: itself and every target the components
    declare, on the hosts' private addresses."""
    from ..registry import registry

    jobs = [Job("prometheus", [Target(hostport(monitor.private_address, PORT))])]
    for name, targets in registry().scrape_jobs(inventory):
        jobs.append(
            Job(
                name,
                [Target(hostport(h.private_address, m.port_for(h)), {"host": h.name}, m.path) for h, m in targets],
            )
        )
    return jobs


def seconds(duration: str) -> int:
    """A Prometheus duration as validated by the settings (15s, 1m, 1h)."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def targets_up(url: str, wait: float, gone: frozenset[str] = frozenset()):
    """A verify check: every active target of the Prometheus at `url` is up. A target not
    scraped yet (just deployed) or down is given up to `wait` seconds. The targets on the
    hosts in `gone` (found down by verify) are rightly down and not counted."""

    def once() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                targets = json.load(response)["data"]["activeTargets"]
            targets = [t for t in targets if t["labels"].get("host") not in gone]
            return "; ".join(
                f"{t['labels'].get('job')} {t['labels'].get('instance')} {t['health']}"
                + (f" ({t['lastError']})" if t.get("lastError") else "")
                for t in targets
                if t["health"] != "up"
            ) or (None if targets else "no targets")
        except (OSError, ValueError, KeyError) as e:
            return f"{url}: {e}"

    return lambda: settled(once, wait)


COMPONENTS = [Prometheus()]
