"""Grafana on the `monitoring` hosts (when `monitoring.grafana` is true), from Grafana's own
APT repository (Debian does not package it), provisioned with this host's Prometheus as
its datasource and Mattermost's official dashboards.

The dashboards are artifacts: fetched from grafana.com (or `url`, a mirror or local file)
into the control machine's cache, checked against `sha256` when one is pinned, and
uploaded as files Grafana's file provider reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import CACHE, Artifact, ArtifactError, fetch
from ..component import ADMIN, CONTROL, Check, Component, Context, Port
from ..inventory import Host
from ..ops import Command, Directory, File, Packages, Service
from .prometheus import prometheus_url

if TYPE_CHECKING:  # monitoring.dashboards, a section of the prometheus component
    from .prometheus import GrafanaDashboard

KEYRING = "/etc/apt/keyrings/grafana.gpg"
PROVISIONING = "/etc/grafana/provisioning"
DASHBOARDS = "/var/lib/grafana/dashboards/mattermost"
# Name and uid alike: older dashboards refer to a datasource by name, newer ones by uid.
DATASOURCE = "Prometheus"
PORT = 3000


class Grafana(Component):
    name = "grafana"
    roles = ("monitoring",)
    ports = (Port("grafana", PORT, (ADMIN, CONTROL)),)
    after = ("base", "prometheus")

    def enabled(self, host):
        return host.settings.monitoring.grafana

    def steps(self, ctx: Context):
        restart = ("restart",)
        steps = [
            Directory("/etc/apt/keyrings"),
            Command(
                "Grafana's APT signing key",
                f"set -e\ncurl -fsSL https://apt.grafana.com/gpg.key | gpg --dearmor > {KEYRING}.new\n"
                f"chmod 0644 {KEYRING}.new\nmv -f {KEYRING}.new {KEYRING}\n",
                unless=f"test -s {KEYRING}",
            ),
            # The install below refreshes the package lists when it cannot find grafana.
            File("/etc/apt/sources.list.d/grafana.list", ctx.render("grafana/grafana.list.j2", keyring=KEYRING)),
            Packages("grafana"),
            File(
                f"{PROVISIONING}/datasources/mmdeploy.yaml",
                ctx.render("grafana/datasource.yaml.j2", datasource=DATASOURCE, prometheus=prometheus_url(ctx.host)),
                group="grafana",
                mode="0640",
                notify=restart,
            ),
            File(
                f"{PROVISIONING}/dashboards/mmdeploy.yaml",
                ctx.render("grafana/dashboards.yaml.j2", path=DASHBOARDS),
                group="grafana",
                mode="0640",
                notify=restart,
            ),
            Directory(DASHBOARDS.rsplit("/", 1)[0]),
            Directory(DASHBOARDS),
        ]
        # Grafana's file provider picks up a changed dashboard by itself: no restart.
        steps += [
            File(f"{DASHBOARDS}/{d.id}.json", provisioned(fetch_dashboard(d)))
            for d in ctx.settings.monitoring.dashboards
        ]
        steps.append(Service("grafana-server"))
        return steps

    def handlers(self, ctx: Context):
        return {"restart": Command("restart grafana-server", "systemctl restart grafana-server")}

    def checks(self, inventory):
        return [Check(f"Grafana healthy on {h.name}", _healthy(h), h.name) for h in self.hosts(inventory)]


def dashboard_url(d: GrafanaDashboard) -> str:
    return d.url or f"https://grafana.com/api/dashboards/{d.id}/revisions/{d.revision}/download"


def fetch_dashboard(d: GrafanaDashboard, cache: Path | None = None) -> bytes:
    """The dashboard's JSON from the control machine's cache, fetched on first use."""
    url = dashboard_url(d)
    if d.sha256:
        return fetch(Artifact(f"grafana-dashboard-{d.id}", str(d.revision), url, d.sha256), cache).read_bytes()
    # Unpinned: kept as first fetched (a grafana.com revision never changes; pin "latest"
    # with a revision number and sha256 for a site that must be reproducible).
    target = (cache or CACHE) / f"grafana-dashboard-{d.id}" / str(d.revision) / "dashboard.json"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        try:
            with os.fdopen(fd, "wb") as out:
                if "://" not in url or url.startswith("file://"):
                    with open(url.removeprefix("file://"), "rb") as src:
                        shutil.copyfileobj(src, out)
                else:
                    with urllib.request.urlopen(url, timeout=60) as src:
                        shutil.copyfileobj(src, out)
            os.replace(tmp, target)
        except OSError as e:
            raise ArtifactError(f"Grafana dashboard {d.id}: cannot fetch {url}: {e}") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target.read_bytes()


def provisioned(raw: bytes) -> str:
    """A dashboard as exported to grafana.com, made loadable from a file: its datasource
    inputs (${DS_...}, filled in by hand on an import) point at the provisioned datasource."""
    try:
        board = json.loads(raw)
    except ValueError as e:
        raise ArtifactError(f"not a Grafana dashboard (invalid JSON: {e})") from None
    inputs = [i["name"] for i in board.pop("__inputs", []) if i.get("type") == "datasource"]
    board["id"] = None  # Grafana assigns its own
    text = json.dumps(board, indent=2)
    for name in inputs:
        text = text.replace("${" + name + "}", DATASOURCE)
    return text + "\n"


def _healthy(host: Host):
    def check() -> str | None:
        url = f"http://{host.address}:{PORT}/api/health"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                health = json.load(response)
        except (OSError, ValueError) as e:
            return f"{url}: {e}"
        return None if health.get("database") == "ok" else f"{url}: database {health.get('database')!r}"

    return check


COMPONENTS = [Grafana()]
