"""Rolling upgrades of the Mattermost tier, with automatic rollback, and `rollback`.

The target is the inventory's mattermost.version (`inv upgrade --version X` sets it).
What Mattermost documents for a high availability cluster decides the procedure
(administration-guide/operations-scaling/high-availability-cluster-based-deployment,
"Upgrade guide"):

- A patch release of the same series (same major.minor: the same schema) is applied
  while operating continuously. The new release is unpacked beside the running one on
  every node first; then the job server, then one app server at a time: drained from every
  proxy (NGINX marks it `down` and reloads; the requests it holds finish, its websockets
  close when it stops and the clients reconnect to another node), switched to the new
  release and restarted, verified directly (its own ping, database status and version,
  stable for a few seconds), and put back. A node that fails its verification goes back
  to the release still on its disk, is verified and put back, and the upgrade stops there
  with the reason; the nodes after it are untouched.
- An upgrade to another series may change the database schema: Mattermost requires a
  short service interruption. The proxies send no request to any app server (the
  documented "stop NGINX", with NGINX itself still answering its health page), every
  server stops, all are switched to the new release, one starts first and migrates the
  schema (under Mattermost's migration lock), is verified, then the others start; then the
  proxies send traffic again. A backup is taken first when backups are configured.
- Mattermost keeps migrations backwards compatible only from the previous ESR: an
  upgrade that skips an ESR is refused with the path to follow (releases.upgrade_path).

`rollback` returns every node to the release it ran before (kept on disk), in the same
rolling way. After a schema-changing upgrade that migrated the database, Mattermost
does not support running the older release on the newer schema (it refuses to start);
rollback then refuses, and names the documented ways back: restore the database backup
taken before the upgrade (`inv restore --to-time`), or the newer binary's
`mattermost db downgrade`.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import releases
from .components.mattermost import (
    HOME,
    RELEASES,
    STOP_GRACE,
    activate_script,
    artifact,
    listen_address,
    restart,
    unit_name,
)
from .components.nginx import drained_servers_script, upstream_state_script
from .errors import InventoryError, MMDeployError
from .fleet import Fleet
from .inventory import Host, Inventory
from .ops import Unpacked
from .step import run_checked

PREVIOUS = f"{HOME}/.mmdeploy-previous"  # "<version> <upgrade started, UTC ISO>" of the release before
DRAIN_TIMEOUT = 30.0  # the longest wait for a drained node's in-flight requests
VERIFY_TIMEOUT = 60.0  # a restarted node must be healthy within this
VERIFY_WINDOW = 5.0  # ... and stay healthy (no restart) this long
Out = Callable[[str], None]


@dataclass
class NodeResult:
    host: str
    role: str  # "jobserver" | "app"
    before: str | None
    after: str | None
    status: str  # upgraded | rolled-back | already | untouched | failed | stopped | started
    seconds: float = 0.0
    drain_seconds: float | None = None
    problem: str | None = None


@dataclass
class UpgradeReport:
    """What `upgrade` or `rollback` did, node by node, in the order it went."""

    action: str  # "upgrade" | "rollback"
    target: str | None
    procedure: str  # "rolling" | "schema-change" | "none"
    nodes: list[NodeResult] = field(default_factory=list)
    ok: bool = True
    message: str = ""
    seconds: float = 0.0
    started_at: str = ""  # UTC, the control machine's clock when the command started
    # schema-change: the DB primary's clock once every server had stopped and before the
    # migration: the moment `inv restore --to-time` goes back to (rollback, a failed upgrade)
    restore_point: str = ""
    downtime_seconds: float | None = None  # schema-change: no app server behind the proxies
    backup: str | None = None  # the backup taken first (schema-change)
    warnings: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NodeState:
    host: Host
    version: str | None  # the live release
    previous: str | None  # the release before the last upgrade, if any
    previous_at: str | None
    unit: str  # systemctl is-active
    metrics: bool  # its metrics endpoint answered (required again after a restart)
    releases: list[str] = field(default_factory=list)  # unpacked under RELEASES

    @property
    def role(self) -> str:
        return "app" if self.host.has("app") else "jobserver"


def mattermost_nodes(inventory: Inventory) -> list[Host]:
    """The job servers that serve no users first, then the app servers, inventory order."""
    jobs = [h for h in inventory.hosts if h.has("jobserver") and not h.has("app")]
    return jobs + inventory.with_role("app")


# --- reading and checking one node --------------------------------------------------------


def _state_script(host: Host) -> str:
    u, s = unit_name(host), host.settings.mattermost
    return f"""\
