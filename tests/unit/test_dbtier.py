"""The engine-neutral failover with a fake engine and fake node states: the order of
fence / choose / wait / promote / re-point, the most advanced replica, and every refusal
(unknown or non-replica --to, unreachable primary without --force, split brain) before
anything changes."""

import re

import pytest

from mmdeploy import dbtier, inventory
from mmdeploy.components.postgresql import PGEngine
from mmdeploy.dbtier import NodeState
from mmdeploy.errors import InventoryError, MMDeployError

SITE = """\
pattern: multi
ssh:
  user: root
hosts:
  - {name: proxy1, address: 192.0.2.11, roles: [proxy]}
  - {name: proxy2, address: 192.0.2.12, roles: [proxy]}
  - {name: app1, address: 192.0.2.13, roles: [app]}
  - {name: app2, address: 192.0.2.14, roles: [app]}
  - {name: job1, address: 192.0.2.15, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.21, roles: [db]}
  - {name: db2, address: 192.0.2.22, roles: [db]}
  - {name: db3, address: 192.0.2.23, roles: [db]}
  - {name: search1, address: 192.0.2.31, roles: [search]}
  - {name: search2, address: 192.0.2.32, roles: [search]}
  - {name: storage1, address: 192.0.2.41, roles: [storage]}
  - {name: storage2, address: 192.0.2.42, roles: [storage]}
  - {name: push1, address: 192.0.2.51, roles: [pushproxy]}
  - {name: push2, address: 192.0.2.52, roles: [pushproxy]}
"""


class FakeEngine:
    name = "fake"

    def __init__(self, tier):
        self.tier, self.calls = tier, []

    def most_advanced(self, replicas):
        return PGEngine().most_advanced(replicas)

    def fence(self, remote):
        self.calls.append(("fence", remote))
        self.tier.nodes[remote] = node(self.tier.by_name[remote], "replica", fenced=True)

    def stop_and_mask(self, remote):
        self.calls.append(("stop_and_mask", remote))
        self.tier.nodes[remote] = node(self.tier.by_name[remote], "primary", running=False, fenced=True)

    def wait_applied(self, remote, node_, timeout):
        self.calls.append(("wait_applied", remote))

    def promote(self, remote, node_):
        self.calls.append(("promote", remote))
        self.tier.nodes[remote] = node(self.tier.by_name[remote], "primary")

    def attach(self, remote, peers, replicas):
        self.calls.append(("attach", remote, tuple(h.name for h in replicas)))

    def repoint(self, remote, replica, primary):
        self.calls.append(("repoint", remote, primary.name))

    def rejoin(self, remote, old, primary):
        self.calls.append(("rejoin", remote, primary.name))
        self.tier.nodes[remote] = node(self.tier.by_name[remote], "replica", upstream=primary.address)

    def wait_streaming(self, remote, timeout):
        return True


class FakeTier:
    """What _failover uses of a Tier; remotes are just host names."""

    def __init__(self, inv, nodes):
        self.hosts = inv.with_role("db")
        self.by_name = {h.name: h for h in self.hosts}
        self.nodes = nodes
        self.engine = FakeEngine(self)
        self.remotes = {h.name: h.name for h in self.hosts}
        self.started = 0.0
        self.lines = []

    def say(self, message):
        self.lines.append(message)

    def states(self, hosts=None):
        return {h.name: self.nodes[h.name] for h in (hosts or self.hosts)}

    def parallel(self, fn, items):
        return [fn(i) for i in items]


def node(host, role, running=True, reachable=True, received=None, fenced=False, upstream=None):
    return NodeState(
        host=host,
        reachable=reachable,
        running=running and reachable,
        role=role,
        writable=role == "primary" and running and reachable and not fenced,
        upstream=upstream,
        received=received,
        applied=received,
        fenced=fenced,
    )


@pytest.fixture
def inv(write_inventory):
    return inventory.load(write_inventory(SITE))


def tier_of(inv, db1="up", db2=100, db3=90):
    h = {x.name: x for x in inv.with_role("db")}
    primary = {
        "up": node(h["db1"], "primary", received=100),
        "ssh-only": node(h["db1"], "primary", running=False),
        "dead": node(h["db1"], "unknown", reachable=False),
    }[db1]
    t = FakeTier(
        inv,
        {
            "db1": primary,
            "db2": node(h["db2"], "replica", received=db2, upstream=h["db1"].address),
            "db3": node(h["db3"], "replica", received=db3, upstream=h["db1"].address),
        },
    )
    return t


