"""The suite runs on a test bed of its own (MMDEPLOY_TEST_BED, default 30: network
10.213.37.0/24), never on the operator's (`inv up` uses bed 0 unless MMDEPLOY_BED says
otherwise). Set before anything imports mmdeploy.testbed, which reads it once.

`inv test` runs the modules on two pytest-xdist workers (`--dist loadfile`: a module stays
on one worker, its fixtures shared by its tests, and the modules of a SHARED_BEDS group run
one after the other on the same worker, pytest_xdist_make_scheduler): worker gwN drives
bed MMDEPLOY_TEST_BED + 10*N, so that the two never touch each other's containers
(test_main_job's operator bed is the next number)."""

import os
import re

import pytest

from tests import figures

_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
os.environ["MMDEPLOY_BED"] = str(int(os.environ.get("MMDEPLOY_TEST_BED", "30")) + 10 * _WORKER)

# The end-to-end modules, longest first (minutes in the last full run), so that the two
# workers end together: the longest ones cannot be left for last. Modules not named run
# after these, and the unit tests (seconds each) last, filling in. The first goes to one
# worker and the rest, in this order, to whichever is free: test_multi comes third, so
# that its cold deploy of 14 hosts does not share the two cores with the cluster bed's
# (their OpenSearch and PostgreSQL nodes all starting at once made both take twice as
# long, and put each other's timing-bound checks at risk).
LONGEST_FIRST = (
    "test_cluster_pattern",  # 18 hosts, cold up + chaos round
    "test_backup",
    "test_hardening",  # and the modules sharing its bed (SHARED_BEDS)
    "test_multi",  # 14 hosts, cold up + six losses
    "test_upgrade",
    "test_failover_app",  # its MariaDB half, and test_migrate on the same bed
    "test_patroni",
    "test_cluster",
    "test_storage",
    "test_mysql",
    "test_main_job",
    "test_hardening_mysql",
    "test_postgresql",
    "test_interrupted",
    "test_search",
    "test_trixie",
    "test_config_in_db",
    "test_proxies",
    "test_web",
    "test_engine",
)


# Modules that share one deployed bed, in this order, on one worker: the first deploys it on
# fresh hosts, each next one deploys the same inventory onto what the previous one left (a
# few changes, instead of a cold deploy of five hosts, about 4 minutes of the two cores
# each) and asserts what it is about from there. `bed(..., share=GROUP)` in their fixtures.
# A module with a parametrized module fixture is named per parameter (`module[param]`).
SHARED_BEDS = {
    # Reached as a sudo user with strict host keys, hostile secrets (test_hardening's bed).
    "single-postgresql": ("test_hardening", "test_single", "test_firewall", "test_failover_app[postgresql]"),
    "single-mariadb": ("test_failover_app[mysql]", "test_migrate"),
}
_GROUP_OF = {unit: group for group, units in SHARED_BEDS.items() for unit in units}


def _unit(nodeid: str) -> str:
    """The module's name, or `module[param]` where SHARED_BEDS names one of its parameters."""
    path, _, test = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    param = re.search(r"\[([^]]*)\]$", test)
    if param and f"{module}[{param.group(1)}]" in _GROUP_OF:
        return f"{module}[{param.group(1)}]"
    return module


def _scope(nodeid: str) -> str:
    """What xdist keeps on one worker: the file, or the group of end-to-end files sharing a
    bed (a unit test file of the same name is no part of it)."""
    path = nodeid.partition("::")[0]
    return _GROUP_OF.get(_unit(nodeid), path) if "/e2e/" in path else path


def pytest_xdist_make_scheduler(config, log):
    """loadfile, with each SHARED_BEDS group as one unit of work, in collection order."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedBeds(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return SharedBeds(config, log)


def _rank(item: pytest.Item) -> tuple[int, int, int]:
    if "e2e" not in item.path.parts:
        return (2, 0, 0)
    unit = _unit(item.nodeid)
    group = _GROUP_OF.get(unit)
    first = SHARED_BEDS[group][0].split("[")[0] if group else unit
    within = SHARED_BEDS[group].index(unit) if group else 0
    if first in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(first), within)
    return (1, 0, within)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: the tests of a module keep their order (their fixtures build on it).
    items.sort(key=_rank)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints the figures
        workeroutput["figures"] = figures.measured()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    figures.merge(getattr(node, "workeroutput", {}).get("figures", {}))


def pytest_terminal_summary(terminalreporter, config) -> None:
    if hasattr(config, "workerinput"):
        return
    lines = figures.lines()
    if lines:
        terminalreporter.section("figures measured by the end-to-end tests")
        for line in lines:
            terminalreporter.write_line(line)