echo "version=$(cat {HOME}/.mmdeploy-version 2>/dev/null)"
echo "sha=$(cat {HOME}/.mmdeploy-release 2>/dev/null)"
for d in {RELEASES}/*/; do [ -f "$d.mmdeploy-sha256" ] && echo "release=$(basename "$d") $(cat "$d.mmdeploy-sha256")"; done
echo "previous=$(cat {PREVIOUS} 2>/dev/null)"
echo "unit=$(systemctl is-active {u})"
echo "metrics=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://{listen_address(host, s.metrics_port)}/metrics)"
"""


def read_node(fleet: Fleet, host: Host) -> NodeState:
    out = run_checked(
        fleet.remote(host), _state_script(host), f"read the Mattermost release on {host.name}", timeout=30
    ).stdout
    values, shas = {}, {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "release":
            release, _, sha = value.partition(" ")
            shas[sha] = release
        else:
            values[key] = value.strip()
    version = values.get("version") or shas.get(values.get("sha", ""))  # installed before .mmdeploy-version
    previous, _, previous_at = values.get("previous", "").partition(" ")
    return NodeState(
        host,
        version or None,
        previous or None,
        previous_at or None,
        values.get("unit", "unknown"),
        values.get("metrics") == "200",
        sorted(shas.values(), key=_key),
    )


def _key(version: str):
    try:
        return releases._parse(version)
    except ValueError:
        return (0, 0, 0)


def _probe_script(host: Host) -> str:
    u, s = unit_name(host), host.settings.mattermost
    ping = (
        (
            f'code=$(curl -s -m 5 -D "$h" -o "$b" -w \'%{{http_code}}\' '
            f"'http://{listen_address(host, s.port)}/api/v4/system/ping?get_server_status=true')\n"
            'echo "code=$code"\n'
            "echo \"version=$(sed -n 's/^X-Version-Id: *//Ip' \"$h\" | tr -d '\\r')\"\n"
            "echo \"body=$(head -c 600 \"$b\" | tr '\\n' ' ')\"\n"
        )
        if host.has("app")
        else ""
    )
    return f"""\
h=$(mktemp); b=$(mktemp); trap 'rm -f "$h" "$b"' EXIT
echo "unit=$(systemctl is-active {u})"
echo "restarts=$(systemctl show -p NRestarts --value {u})"
echo "live=$(cat {HOME}/.mmdeploy-version 2>/dev/null)"
{ping}echo "metrics=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://{listen_address(host, s.metrics_port)}/metrics)"
"""


def probe_problem(values: dict, host: Host, version: str, need_metrics: bool) -> str | None:
    """Why the node is not healthy on `version` right now, or None."""
    if values.get("unit") != "active":
        return f"{unit_name(host)} is {values.get('unit') or 'unknown'}"
    if values.get("live") != version:
        return f"the live release is {values.get('live') or 'unknown'}, not {version}"
    if host.has("app"):
        code = values.get("code", "")
        if code != "200":
            return f"ping answered HTTP {code or '(no answer)'}: {values.get('body', '')[:200]}".rstrip(": ")
        try:
            body = json.loads(values.get("body") or "{}")
        except ValueError:
            body = {}
        if body.get("status") != "OK":
            return f"ping status {body.get('status')!r}"
        if body.get("database_status", "OK") != "OK":
            return f"database status {body.get('database_status')!r}"
        if not values.get("version", "").startswith(version + "."):
            return f"the server says it runs {values.get('version') or 'an unknown version'}, not {version}"
    if need_metrics and values.get("metrics") != "200":
        return f"its metrics endpoint answered HTTP {values.get('metrics') or '(no answer)'} (it did before)"
    return None


