"""Prometheus from Debian's package on the `monitoring` hosts, scraping targets generated from
the inventory: Mattermost's metrics on app and job servers, node_exporter on every host,
the postgres or mysqld exporter on database hosts, the nginx exporter on proxy hosts
(components/exporters.py installs the exporters). A new configuration is checked with
`promtool check config` before it goes live, and applied by a reload.

`verify` asks each Prometheus (its HTTP API, from the control machine) whether every
target is up.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field

from ..component import Check, Component, Context
from ..inventory import Host, Inventory
from ..ops import Command, File, Packages, Service

PORT = 9090
# The exporters listen on their Debian packages' default ports (components/exporters.py).
PORTS = {"node": 9100, "postgres": 9187, "mysql": 9104, "nginx": 9113}


@dataclass
class Target:
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    name: str
    targets: list[Target]


class Prometheus(Component):
    name = "prometheus"
    after = ("base", "exporters")

    def hosts(self, inventory):
        return inventory.with_role("monitoring")

    def steps(self, ctx: Context):
        config = ctx.render("prometheus/prometheus.yml.j2", jobs=scrape_jobs(ctx.inventory))
        return [
            Packages("prometheus"),
            File("/etc/prometheus/prometheus.yml", config, validate="promtool check config {}", notify=("reload",)),
            Service("prometheus"),
        ]

    def handlers(self, ctx: Context):
        return {"reload": Command("reload prometheus", "systemctl reload prometheus")}

    def checks(self, inventory):
        return [Check(f"every Prometheus target up on {h.name}",
                      targets_up(f"http://{h.address}:{PORT}/api/v1/targets?state=active",
                                 wait=2 * seconds(h.settings.monitoring.scrape_interval) + 10))
                for h in self.hosts(inventory)]


def scrape_jobs(inventory: Inventory) -> list[Job]:
    """What every Prometheus scrapes; targets on the hosts' private addresses."""
    def target(h: Host, port: int) -> Target:
        return Target(_host_port(h.private_address, port), {"host": h.name})

    jobs = [
        Job("prometheus", [Target(f"localhost:{PORT}")]),
        Job("mattermost", [target(h, h.settings.mattermost.metrics_port)
                           for h in inventory.hosts if h.has("app") or h.has("jobserver")]),
        Job("node", [target(h, PORTS["node"]) for h in inventory.hosts]),
    ]
    for engine, name in (("postgresql", "postgres"), ("mysql", "mysql")):
        db = [h for h in inventory.with_role("db") if h.settings.database.engine == engine]
        if db:
            jobs.append(Job(name, [target(h, PORTS[name]) for h in db]))
    jobs.append(Job("nginx", [target(h, PORTS["nginx"]) for h in inventory.with_role("proxy")]))
    return [j for j in jobs if j.targets]


def seconds(duration: str) -> int:
    """A Prometheus duration as validated by the settings (15s, 1m, 1h)."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def targets_up(url: str, wait: float):
    """A verify check: every active target of the Prometheus at `url` is up. A target not
    scraped yet (just deployed) or down is given up to `wait` seconds."""

    def check() -> str | None:
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    targets = json.load(response)["data"]["activeTargets"]
                problem = "; ".join(
                    f"{t['labels'].get('job')} {t['labels'].get('instance')} {t['health']}"
                    + (f" ({t['lastError']})" if t.get("lastError") else "")
                    for t in targets if t["health"] != "up"
                ) or (None if targets else "no targets")
            except (OSError, ValueError, KeyError) as e:
                problem = f"{url}: {e}"
            if problem is None or time.monotonic() >= deadline:
                return problem
            time.sleep(2)

    return check


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
