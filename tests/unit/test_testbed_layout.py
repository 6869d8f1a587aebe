"""Test-bed layouts: fixed host names, roles and addresses (no Docker needed)."""

import subprocess

import pytest

from mmdeploy.testbed import GATEWAY, BedHost, TestbedError, layout

NET = GATEWAY.rsplit(".", 1)[0]  # the suite's own bed (tests/conftest.py): 10.213.37 by default

ALL = ["proxy", "app", "jobserver", "monitoring", "db"]


def table(hosts: list[BedHost]) -> list[tuple[str, str, list[str]]]:
    return [(h.name, h.address, h.roles) for h in hosts]


def test_single():
    assert table(layout("single")) == [
        ("proxy1", f"{NET}.11", ["proxy"]),
        ("app1", f"{NET}.12", ["app"]),
        ("job1", f"{NET}.13", ["jobserver", "monitoring"]),
        ("db1", f"{NET}.14", ["db"]),
        ("db2", f"{NET}.15", ["db"]),
    ]


def test_multi():
    assert table(layout("multi")) == [
        ("proxy1", f"{NET}.11", ["proxy"]),
        ("proxy2", f"{NET}.12", ["proxy"]),
        ("app1", f"{NET}.13", ["app"]),
        ("app2", f"{NET}.14", ["app"]),
        ("job1", f"{NET}.15", ["jobserver", "monitoring"]),
        ("db1", f"{NET}.16", ["db"]),
        ("db2", f"{NET}.17", ["db"]),
        ("db3", f"{NET}.18", ["db"]),
        ("search1", f"{NET}.19", ["search"]),
        ("search2", f"{NET}.20", ["search"]),
        ("storage1", f"{NET}.21", ["storage"]),
        ("storage2", f"{NET}.22", ["storage"]),
        ("push1", f"{NET}.23", ["pushproxy"]),
        ("push2", f"{NET}.24", ["pushproxy"]),
    ]


def test_cluster():
    names = [
        "proxy1",
        "proxy2",
        "app1",
        "app2",
        "app3",
        "job1",
        "db1",
        "db2",
        "db3",
        "search1",
        "search2",
        "search3",
        "storage1",
        "storage2",
        "storage3",
        "storage4",
        "push1",
        "push2",
    ]
    hosts = layout("cluster")
    assert [h.name for h in hosts] == names
    assert [h.address for h in hosts] == [f"{NET}.{11 + i}" for i in range(len(names))]
    roles = {h.name: h.roles for h in hosts}
    assert roles["app3"] == ["app"]
    assert roles["job1"] == ["jobserver", "monitoring"]
    assert roles["db3"] == ["db"]
    assert roles["search3"] == ["search"]
    assert roles["storage4"] == ["storage"]
    assert roles["push2"] == ["pushproxy"]


def test_allinone():
    assert table(layout("allinone")) == [("aio1", f"{NET}.11", ALL)]


def test_pair():
    """The smallest Mattermost cluster: two app servers (each with a push proxy and storage)."""
    assert table(layout("pair")) == [
        ("proxy1", f"{NET}.11", ["proxy"]),
        ("app1", f"{NET}.12", ["app", "pushproxy", "storage"]),
        ("app2", f"{NET}.13", ["app", "pushproxy", "storage"]),
        ("job1", f"{NET}.14", ["jobserver", "monitoring", "db"]),
    ]


def test_mattermost_hosts_get_the_ha_sysctls_from_docker():
    from mmdeploy.components.mattermost import HA_SYSCTL
    from mmdeploy.testbed.containers import sysctl_flags

    hosts = {h.name: h for h in layout("pair")}
    flags = sysctl_flags(hosts["app1"])
    assert flags[:2] == ["--sysctl", "net.ipv4.ip_local_port_range=20000 65000"]
    assert len(flags) == 2 * len(HA_SYSCTL) and sysctl_flags(hosts["job1"]) == flags
    assert sysctl_flags(hosts["proxy1"]) == []


@pytest.mark.parametrize("n", [1, 3, 40])
def test_n_hosts(n):
    hosts = layout(hosts=n)
    assert table(hosts)[0] == ("host1", f"{NET}.11", ALL)
    rest = [(f"host{i}", f"{NET}.{10 + i}", ["app"]) for i in range(2, n + 1)]
    assert table(hosts)[1:] == rest
    assert hosts[-1].address == f"{NET}.{10 + n}"


def test_roles_are_not_shared_between_hosts():
    a, b = layout(hosts=1), layout(hosts=1)
    a[0].roles.append("search")
    assert b[0].roles == ALL and layout("allinone")[0].roles == ALL


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # neither
        {"pattern": "single", "hosts": 2},  # both
        {"pattern": "huge"},  # unknown pattern
        {"hosts": 0},
        {"hosts": 61},  # the bed allows 60 hosts (issue 14)
        {"hosts": -1},
        {"hosts": True},
    ],
)
def test_bad_input_raises(kwargs):
    with pytest.raises(TestbedError):
        layout(**kwargs)


def test_network_removal_waits_out_endpoints_the_daemon_still_lists(monkeypatch):
    """`docker network rm` right after `rm -f` of many containers can fail with 'has active
    endpoints' (the daemon releases them after it returns): the removal disconnects what
    is still listed and asks again, and any other failure is raised at once."""
    from mmdeploy.testbed import containers

    calls, answers = [], ["active endpoints", "active endpoints", ""]

    def docker(*args, check=True, input=None):
        calls.append(args)
        if args[:2] == ("network", "rm"):
            err = answers.pop(0)
            return subprocess.CompletedProcess(args, 1 if err else 0, "", f"network has {err}" if err else "")
        if args[:2] == ("network", "inspect"):
            return subprocess.CompletedProcess(args, 0, "abc123 ", "")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(containers, "docker", docker)
    monkeypatch.setattr(containers.time, "sleep", lambda s: None)
    containers.remove_network()
    assert [c for c in calls if c[:2] == ("network", "rm")] == [("network", "rm", containers.NETWORK)] * 3
    assert ("network", "disconnect", "--force", containers.NETWORK, "abc123") in calls
    answers[:] = ["in use by something else"]
    with pytest.raises(containers.TestbedError, match="in use by something else"):
        containers.remove_network()


def test_a_multi_bed_grows_into_cluster_keeping_every_address():
    """testbed.grow: the hosts a site has keep their names and addresses (the multi job
    server stays at .15, where a fresh cluster bed has app3), the cluster's extra hosts
    follow the last one, in the cluster layout's order."""
    from mmdeploy.testbed import grown

    multi = layout("multi")
    hosts = grown(multi, "cluster")
    assert hosts[: len(multi)] == multi
    prefix = GATEWAY.rsplit(".", 1)[0]
    assert table(hosts[len(multi) :]) == [
        ("app3", f"{prefix}.25", ["app"]),
        ("search3", f"{prefix}.26", ["search"]),
        ("storage3", f"{prefix}.27", ["storage"]),
        ("storage4", f"{prefix}.28", ["storage"]),
    ]
    assert sorted(h.name for h in hosts) == sorted(h.name for h in layout("cluster"))
    assert grown(hosts, "cluster") == hosts  # already grown: nothing to add