def _live(state: NodeState) -> str:
    """The node's live release (upgrade() refuses nodes without one)."""
    if state.version is None:
        raise MMDeployError(f"{state.host.name}: no Mattermost release is live there: deploy it first (inv deploy)")
    return state.version


def _previous(state: NodeState) -> str:
    """The release the node ran before (rollback() picks only nodes with one)."""
    if state.previous is None:
        raise MMDeployError(f"{state.host.name}: no previous release to return to")
    return state.previous


def verify_node(
    fleet: Fleet,
    host: Host,
    version: str,
    need_metrics: bool,
    timeout: float = VERIFY_TIMEOUT,
    window: float = VERIFY_WINDOW,
) -> str | None:
    """Checked on the node itself, not through the proxies: healthy on `version` within
    `timeout`, then still healthy and not restarted for `window` seconds. None when it is,
    else the last problem seen."""
    remote = fleet.remote(host)
    end = time.monotonic() + timeout
    healthy_since, restarts = None, None
    problem: str | None = "not checked"
    while True:
        out = remote.run(_probe_script(host), timeout=20, what=f"check {host.name}").stdout
        values = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
        problem = probe_problem(values, host, version, need_metrics)
        if problem is None and healthy_since is not None and values.get("restarts") != restarts:
            problem = f"{unit_name(host)} restarted while being checked"
        if problem is None:
            if healthy_since is None:
                healthy_since, restarts = time.monotonic(), values.get("restarts")
            elif time.monotonic() - healthy_since >= window:
                return None
        else:
            healthy_since = None
            if time.monotonic() > end:
                return problem
        time.sleep(0.5)


# --- the proxies ---------------------------------------------------------------------------


def set_upstream(fleet: Fleet, node: Host, down: bool) -> None:
    """Drain `node` from (down=True), or put it back into, every proxy's upstream."""
    port = node.settings.mattermost.port
    script = upstream_state_script(node.private_address, port, down)
    what = f"{'drain' if down else 'restore'} {node.name} on"
    fleet.parallel(
        lambda p: run_checked(fleet.remote(p), script, f"{what} {p.name}", timeout=60),
        fleet.inventory.with_role("proxy"),
    )


def drained(fleet: Fleet) -> dict[str, list[str]]:
    """proxy -> the app servers (address:port) it has marked down."""
    proxies = fleet.inventory.with_role("proxy")
    outs = fleet.parallel(
        lambda p: run_checked(fleet.remote(p), drained_servers_script(), f"read {p.name}", timeout=30).stdout.split(),
        proxies,
    )
    return {p.name: out for p, out in zip(proxies, outs)}


def _inflight_script(node: Host, proxies: list[Host], timeout: float) -> str:
    s = node.settings.mattermost
    sources = "|".join(p.private_address.replace(".", "\\.") for p in proxies) or "none"
    # Connections from the proxies to this node, less its websockets (Mattermost's own
    # gauge): what is left are requests in flight (or idle keepalives that NGINX's old
    # workers close when they exit).
    return f"""\
end=$((SECONDS + {int(timeout)}))
while :; do
  conns=$(ss -Htn state established '( sport = :{s.port} )' | awk '{{print $4}}' | grep -cE '^({sources}):' || true)
  ws=$(curl -s -m 2 http://{listen_address(node, s.metrics_port)}/metrics | awk '/^mattermost_http_websockets_total/ {{n += $2}} END {{print n + 0}}')
  if [ $((conns - ws)) -le 0 ]; then echo "drained: $conns connection(s), $ws websocket(s)"; exit 0; fi
  if [ $SECONDS -ge $end ]; then echo "still $conns connection(s), $ws websocket(s) after {int(timeout)} s"; exit 0; fi
  sleep 0.2
done
"""


def drain(fleet: Fleet, node: Host, timeout: float = DRAIN_TIMEOUT) -> float:
    """Take `node` out of every proxy and wait (at most `timeout`) for the requests it
    holds; returns the seconds it took."""
    t0 = time.monotonic()
    set_upstream(fleet, node, down=True)
    time.sleep(0.3)  # a reload only signals NGINX: let the new workers take over
    out = run_checked(
        fleet.remote(node),
        _inflight_script(node, fleet.inventory.with_role("proxy"), timeout),
        f"wait for the requests {node.name} holds",
        timeout=timeout + 30,
    ).stdout.strip()
    seconds = round(time.monotonic() - t0, 2)
    fleet.say(f"{node.name}: drained from the proxies in {seconds:.1f} s ({out})")
    return seconds


