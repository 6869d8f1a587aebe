"""Base: what every host gets before any service (apt proxy, common tools)."""

from __future__ import annotations

from ..component import Component, Context
from ..ops import File, Packages
from ..ops.command import Command
from ..step import Step

APT_PROXY_FILE = "/etc/apt/apt.conf.d/01mmdeploy-proxy"


class Base(Component):
    name = "base"
    roles = ("*",)
    sets_up_apt = True  # the proxy file: packages are fetched ahead only once it is in place

    def steps(self, ctx: Context):
        proxy = ctx.settings.apt_proxy
        steps: list[Step] = []
        if proxy:
            steps.append(File(APT_PROXY_FILE, ctx.render("base/apt-proxy.conf.j2", proxy=proxy.rstrip("/"))))
        else:
            steps.append(
                Command(f"remove {APT_PROXY_FILE}", f"rm -f {APT_PROXY_FILE}", unless=f"test ! -e {APT_PROXY_FILE}")
            )
        # Tools later components and `verify` rely on, on minimal images too.
        steps.append(Packages("ca-certificates", "curl", "gnupg"))
        return steps


COMPONENTS = [Base()]