def run(t, to=None, force=False):
    return dbtier._failover(t, to, force)


def kinds(t):
    return [c[0] for c in t.engine.calls]


def test_failover_of_a_dead_primary_needs_force(inv):
    t = tier_of(inv, db1="dead")
    with pytest.raises(MMDeployError, match="--force"):
        run(t)
    assert t.engine.calls == []


def test_forced_failover_promotes_the_most_advanced_and_repoints_the_rest(inv):
    t = tier_of(inv, db1="dead", db2=90, db3=120)
    result = run(t, force=True)
    assert result.new == "db3" and result.old == "db1" and result.repointed == ["db2"]
    assert kinds(t) == ["wait_applied", "promote", "attach", "repoint", "attach"]
    assert ("repoint", "db2", "db3") in t.engine.calls
    assert t.engine.calls[-1] == ("attach", "db3", ("db2",))  # the dead node is out of the sync set


def test_planned_switchover_fences_first_and_rejoins_the_old_primary(inv):
    t = tier_of(inv)
    result = run(t)
    assert kinds(t) == ["fence", "wait_applied", "promote", "attach", "repoint", "rejoin", "attach"]
    assert result.new == "db2" and result.rejoined == "db1"
    assert t.engine.calls[-1] == ("attach", "db2", ("db1", "db3"))


def test_primary_answering_only_over_ssh_is_stopped_and_masked(inv):
    t = tier_of(inv, db1="ssh-only")
    run(t)
    assert kinds(t)[0] == "stop_and_mask" and "rejoin" not in kinds(t)


@pytest.mark.parametrize(
    "to, message",
    [
        ("db9", "is not a DB host"),
        ("app1", "is not a DB host"),
        ("db1", "is not a running replica (it is the primary)"),
    ],
)
def test_bad_to_is_refused_before_anything_changes(inv, to, message):
    t = tier_of(inv)
    with pytest.raises(InventoryError, match=re.escape(message)):
        run(t, to=to)
    assert t.engine.calls == []


def test_to_a_stopped_replica_is_refused(inv):
    t = tier_of(inv)
    t.nodes["db3"] = node(t.by_name["db3"], "replica", running=False)
    with pytest.raises(InventoryError, match="db3 is not a running replica"):
        run(t, to="db3")
    assert t.engine.calls == []


def test_to_a_replica_that_is_behind_is_refused_before_promoting(inv):
    t = tier_of(inv, db2=100, db3=90)
    with pytest.raises(MMDeployError, match="behind db2"):
        run(t, to="db3")
    assert "promote" not in kinds(t)


def test_to_picks_the_named_replica(inv):
    t = tier_of(inv, db2=100, db3=100)
    assert run(t, to="db3").new == "db3"


def test_split_brain_is_refused(inv):
    t = tier_of(inv)
    t.nodes["db2"] = node(t.by_name["db2"], "primary", received=5)
    with pytest.raises(MMDeployError, match="split brain"):
        run(t)
    assert t.engine.calls == []


def test_most_advanced_by_received_position_ties_in_inventory_order(inv):
    h = inv.with_role("db")
    nodes = [node(h[1], "replica", received=7), node(h[2], "replica", received=7), node(h[0], "replica", received=3)]
    assert PGEngine().most_advanced(nodes).host.name == "db2"
    with pytest.raises(MMDeployError):
        PGEngine().most_advanced([node(h[1], "replica")])


def test_current_primary_from_the_replicas_upstream(inv):
    t = tier_of(inv, db1="dead")
    states = t.states()
    assert dbtier.current_primary(t.hosts, states).host.name == "db1"
    for s in states.values():
        s.upstream = None
    assert dbtier.current_primary(t.hosts, states) is None


def test_status_table(inv):
    t = tier_of(inv)
    text = dbtier.format_status(list(t.states().values()))
    assert text.splitlines()[0].split()[:3] == ["host", "role", "access"]
    assert "writable" in text and "read-only" in text


def test_unknown_engine_is_a_clear_error():
    settings = type("S", (), {"engine": "oracle"})()
    with pytest.raises(MMDeployError, match="not available"):
        dbtier.engine_for(settings)