# --- switching a node ------------------------------------------------------------------------


def _stage(fleet: Fleet, inventory: Inventory, nodes: list[NodeState]) -> None:
    """Unpack the target release beside the running one on every node (no restart)."""

    def one(state: NodeState) -> None:
        s = state.host.settings
        step = Unpacked(artifact(s), f"{RELEASES}/{s.mattermost.version}", fetch_on_host=s.mattermost.fetch_on_host)
        remote = fleet.remote(state.host)
        facts = {c: _fact(remote, c) for c in step.facts()}
        change = step.check(facts)
        if change is not None:
            step.apply(remote, change)

    fleet.parallel(one, nodes)


def _fact(remote, command):
    from .facts import Fact

    r = remote.run(command, timeout=60, what="probe")
    return Fact(r.rc, r.stdout)


def _apply_component(fleet: Fleet, inventory: Inventory, host: Host) -> str | None:
    """Run the mattermost component on one node with the target inventory: it activates
    the (staged) release, keeps the config mmdeploy owns, and restarts. None on success."""
    from . import runner
    from .registry import registry
    from .report import Reporter

    log = io.StringIO()
    report = runner.run(
        inventory,
        [registry().component("mattermost")],
        mode="apply",
        secrets=fleet.secrets,
        reporter=Reporter(fleet.redactor, out=log),
        limit=[host.name],
    )
    return report.hosts[host.name].error


def _record_previous(fleet: Fleet, host: Host, version: str, started_at: str) -> None:
    run_checked(
        fleet.remote(host),
        f"echo '{version} {started_at}' > {PREVIOUS}",
        f"record {version} on {host.name}",
        timeout=30,
    )


def _restore_previous(fleet: Fleet, state: NodeState) -> None:
    """The previous-release record as it was before this upgrade."""
    script = (
        f"echo '{state.previous} {state.previous_at or ''}' > {PREVIOUS}" if state.previous else f"rm -f {PREVIOUS}"
    )
    run_checked(fleet.remote(state.host), script, f"previous release on {state.host.name}", timeout=30)


def _activate(fleet: Fleet, host: Host, version: str, start: bool = True) -> None:
    """Switch a node to a release already on its disk and (re)start it: a rollback."""
    script = activate_script(version)
    if start:
        script += restart(unit_name(host), STOP_GRACE).script
    run_checked(fleet.remote(host), script, f"activate {version} on {host.name}", timeout=STOP_GRACE + 700)


def _stop(fleet: Fleet, host: Host) -> None:
    u = unit_name(host)
    run_checked(
        fleet.remote(host),
        f"""\
if ! timeout {STOP_GRACE} systemctl stop {u}; then
  systemctl kill --signal=SIGKILL {u} || true
  timeout 30 systemctl stop {u}
fi
""",
        f"stop {u} on {host.name}",
        timeout=STOP_GRACE + 60,
    )


# The next whole second on the host's clock, once it has passed (at most a second's wait).
QUIET_POINT = (
    't=$(( $(date +%s) + 1 )); while [ "$(date +%s)" -lt "$t" ]; do sleep 0.1; done; '
    "date -u -d \"@$t\" '+%Y-%m-%d %H:%M:%S+00'"
)


def _quiet_point(fleet: Fleet, inventory: Inventory) -> str | None:
    """The moment a restore goes back to after a schema-changing upgrade, taken once every
    Mattermost server has stopped and before the first starts the migration: on the DB
    primary's clock (the clock its commits are stamped with, whatever the control
    machine's says), rounded up to a whole second and waited for, so every write of the
    old release lies before it and every step of the migration after it."""
    try:  # every server is stopped now: a failure here must not stop the upgrade half-way
        value = _on_primary(fleet, inventory, QUIET_POINT, "read the DB primary's clock")
    except MMDeployError:
        return None
    return value if value and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00", value) else None


