"""Reading a PostgreSQL node: one read-only script, parsed into a dbtier NodeState."""

from __future__ import annotations

from ...dbtier import NodeState
from ...facts import Fact
from ...inventory import Host
from .config import FENCED, SHELL_PATHS, TOPOLOGY, shell_version


def probe(host: Host) -> str:
    """One read-only script; prints key=value lines that parse_probe reads. The version
    (and so every path) is the setting's, else the host's distribution's."""
    p = SHELL_PATHS
    return f"""\
{shell_version(host)}
echo "version=$PGV"
D={p.data}; C={p.conf}
echo "installed=$(test -x {p.bin}/postgres && echo 1 || echo 0)"
echo "data=$(test -f $D/PG_VERSION && echo 1 || echo 0)"
echo "standby_signal=$(test -f $D/standby.signal && echo 1 || echo 0)"
echo "fenced=$(test -f {FENCED} && echo 1 || echo 0)"
echo "unit=$(systemctl is-enabled {p.unit} 2>/dev/null)/$(systemctl is-active {p.unit} 2>/dev/null)"
if [ -f $D/PG_VERSION ]; then
  runuser -u postgres -- {p.bin}/pg_controldata -D $D 2>/dev/null | awk -F': *' '
    /^Database system identifier/ {{print "sysid=" $2}}
    /^Database cluster state/ {{print "cluster_state=" $2}}'
fi
sed -n -e 's/^# mmdeploy-primary: /conf_primary=/p' \\
  -e "s/^primary_conninfo = 'host=\\([^ ]*\\) .*/conf_upstream=\\1/p" $C/conf.d/{TOPOLOGY} 2>/dev/null
runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' 2>/dev/null
select 'recovery=' || pg_is_in_recovery();
select 'read_only=' || current_setting('default_transaction_read_only');
select 'sync_names=' || current_setting('synchronous_standby_names');
select 'sync_commit=' || current_setting('synchronous_commit');
select 'lsn=' || case when pg_is_in_recovery() then '' else pg_current_wal_lsn()::text end;
select 'timeline=' || case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint())
  else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end;
select 'received=' || coalesce(pg_last_wal_receive_lsn()::text, '');
select 'replayed=' || coalesce(pg_last_wal_replay_lsn()::text, '');
select 'replay_age=' || coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::text, '');
select 'receiver=' || coalesce(sender_host, '') || ',' || status from pg_stat_wal_receiver;
select 'replica=' || application_name || ',' || coalesce(host(client_addr), '') || ',' || state || ','
  || sync_state || ',' || coalesce(flush_lsn::text, '') from pg_stat_replication;
select 'slot=' || slot_name || ',' || active from pg_replication_slots;
SQL
"""


def lsn(text: str) -> int | None:
    """'16/B374D848' -> an int that orders like the LSN."""
    if not text or "/" not in text:
        return None
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def parse_probe(host: Host, fact: Fact) -> NodeState:
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {"replica": [], "slot": [], "receiver": []}
    for line in fact.out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in lists:
            lists[key].append(value)
        else:
            values[key] = value
    running = "recovery" in values
    in_recovery = values.get("recovery") == "true"
    if running:
        role = "replica" if in_recovery else "primary"
    elif values.get("data") == "1":
        role = "replica" if values.get("standby_signal") == "1" else "primary"
    else:
        role = "unknown"
    fenced = values.get("fenced") == "1"
    replicas = []
    for row in lists["replica"]:
        name, address, replication, sync_state, _flush = (row.split(",") + [""] * 5)[:5]
        replicas.append(f"{name}({address}) {replication} {sync_state}")
    state = NodeState(
        host=host,
        reachable=True,
        running=running,
        role=role,
        writable=running and not in_recovery and values.get("read_only") == "off",
        fenced=fenced,
    )
    state.extra = {
        k: values.get(k, "")
        for k in (
            "sysid",
            "cluster_state",
            "conf_primary",
            "conf_upstream",
            "unit",
            "timeline",
            "installed",
            "data",
            "version",
        )
    }
    state.has_data = values.get("data") == "1" and bool(values.get("conf_primary"))  # not a bare stub
    state.named_primary = values.get("conf_primary") or None
    state.extra["slots"] = [s.split(",")[0] for s in lists["slot"]]
    state.extra["streaming"] = [r.split(",")[0] for r in lists["replica"] if ",streaming," in r]
    if role == "primary" and running:
        state.received = state.applied = lsn(values.get("lsn", ""))
        state.replicas = replicas
        names = values.get("sync_names", "")
        state.sync = (
            f"synchronous: {names} (synchronous_commit={values.get('sync_commit')})" if names else "asynchronous"
        )
        state.lag_seconds = 0.0
    elif role == "replica":
        state.upstream = values.get("conf_upstream") or None
        received, replayed = lsn(values.get("received", "")), lsn(values.get("replayed", ""))
        state.applied = replayed
        state.received = max(p for p in (received, replayed, -1) if p is not None) if running else None
        if running:
            age = values.get("replay_age") or "0"
            state.lag_seconds = (
                0.0 if received is None or replayed is None or received <= replayed else round(float(age), 1)
            )
        receiver = (lists["receiver"] or [","])[0].split(",")
        state.sync = f"receiver {receiver[1] or 'down'} from {receiver[0] or '-'}"
        state.streaming = running and receiver[1] == "streaming"
    detail = [
        f"timeline {values['timeline']}" if values.get("timeline") else "",
        "FENCED" if fenced else "",
        f"unit {values.get('unit', '?')}",
    ]
    if not running and values.get("cluster_state"):
        detail.append(f"state: {values['cluster_state']}")
    state.detail = ", ".join(d for d in detail if d)
    return state
