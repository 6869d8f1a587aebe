"""Reading a MySQL-family node: the flavor's probe output parsed into a dbtier NodeState."""

from __future__ import annotations

import re

from ...dbtier import NodeState
from ...facts import Fact
from ...inventory import Host
from .flavor import Flavor
from .gtid import GtidSet, MariaPos, maria_state_map


def parse_probe(flavor: Flavor, host: Host, fact: Fact) -> NodeState:
    values: dict[str, str] = {}
    clients: list[str] = []
    status: dict[str, str] = {}
    head, _, replication = fact.out.partition("[replication]\n")
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "replica_client":
            clients.append(value)
        else:
            values[key.lower()] = value
    last = None
    for line in replication.splitlines():
        m = re.match(r"^\s*(\w+): ?(.*)$", line)
        if m:
            last = m.group(1)
            status[last] = m.group(2).strip()
        elif last and line.strip() and not line.startswith("*"):
            status[last] += line.strip()  # a GTID set continued on the next line
    running = "read_only" in values
    fenced = values.get("fenced") == "1"
    writable = running and values.get("read_only") == "0" and values.get("super_read_only", "0") == "0"
    upstream = status.get(flavor.source_key) or None
    role = "replica" if upstream else ("primary" if writable else "unknown")
    state = NodeState(
        host=host, reachable=True, running=running, role=role, writable=writable, upstream=upstream, fenced=fenced
    )
    io, sql = status.get(flavor.io_key, ""), status.get(flavor.sql_key, "")
    state.has_data = bool(int(values.get("user_schemas") or 0))
    state.streaming = running and role == "replica" and io == "Yes" and sql == "Yes"
    state.extra = {
        "unit": values.get("unit", ""),
        "user_schemas": int(values.get("user_schemas") or 0),
        "io": io,
        "sql": sql,
        "sql_error": status.get("Last_SQL_Error", ""),
        "io_error": status.get("Last_IO_Error", ""),
    }
    if flavor.mariadb:
        current = MariaPos.parse(values.get("gtid_current_pos", ""))
        state.applied = current
        state.received = current.merge(MariaPos.parse(status.get("Gtid_IO_Pos", "")))
        state.extra["known"] = maria_state_map(
            values.get("gtid_binlog_state", ""), values.get("gtid_slave_pos", ""), values.get("gtid_current_pos", "")
        )
    else:
        executed = GtidSet.parse(status.get("Executed_Gtid_Set") or values.get("gtid_executed", ""))
        state.applied = executed
        state.received = executed.union(GtidSet.parse(status.get("Retrieved_Gtid_Set", "")))
    if running:
        state.replicas = clients
        lag = status.get(flavor.lag_key, "")
        state.lag_seconds = float(lag) if lag.isdigit() else (0.0 if role == "primary" else None)
        if role == "primary":
            on = values.get(f"{flavor.semi_source}_status") == "ON"
            count = values.get(f"{flavor.semi_source}_clients", "0")
            state.sync = f"semi-sync {'on' if on else 'off'} ({count} semi-sync replica(s))"
        elif role == "replica":
            on = values.get(f"{flavor.semi_replica}_status") == "ON"
            state.sync = f"semi-sync replica {'on' if on else 'off'}"
    detail = [f"applied {state.applied or '-'}"]
    if role == "replica":
        detail.append(f"io {io or '?'} sql {sql or '?'}")
    for key in ("sql_error", "io_error"):
        if state.extra[key]:
            detail.append(f"{key.replace('_', ' ')}: {state.extra[key]}")
    if fenced:
        detail.append("FENCED")
    detail.append(f"unit {state.extra['unit'] or '?'}")
    state.detail = ", ".join(detail)
    return state
