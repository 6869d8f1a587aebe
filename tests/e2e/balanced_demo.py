"""TEST-ONLY component (never registered by mmdeploy itself): the demo web service declared
as a layer served behind the internal balancer, so HAProxy can be exercised on the bed
before the real balanced components (search, storage, push proxy) exist. It has no steps
of its own: the demo component serves the page on the hosts where `demo.enabled` is true;
this only declares the Balanced layer, as those components will.

`registry_with_layer()` is the registry of every real component plus this one (the
registry's own build(), so every derivation is the real one)."""

from mmdeploy import registry as registry_module
from mmdeploy.component import Balanced, Component

LAYER = "demo"


class BalancedDemo(Component):
    name = "balanced-demo"
    roles = ("app",)
    # Only the job server may use the layer: the other app servers are refused.
    balanced = (Balanced(LAYER, port=lambda s: s.demo.port, health="/", clients=("jobserver",)),)

    def enabled(self, host):
        return host.settings.demo.enabled

    def steps(self, ctx):
        return []


def registry_with_layer():
    real = registry_module.registry()
    return registry_module.build([*real.components, BalancedDemo()], real.template_dirs)
