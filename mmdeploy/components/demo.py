"""Demo: a small web service built from every kind of op (package, group, user, directory,
templates, unit file, service, handler). The test bed and the no-op benchmark deploy it;
it is off unless `demo.enabled` is true."""

from __future__ import annotations

import urllib.request

from pydantic import Field

from ..component import CONTROL, Check, Component, Context, Port
from ..ops import Command, Directory, File, Group, Packages, Service, User, unit
from ..settings import Section

ROOT = "/srv/mmdeploy-demo"


class DemoSettings(Section):
    """A small component (package, user, templates, unit, service, handler) that exercises
    every op; the test bed and the no-op benchmark deploy it."""

    enabled: bool = False
    port: int = Field(default=8080, ge=1, le=65535)
    message: str = "mmdeploy demo"
    # Extra templated files, so a benchmark can ask for a component of N steps.
    extra_files: int = Field(default=0, ge=0, le=1000)


class Demo(Component):
    name = "demo"
    roles = ("*",)
    settings = {"demo": DemoSettings}
    ports = (Port("demo", lambda h: h.settings.demo.port, (CONTROL,), why="its check, from the control machine"),)
    after = ("base",)

    def enabled(self, host):
        return host.settings.demo.enabled

    def steps(self, ctx: Context):
        demo = ctx.settings.demo
        steps = [
            Packages("busybox"),
            Group("mmdemo"),
            User("mmdemo", home=ROOT),
            Directory(ROOT, owner="mmdemo", group="mmdemo", mode="0755"),
            File(f"{ROOT}/index.html", ctx.render("demo/index.html.j2"), owner="mmdemo", group="mmdemo"),
            File("/etc/default/mmdeploy-demo", ctx.render("demo/defaults.j2"), mode="0640", notify=("restart",)),
            unit("mmdeploy-demo.service", ctx.render("demo/mmdeploy-demo.service.j2"), notify=("restart",)),
            Service("mmdeploy-demo"),
        ]
        steps += [
            File(f"{ROOT}/extra-{i}.txt", f"{demo.message} {i}\n", owner="mmdemo", group="mmdemo")
            for i in range(demo.extra_files)
        ]
        return steps

    def handlers(self, ctx: Context):
        return {"restart": Command("restart mmdeploy-demo", "systemctl restart mmdeploy-demo")}

    def checks(self, inventory):
        return [Check(f"demo answers on {h.name}", _answers(h), h.name) for h in self.hosts(inventory)]


def _answers(host):
    def check() -> str | None:
        url = f"http://{host.address}:{host.settings.demo.port}/"
        try:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError as e:
            return f"{url}: {e}"
        return None if host.settings.demo.message in body else f"{url}: message not in page"

    return check


COMPONENTS = [Demo()]
