"""Host facts for unit tests that build a component's steps without a host: what
facts.HOST_FACTS would read on a Debian 12 host with 4 GB and 2 CPUs (or another
distribution's os-release)."""


class HostFacts:
    def __init__(self, os: str = "debian 12 bookworm", mem_kb: str = "4000000", cpus: str = "2"):
        self.values = {"os": os, "mem_kb": mem_kb, "cpus": cpus}

    def host(self, name: str) -> str:
        return self.values[name]