def _schema_version(inventory: Inventory) -> str | None:
    """Mattermost's schema version (Systems.Version, X.Y.0) on the live DB primary."""
    from .dbtier import engine_for

    engine = engine_for(inventory.settings.database)
    with Fleet(inventory, "schema-version") as fleet:
        return _on_primary(fleet, inventory, engine.app_query(engine.schema_version_sql), "read the schema version")


def _on_primary(fleet: Fleet, inventory: Inventory, script: str, what: str) -> str | None:
    """`script`'s output on the one writable DB node; None when there is not exactly one,
    or the script failed there."""
    from . import dbtier

    writable = [s for s in dbtier.status(inventory) if s.writable]
    if len(writable) != 1:
        return None
    result = fleet.remote(writable[0].host).run(script, timeout=30, what=what)
    return result.stdout.strip() or None if result.ok else None


# --- upgrade ------------------------------------------------------------------------------


def upgrade(
    inventory: Inventory,
    out: Out | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
    verify_timeout: float = VERIFY_TIMEOUT,
    backup_first: bool = True,
    limit: list[str] | None = None,
) -> UpgradeReport:
    """Bring every Mattermost node (or those named in `limit`: a canary) to the
    inventory's mattermost.version (see the module docstring for the procedure)."""
    target = inventory.settings.mattermost.version
    nodes = _limited(mattermost_nodes(inventory), limit)
    if not nodes:
        raise InventoryError(["no host has the app or jobserver role: nothing to upgrade"])
    report = UpgradeReport("upgrade", target, "none", started_at=_utc_now())
    with Fleet(inventory, "upgrade", out) as fleet:
        states = {s.host.name: s for s in fleet.parallel(lambda h: read_node(fleet, h), nodes)}
        never = [s.host.name for s in states.values() if s.version is None]
        if never:
            raise MMDeployError(f"no Mattermost release is live on {', '.join(never)}: deploy it first (inv deploy)")
        current = sorted({s.version for s in states.values() if s.version and s.version != target}, key=_key)
        if not current:
            report.message = f"every node already runs {target}"
            fleet.say(report.message)
            return _done(report, fleet)
        if len(current) > 1:
            raise MMDeployError(
                f"the nodes run several releases ({', '.join(current)}) besides {target}: "
                "bring them to one first (`inv rollback`, or `inv drift` to see which)"
            )
        source = current[0]
        if _key(target) < _key(source):
            raise InventoryError(
                [
                    f"--version {target} is older than the running {source}: that is a downgrade; "
                    "use `inv rollback` (Mattermost documents downgrades separately)"
                ]
            )
        path = releases.upgrade_path(source, target)
        if len(path) > 1:
            raise InventoryError(
                [
                    f"Mattermost keeps its migrations backwards compatible only from the previous ESR: "
                    f"upgrade {source} -> {' -> '.join(path)}, one `inv upgrade --version` at a time"
                ]
            )
        schema = releases.series_of(source) != releases.series_of(target)
        report.procedure = "schema-change" if schema else "rolling"
        how = (
            "another series: the schema may change, so a short service interruption as Mattermost documents"
            if schema
            else "same series: rolling, one node at a time"
        )
        fleet.say(f"upgrade {source} -> {target} ({how})")
        _stage(fleet, inventory, list(states.values()))
        fleet.say(f"release {target} unpacked beside {source} on {', '.join(states)}")
        if schema:
            _schema_change(fleet, inventory, states, source, target, report, backup_first, verify_timeout)
        else:
            _rolling(fleet, inventory, states, source, target, report, drain_timeout, verify_timeout)
        return _done(report, fleet)


def _limited(nodes: list[Host], limit: list[str] | None) -> list[Host]:
    if limit is None:
        return nodes
    names = {h.name for h in nodes}
    unknown = [n for n in limit if n not in names]
    if unknown or not limit:
        raise InventoryError(
            [f"--limit: {', '.join(unknown) or '(nothing)'} is not a Mattermost node ({', '.join(sorted(names))})"]
        )
    return [h for h in nodes if h.name in limit]


def _done(report: UpgradeReport, fleet: Fleet) -> UpgradeReport:
    report.seconds = fleet.elapsed()
    report.timeline = list(fleet.lines)
    return report


