"""Prometheus's node exporter from Debian's package on every host (CPU, memory, disk,
network). The other exporters belong to the service they watch (postgresql, mysql,
nginx components), each declaring its scrape target."""

from __future__ import annotations

from .. import distros
from ..component import Component, Context, Metrics
from ..ops import Packages, Service

PORT = 9100  # the Debian package's default


class NodeExporter(Component):
    name = "node-exporter"
    roles = ("*",)
    metrics = (Metrics("node", PORT),)
    after = ("base",)

    def steps(self, ctx: Context):
        package = distros.of(ctx.facts.host("os")).exporter("node")
        return [Packages(package), Service(package)]


COMPONENTS = [NodeExporter()]
