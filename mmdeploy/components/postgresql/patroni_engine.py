"""The dbtier Engine of a Patroni-managed tier (database.ha: patroni).

It reads each node as the streaming engine does (PostgreSQL's own answers: recovery,
positions, receiver) and adds Patroni's view from that node's REST API (/cluster: the
leader, the synchronous standby, each member's state, lag and timeline), so that
dbtier.decide still picks the primary from one view. It never fences, promotes or
re-points by itself: Patroni does, and failover-db / db.rejoin ask Patroni to
(switchover, failover, reinitialize) through patronictl on a DB host.
"""

from __future__ import annotations

import json
import shlex
from typing import Mapping

from ...dbtier import NodeState
from ...errors import MMDeployError, Refused
from ...grammar import hostport
from ...facts import Fact
from ...inventory import Host, Inventory
from ...remote import Remote
from ...step import run_checked
from .config import SHELL_PATHS, shell_version
from .engine import PGEngine
from .patroni import ctl, rest_url, unit
from .probe import probe
from .scripts import SEED_TIMEOUT


def patroni_probe(host: Host) -> str:
    """This node's own Patroni status and its view of the cluster, one JSON line each (the
    version in the unit's name as the node probe finds it: the setting, else the host's)."""
    own, cluster = (shlex.quote(rest_url(host, p)) for p in ("/patroni", "/cluster"))
    return (
        f"{shell_version(host)}\n"
        f'echo "unit=$(systemctl is-active {unit(SHELL_PATHS)} 2>/dev/null)"\n'
        f'echo "patroni=$(curl -s -m 3 {own})"\n'
        f'echo "cluster=$(curl -s -m 3 {cluster})"\n'
    )


