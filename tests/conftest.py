"""The suite runs on a test bed of its own (MMDEPLOY_TEST_BED, default 30: network
10.213.37.0/24), never on the operator's (`inv up` uses bed 0 unless MMDEPLOY_BED says
otherwise). Set before anything imports mmdeploy.testbed, which reads it once.

`inv test` runs the modules on two pytest-xdist workers (a module stays on one worker, its
fixtures shared by its tests): worker gwN drives bed MMDEPLOY_TEST_BED + 10*N, so that the
two never touch each other's containers (test_main_job's operator bed is the next number)."""

import os

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
    "test_hardening",
    "test_multi",  # 14 hosts, cold up + six losses + growth into cluster
    "test_failover_app",
    "test_upgrade",
    "test_mysql",
    "test_patroni",
    "test_storage",
    "test_migrate",
    "test_cluster",
    "test_single",
    "test_firewall",
    "test_main_job",
    "test_hardening_mysql",
    "test_interrupted",
    "test_search",
    "test_postgresql",
    "test_config_in_db",
    "test_proxies",
    "test_trixie",
    "test_upgrade_proxies",
    "test_web",
    "test_engine",
)


def _rank(item: pytest.Item) -> tuple[int, int]:
    module = item.path.stem
    if "e2e" not in item.path.parts:
        return (2, 0)
    if module in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(module))
    return (1, 0)


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
