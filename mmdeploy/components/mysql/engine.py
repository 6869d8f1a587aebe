"""The dbtier Engine for MariaDB / Oracle MySQL GTID replication."""

from __future__ import annotations

import shlex
from typing import Mapping

from ...dbtier import NodeState
from ...errors import MMDeployError
from ...facts import Fact
from ...inventory import Host
from ...passwords import mysql_matches
from ...remote import Remote
from ...step import run_checked
from .flavor import DATABASE, FENCED, FLAVORS, _lit
from .gtid import GtidSet, maria_missing, maria_state_map
from .probe import parse_probe
from .scripts import SEED_TIMEOUT, fence_script, follow_script, primary_known_script, seed_script


class MySQLEngine:
    """dbtier.Engine for MariaDB / Oracle MySQL GTID replication."""

    name = "mysql"
    label = "MySQL-family"
    port = 3306
    # Mattermost's schema version (X.Y.0), kept in its Systems table (case-sensitive name).
    schema_version_sql = "SELECT Value FROM Systems WHERE Name = 'Version'"

    def app_query(self, sql: str) -> str:
        """A script that runs `sql` on Mattermost's database as root over the socket, on
        the host; rows come back tab-separated, without headers."""
        return f"mysql --protocol=socket -NB {DATABASE} <<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"

    def __init__(self, flavor: str = "mariadb", semi_sync: bool = True, series: str = "8.4"):
        self.flavor, self.semi_sync, self.series = FLAVORS[flavor], semi_sync, series

    def probe(self, host: Host) -> list[str]:
        return [self.flavor.probe()]

    def account_probe(self) -> str:
        """Read-only: every account's plugin and stored hash (never logged: a fact); hex,
        as a caching_sha2 salt may hold any byte."""
        return "mysql --protocol=socket -NB -e 'SELECT user, host, plugin, HEX(authentication_string) FROM mysql.user'"

    def account_matches(self, fact: Fact, user: str, client: str | None, password: str) -> bool | None:
        """Whether account `user`@`client` has `password` (None: no such account)."""
        for line in fact.out.splitlines():
            fields = line.split("\t")
            if len(fields) == 4 and fields[0] == user and fields[1] == client:
                try:
                    stored = bytes.fromhex(fields[3]).decode("latin-1")
                except ValueError:
                    return False
                return mysql_matches(fields[2], stored, password)
        return None

    def state(self, host: Host, facts: Mapping[str, Fact]) -> NodeState:
        return parse_probe(self.flavor, host, facts[self.flavor.probe()])

    def _fresh(self, remote: Remote) -> NodeState:
        result = remote.run(self.flavor.probe(), timeout=60, what="probe")
        return parse_probe(self.flavor, remote.host, Fact(result.rc, result.stdout))

    def fence(self, remote: Remote) -> None:
        run_checked(remote, "set -e\n" + fence_script(self.flavor, "mmdeploy failover-db"), f"fence {remote.host.name}")

    def stop_and_mask(self, remote: Remote) -> None:
        s = self.flavor.service
        run_checked(
            remote,
            f"""\
set -e
echo "fenced (stopped) by mmdeploy failover-db at $(date -Is)" > {FENCED}
systemctl mask {s}
systemctl stop {s}
""",
            f"stop and mask {remote.host.name}",
        )

    def most_advanced(self, replicas: list[NodeState]) -> NodeState:
        known = [s for s in replicas if s.running and s.received]
        if not known:
            raise MMDeployError("no replica reports a GTID position: cannot tell which one is most advanced")
        if isinstance(known[0].received, GtidSet):
            return _most_advanced_oracle(known)
        return _most_advanced_mariadb(known)

    def wait_applied(self, remote: Remote, node: NodeState, timeout: float) -> None:
        state = self._fresh(remote)
        target = state.received or node.received
        if self.flavor.mariadb:
            query, ok = f"SELECT MASTER_GTID_WAIT({_lit(str(target))}, {float(timeout)})", "0"
        else:
            query, ok = f"SELECT WAIT_FOR_EXECUTED_GTID_SET({_lit(str(target))}, {float(timeout)})", "0"
        result = run_checked(
            remote,
            f"mysql --protocol=socket -NB -e {shlex.quote(query)}",
            f"wait for {remote.host.name} to apply {target}",
            timeout=timeout + 10,
        )
        if result.stdout.strip() != ok:
            raise MMDeployError(f"{remote.host.name} did not apply {target} within {timeout:.0f} s")

    def promote(self, remote: Remote, node: NodeState) -> None:
        run_checked(
            remote,
            f"set -e\nmysql --protocol=socket <<'SQL'\n{self.flavor.promote(self.semi_sync)}\nSQL\nrm -f {FENCED}\n",
            f"promote {remote.host.name}",
        )

    def attach(self, remote: Remote, peers: list[Host], replicas: list[Host]) -> None:
        """Commits wait for a semi-sync replica only while there is one to wait for (the
        replication accounts of every peer exist since deploy)."""
        statement = self.flavor.semi_sync_source(self.semi_sync and bool(replicas))
        run_checked(
            remote,
            f"mysql --protocol=socket -e {shlex.quote(statement)}",
            f"semi-sync on {remote.host.name}",
            timeout=30,
        )

    def repoint(self, remote: Remote, replica: NodeState, primary: Host) -> None:
        run_checked(remote, follow_script(self.flavor, primary, keep_position=True), f"re-point {remote.host.name}")

    def wait_streaming(self, remote: Remote, timeout: float) -> bool:
        f = self.flavor
        result = remote.run(
            f"""\
end=$((SECONDS + {int(timeout)}))
until [ "$(mysql --protocol=socket -e '{f.replica_status}\\G' | grep -cE '^ *({f.io_key}|{f.sql_key}): Yes$')" = 2 ]; do
  [ $SECONDS -lt $end ] || exit 1
  sleep 0.1
done
""",
            timeout=timeout + 10,
            what="wait for replication",
        )
        return result.ok

    def rejoin(self, remote: Remote, old_primary: NodeState, primary: Host) -> None:
        """Started read-only (the config says so), then re-pointed when every transaction it
        has is on the new primary, else re-seeded from it."""
        s = self.flavor.service
        run_checked(
            remote,
            f"set -e\nsystemctl unmask {s}\nsystemctl start {s}\n"
            f"mysql --protocol=socket -e {shlex.quote(self.flavor.read_only())}\n",
            f"start {remote.host.name} read-only",
        )
        mine = self._fresh(remote)
        known = run_checked(
            remote, primary_known_script(self.flavor, primary), f"read {primary.name}'s GTIDs from {remote.host.name}"
        ).stdout.strip()
        errant: list[str] | str
        if self.flavor.mariadb:
            errant = maria_missing(mine.applied, maria_state_map(*known.split("\t")))
        else:
            errant = str(mine.applied - GtidSet.parse(known))
        if mine.extra.get("user_schemas") and not errant:
            script, what = follow_script(self.flavor, primary, keep_position=False), "re-point"
        else:
            script, what = seed_script(self.flavor, primary, self.series), "re-seed"
        run_checked(
            remote, script + f"rm -f {FENCED}\n", f"{what} {remote.host.name} from {primary.name}", timeout=SEED_TIMEOUT
        )