def _rolling(
    fleet: Fleet,
    inventory: Inventory,
    states: dict[str, NodeState],
    source: str,
    target: str,
    report: UpgradeReport,
    drain_timeout: float,
    verify_timeout: float,
) -> None:
    apps_up = [s for s in states.values() if s.role == "app"]
    for state in states.values():
        host = state.host
        if state.version == target:
            report.nodes.append(NodeResult(host.name, state.role, target, target, "already"))
            continue
        t0 = time.monotonic()
        # Draining the only app server would only turn its requests into errors.
        drain_it = state.role == "app" and len(apps_up) > 1
        result = NodeResult(host.name, state.role, state.version, None, "failed")
        report.nodes.append(result)
        if drain_it:
            result.drain_seconds = drain(fleet, host, drain_timeout)
        elif state.role == "app":
            report.warnings.append(f"{host.name} is the only app server: users see errors while it restarts")
        _record_previous(fleet, host, _live(state), report.started_at)
        error = _apply_component(fleet, inventory, host)
        problem = error or verify_node(fleet, host, target, state.metrics, verify_timeout)
        if problem is None:
            result.after, result.status = target, "upgraded"
            if drain_it:
                set_upstream(fleet, host, down=False)
            result.seconds = round(time.monotonic() - t0, 2)
            fleet.say(
                f"{host.name}: upgraded to {target} and verified in {result.seconds:.1f} s"
                + (", back behind the proxies" if drain_it else "")
            )
            continue
        # Back to the release on its disk, verified, and put back; the rest stay untouched.
        result.problem = problem
        fleet.say(f"{host.name}: {target} failed its check ({problem}); rolling back to {state.version}")
        try:
            _activate(fleet, host, _live(state))
            back = verify_node(fleet, host, _live(state), state.metrics, verify_timeout)
        except MMDeployError as e:
            back = str(e)
        if back is None:
            _restore_previous(fleet, state)  # as before this upgrade: `inv rollback` must not pick the failed one
            result.after, result.status = state.version, "rolled-back"
            if drain_it:
                set_upstream(fleet, host, down=False)
            fleet.say(
                f"{host.name}: back on {state.version}, verified" + (" and behind the proxies" if drain_it else "")
            )
        else:
            result.problem += f"; the rollback to {state.version} failed too: {back}"
            fleet.say(f"{host.name}: the rollback failed too ({back}); it stays out of the proxies")
        result.seconds = round(time.monotonic() - t0, 2)
        untouched = [s.host.name for s in states.values() if s.host.name not in {n.host for n in report.nodes}]
        report.nodes += [
            NodeResult(n, states[n].role, states[n].version, states[n].version, "untouched") for n in untouched
        ]
        report.ok = False
        report.message = (
            f"stopped at {host.name}: {target} failed its check ({problem}); "
            f"{host.name} {'is back on ' + _live(state) if back is None else 'is out of service'}"
            + (f"; untouched: {', '.join(untouched)}" if untouched else "")
            + f". The inventory still names {target}: fix the release, or set mattermost.version "
            f"to {state.version} so that a deploy does not activate it again"
        )
        fleet.say(report.message)
        return
    upgraded = [n.host for n in report.nodes if n.status == "upgraded"]
    report.message = f"{len(upgraded)} node(s) upgraded to {target}: {', '.join(upgraded)}"
    fleet.say(report.message)