def parse_patroni(text: str) -> tuple[str, dict, dict]:
    """(unit state, own status, cluster view) from patroni_probe's output."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value

    def load(key: str) -> dict:
        try:
            found = json.loads(values.get(key) or "{}")
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    return values.get("unit", ""), load("patroni"), load("cluster")


def leader_of(view: dict) -> str | None:
    return next((m["name"] for m in view.get("members", []) if m.get("role") in ("leader", "master")), None)


def sync_standbys(view: dict) -> list[str]:
    return [m["name"] for m in view.get("members", []) if m.get("role") == "sync_standby"]


def answered(output: str, what: str) -> str:
    """patronictl's output when Patroni took the request. patronictl exits 0 even when
    Patroni refuses ("Switchover failed, details: 412, candidate name does not match with
    sync_standby"), so its answer is read: a refusal raises Refused with Patroni's reason.
    "status unknown" is not a refusal: Patroni took the request and had not seen its result
    when it answered (the caller waits for the new leader; asking again could move it twice)."""
    refusal = next((line.strip() for line in output.splitlines() if "failed, details:" in line), None)
    if refusal and "status unknown" not in refusal:
        reason = refusal.split(" ", 2)[-1] if refusal[:1].isdigit() else refusal
        raise Refused(f"{what}: Patroni refused ({reason})")
    return output


class PatroniEngine(PGEngine):
    """dbtier.Engine for PostgreSQL run by Patroni: reads like PGEngine plus Patroni's
    view; moves the primary only through Patroni."""

    manages_failover = True

    def probe(self, host: Host) -> list[str]:
        return [probe(host), patroni_probe(host)]

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState:
        node = super().state(host, facts)
        unit_state, own, view = parse_patroni(facts[patroni_probe(host)].out)
        node.fenced = False  # Patroni fences: a node without the leader lock never writes
        node.has_data = node.extra.get("data") == "1"
        node.named_primary = leader_of(view)
        receiver = node.sync.split(" from ")[-1] if node.role == "replica" else ""
        node.upstream = receiver if receiver and receiver != "-" else None
        member: dict = next((m for m in view.get("members", []) if m.get("name") == host.name), {})
        role = own.get("role") or member.get("role") or "-"
        if role == "replica" and host.name in sync_standbys(view):
            role = "sync_standby"
        node.extra.update(
            patroni_role=role,
            patroni_state=own.get("state") or member.get("state") or "",
            patroni_unit=unit_state,
            pending_restart=bool(own.get("pending_restart")),
            patroni_view=view,
        )
        if node.role == "primary" and node.running:
            node.sync = f"leader; synchronous standby: {', '.join(sync_standbys(view)) or 'none'}"
        elif role == "sync_standby":
            node.sync = f"synchronous standby, {node.sync}"
        lag = member.get("lag")
        # postgresql@V-main's state says nothing here (Patroni runs the server), and a
        # replica's own timeline is Patroni's (its control file lags until a restartpoint).
        detail = [
            d
            for d in node.detail.split(", ")
            if d and not d.startswith("unit ") and not (d.startswith("timeline ") and member.get("timeline"))
        ]
        if member.get("timeline"):
            detail.insert(0, f"timeline {member['timeline']}")
        parts = [
            f"patroni {unit_state or '?'}: {role} {node.extra['patroni_state'] or '(not answering)'}",
            f"lag {lag} bytes" if isinstance(lag, int) else "",
            "PENDING RESTART" if node.extra["pending_restart"] else "",
            *detail,
        ]
        node.detail = ", ".join(p for p in parts if p)
        return node

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        """The synchronous standby first (it has every acknowledged commit: the only one
        Patroni promotes in synchronous mode), else the one that received most."""
        sync = [s for s in replicas if s.extra.get("patroni_role") == "sync_standby"]
        return sync[0] if sync else super().most_advanced(replicas)

    # Patroni moves the primary; these would fight it.
    def _refuse(self, *_args, **_kwargs):
        raise MMDeployError(
            "the DB tier is managed by Patroni (database.ha: patroni): it fences, promotes "
            "and re-points by itself; use inv failover-db / db.rejoin, which ask Patroni"
        )

    fence = stop_and_mask = promote = attach = repoint = rejoin = _refuse

    def switchover(self, remote: Remote, leader: Host, candidate: Host) -> str:
        """Planned: the leader stops cleanly (its last WAL reaches the candidate) and the
        candidate takes the lock; the old leader follows it."""
        scope = remote.host.settings.patroni.scope
        what = f"Patroni switchover {leader.name} -> {candidate.name}"
        command = f"{ctl(self._paths(remote))} switchover {scope} --leader {leader.name} --candidate {candidate.name}"
        return answered(run_checked(remote, f"{command} --force", what, timeout=120).stdout, what)

    def failover_to(self, remote: Remote, candidate: Host) -> str:
        """Unplanned (--force): promote `candidate` now, whether the leader answers or not."""
        scope = remote.host.settings.patroni.scope
        what = f"Patroni failover to {candidate.name}"
        command = f"{ctl(self._paths(remote))} failover {scope} --candidate {candidate.name} --force"
        return answered(run_checked(remote, command, what, timeout=120).stdout, what)

    def start_member(self, remote: Remote) -> None:
        """Patroni on a node that stopped (a host back from a crash): it rewinds the old
        leader's diverged WAL (pg_rewind) and follows the leader by itself."""
        u = unit(self._paths(remote))
        run_checked(remote, f"systemctl start {u}", f"start {u}", timeout=60)

    def reinitialize(self, remote: Remote, member: Host) -> None:
        """A fresh copy of the leader when a rewind cannot bring the node back."""
        scope = remote.host.settings.patroni.scope
        run_checked(
            remote,
            f"{ctl(self._paths(remote))} reinit {scope} {member.name} --force --wait",
            f"Patroni reinitialize {member.name}",
            timeout=SEED_TIMEOUT,
        )

    def routes(self, inventory: Inventory) -> tuple[str, list[str]]:
        """Where the clients connect: HAProxy's leader and replica routes on the site's
        internal address (they follow Patroni's leader; nothing to re-point)."""
        from ... import balancer

        primary = balancer.require_endpoint(inventory, "postgresql")
        replicas = balancer.require_endpoint(inventory, "postgresql-replicas")
        return hostport(*primary), [hostport(*replicas)]
