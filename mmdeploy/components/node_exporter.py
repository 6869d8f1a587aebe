"""Prometheus's node exporter from Debian's package on every host (CPU, memory, disk,
network). The other exporters belong to the service they watch (postgresql, mysql,
nginx components), each declaring its scrape target."""

from __future__ import annotations

from .. import distros
from ..component import Component, Context, Metrics
from ..ops.exporter import env_file, exporter_handlers, exporter_steps, listen_flag

PORT = 9100  # the Debian package's default


class NodeExporter(Component):
    name = "node-exporter"
    roles = ("*",)
    metrics = (Metrics("node", PORT),)
    after = ("base",)

    def steps(self, ctx: Context):
        package = distros.of(ctx.facts.host("os")).exporter("node")
        args = listen_flag(ctx.host.private_address, PORT)
        return exporter_steps(package, env_file("components/node_exporter", ARGS=args), secret=False)

    def handlers(self, ctx: Context):
        return exporter_handlers(distros.of(ctx.facts.host("os")).exporter("node"))


COMPONENTS = [NodeExporter()]