def _schema_change(
    fleet: Fleet,
    inventory: Inventory,
    states: dict[str, NodeState],
    source: str,
    target: str,
    report: UpgradeReport,
    backup_first: bool,
    verify_timeout: float,
) -> None:
    from . import backups

    schema_before = _schema_version(inventory)
    if backup_first and backups.configured(inventory):
        fleet.say("taking a backup before the schema change")
        taken = backups.backup(inventory, kind="diff", out=fleet.say)
        if not taken.ok:
            raise MMDeployError(f"the backup before the upgrade failed ({taken.message}); nothing was changed")
        report.backup = taken.label
    elif backup_first:
        report.warnings.append(
            "no backup is configured (settings.backup): Mattermost advises one before a schema-changing upgrade"
        )
    apps = [s.host for s in states.values() if s.role == "app"]
    down_at = time.monotonic()
    for host in apps:
        set_upstream(fleet, host, down=True)
    fleet.say(f"proxies send no requests to {', '.join(h.name for h in apps)}; stopping every server")
    fleet.parallel(lambda s: _stop(fleet, s.host), list(states.values()))
    report.restore_point = _quiet_point(fleet, inventory) or report.started_at
    for s in states.values():
        if s.version != target:
            _record_previous(fleet, s.host, _live(s), report.restore_point)
    first = next((s for s in states.values() if s.role == "app"), next(iter(states.values())))
    order = [first] + [s for s in states.values() if s is not first]
    t0 = time.monotonic()
    error = _apply_component(fleet, inventory, first.host)
    problem = error or verify_node(fleet, first.host, target, first.metrics, verify_timeout)
    result = NodeResult(
        first.host.name, first.role, first.version, target, "upgraded", seconds=round(time.monotonic() - t0, 2)
    )
    report.nodes.append(result)
    if problem is not None:
        result.status, result.problem, result.after = "failed", problem, None
        _schema_failed(fleet, inventory, states, order, source, target, schema_before, report, problem, verify_timeout)
        return
    fleet.say(f"{first.host.name}: {target} started first (schema migration) and verified in {result.seconds:.1f} s")

    def rest(state: NodeState) -> NodeResult:
        t1 = time.monotonic()
        err = _apply_component(fleet, inventory, state.host)
        why = err or verify_node(fleet, state.host, target, state.metrics, verify_timeout)
        return NodeResult(
            state.host.name,
            state.role,
            state.version,
            target if why is None else None,
            "upgraded" if why is None else "failed",
            round(time.monotonic() - t1, 2),
            problem=why,
        )

    report.nodes += fleet.parallel(rest, order[1:])
    healthy = [
        s.host
        for s in order
        if s.role == "app" and next(n for n in report.nodes if n.host == s.host.name).status == "upgraded"
    ]
    for host in healthy:
        set_upstream(fleet, host, down=False)
    report.downtime_seconds = round(time.monotonic() - down_at, 2)
    failed = [n for n in report.nodes if n.status == "failed"]
    report.ok = not failed
    report.message = f"upgraded to {target} with {report.downtime_seconds:.1f} s without app servers" + (
        f"; failed: {', '.join(f'{n.host} ({n.problem})' for n in failed)}" if failed else ""
    )
    fleet.say(report.message)


def _schema_failed(
    fleet, inventory, states, order, source, target, schema_before, report, problem, verify_timeout
) -> None:
    first = order[0]
    schema_now = _schema_version(inventory)
    report.ok = False
    if schema_now and schema_before and schema_now != schema_before:
        report.message = (
            f"{first.host.name}: {target} migrated the database schema ({schema_before} -> {schema_now}) and then "
            f"failed its check ({problem}). Every server is stopped and the proxies send no requests. Mattermost "
            f"does not support running {source} on the newer schema: restore the database backup taken before "
            f"the upgrade with Mattermost left stopped (`inv restore --to-time '{report.restore_point}' --no-start`), "
            f"then `inv rollback`"
        )
        fleet.say(report.message)
        return
    fleet.say(
        f"{first.host.name}: {target} failed its check ({problem}); the schema is unchanged "
        f"({schema_now or 'unknown'}): every node back to {source}"
    )
    _stop(fleet, first.host)

    def back(state: NodeState) -> str | None:
        try:
            _activate(fleet, state.host, _live(state))
            return verify_node(fleet, state.host, _live(state), state.metrics, verify_timeout)
        except MMDeployError as e:
            return str(e)

    problems = fleet.parallel(back, order)
    for state, why in zip(order, problems):
        if state is not first:
            report.nodes.append(
                NodeResult(
                    state.host.name,
                    state.role,
                    state.version,
                    state.version if why is None else None,
                    "rolled-back" if why is None else "failed",
                    problem=why,
                )
            )
        else:
            report.nodes[0].after = state.version if why is None else None
            report.nodes[0].status = "rolled-back" if why is None else "failed"
        if why is None:
            _restore_previous(fleet, state)
            if state.role == "app":
                set_upstream(fleet, state.host, down=False)
    report.message = (
        f"{first.host.name}: {target} failed its check ({problem}); every node is back on {source}"
        + ("" if not any(problems) else "; some did not come back: see the nodes")
        + f". The inventory still names {target}: fix the release, or set mattermost.version to "
        f"{source}"
    )
    fleet.say(report.message)