def _most_advanced_oracle(known: list[NodeState]) -> NodeState:
    """The replica whose received set contains every other's; errant transactions (sets
    that no single replica covers) are refused, not guessed."""
    for s in known:
        if all(o.received.issubset(s.received) for o in known):
            return s
    lines = []
    for s in known:
        for o in known:
            extra = o.received - s.received
            if o is not s and extra:
                lines.append(f"{o.host.name} has {extra} that {s.host.name} lacks")
    raise MMDeployError(
        "errant transactions: no replica has received everything the others have ("
        + "; ".join(lines)
        + "); resolve them before failing over"
    )


def _most_advanced_mariadb(known: list[NodeState]) -> NodeState:
    """Highest received position (Gtid_IO_Pos), then highest applied (gtid_current_pos),
    compared per domain; a replica ahead in one domain and behind in another, or two
    different transactions at one position, is refused."""
    domains = {d for s in known for d in s.received.domains}
    for d in domains:
        at: dict[int, set[int]] = {}
        for s in known:
            if d in s.received.domains:
                server, seq = s.received.domains[d]
                at.setdefault(seq, set()).add(server)
        diverged = {seq: servers for seq, servers in at.items() if len(servers) > 1}
        if diverged:
            raise MMDeployError(
                f"replicas diverged in GTID domain {d} (different transactions at "
                f"{', '.join(f'{d}-*-{seq}' for seq in diverged)}): refusing to choose"
            )

    def ahead_everywhere(s: NodeState, pos: str) -> bool:
        return all(
            getattr(s, pos).domains.get(d, (0, 0))[1] >= getattr(o, pos).domains.get(d, (0, 0))[1]
            for o in known
            for d in domains
        )

    best = [s for s in known if ahead_everywhere(s, "received")]
    if not best:
        raise MMDeployError(
            "no replica has received the most in every GTID domain ("
            + "; ".join(f"{s.host.name}: {s.received}" for s in known)
            + ")"
        )
    return next((s for s in best if ahead_everywhere(s, "applied")), best[0])  # ties: inventory order


def engine(settings) -> MySQLEngine:
    """The dbtier entry point (settings: the inventory's DatabaseSettings)."""
    return MySQLEngine(settings.flavor, settings.synchronous, settings.mysql_series)