# --- rollback -----------------------------------------------------------------------------


def rollback(
    inventory: Inventory,
    out: Out | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
    verify_timeout: float = VERIFY_TIMEOUT,
    limit: list[str] | None = None,
) -> UpgradeReport:
    """Every node back to the release it ran before its last upgrade (on its disk), job
    server first, app servers one at a time behind the proxies. Refused when the
    database schema is newer than that release knows."""
    nodes = _limited(mattermost_nodes(inventory), limit)
    report = UpgradeReport("rollback", None, "rolling", started_at=_utc_now())
    with Fleet(inventory, "rollback", out) as fleet:
        states = {s.host.name: s for s in fleet.parallel(lambda h: read_node(fleet, h), nodes)}
        todo = [s for s in states.values() if s.previous and s.previous != s.version]
        if not todo:
            report.procedure, report.message = "none", "no node has a previous release to return to"
            fleet.say(report.message)
            return _done(report, fleet)
        missing = [f"{s.host.name} ({s.previous})" for s in todo if s.previous not in s.releases]
        if missing:
            raise MMDeployError(
                f"the previous release is no longer on disk on {', '.join(missing)}; "
                "deploy it with mattermost.version (and its url and sha256)"
            )
        schema = _schema_version(inventory)
        too_new = [s for s in todo if schema and _key(schema) > _key(releases.series_of(_previous(s)) + ".0")]
        if too_new:
            s = too_new[0]
            raise MMDeployError(
                f"the database schema is {schema}, newer than {s.previous} knows: Mattermost does not support a "
                f"downgrade after a schema-changing upgrade by swapping the release (the older server refuses "
                f"to start). Restore the database backup taken before the upgrade, leaving Mattermost stopped "
                f"(`inv restore --to-time '{s.previous_at}' --no-start`), then run `inv rollback` again; or "
                f"downgrade the "
                f"schema with the newer release's `mattermost db downgrade` (see Mattermost's 'Downgrade "
                f"Mattermost Server' page). Nothing was changed."
            )
        report.target = ", ".join(sorted({_previous(s) for s in todo}))
        apps_up = [s for s in states.values() if s.role == "app"]
        for state in todo:
            host, t0 = state.host, time.monotonic()
            drain_it = state.role == "app" and len(apps_up) > 1
            result = NodeResult(host.name, state.role, state.version, None, "failed")
            report.nodes.append(result)
            if drain_it:
                result.drain_seconds = drain(fleet, host, drain_timeout)
            try:
                _activate(fleet, host, _previous(state))
                problem = verify_node(fleet, host, _previous(state), state.metrics, verify_timeout)
            except MMDeployError as e:
                problem = str(e)
            result.seconds = round(time.monotonic() - t0, 2)
            if problem is None:
                _record_previous(fleet, host, _live(state), report.started_at)
                result.after, result.status = state.previous, "rolled-back"
                if drain_it:
                    set_upstream(fleet, host, down=False)
                fleet.say(f"{host.name}: back on {state.previous}, verified in {result.seconds:.1f} s")
                continue
            result.problem = problem
            report.ok = False
            report.message = f"stopped at {host.name}: {state.previous} failed its check ({problem})"
            fleet.say(report.message)
            return _done(report, fleet)
        versions = sorted({_previous(s) for s in todo})
        report.message = (
            f"{len(todo)} node(s) back on {', '.join(versions)}; set mattermost.version to "
            f"{versions[-1]} in the inventory so that a deploy keeps it"
        )
        fleet.say(report.message)
        return _done(report, fleet)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())


__all__ = [
    "NodeResult",
    "UpgradeReport",
    "drain",
    "drained",
    "mattermost_nodes",
    "read_node",
    "rollback",
    "set_upstream",
    "upgrade",
    "verify_node",
]
