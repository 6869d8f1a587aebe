"""Machine-readable results: one JSON document per command (`--json` on plan, deploy,
verify, db.status and drift), for scripts. The documents' schema is mmdeploy/schemas/output.json
(described in docs/json.md); every document names its `kind` and the schema `version`.

A new command's document is a function here returning a dict, and an entry under `$defs`
and `oneOf` of the schema; `dump` redacts and writes any of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .api import CheckResult
    from .dbtier import NodeState
    from .driftcheck import DriftReport
    from .inventory import Inventory
    from .runner import RunReport

SCHEMA_VERSION = 1
SCHEMA = Path(__file__).resolve().parent / "schemas" / "output.json"


def _header(kind: str, inventory: Inventory, ok: bool) -> dict[str, Any]:
    return {
        "kind": kind,
        "version": SCHEMA_VERSION,
        "inventory": str(inventory.path),
        "pattern": inventory.pattern,
        "ok": ok,
    }


def run(report: RunReport, inventory: Inventory) -> dict[str, Any]:
    """plan or deploy: per host the counts, per step what changed (or would), with diffs in a plan."""
    kind = "plan" if report.mode == "plan" else "deploy"
    doc = _header(kind, inventory, not report.failed)
    doc.update(
        {
            "changed": report.changed,
            "seconds": round(report.seconds, 3),
            "log_dir": str(report.log_dir) if report.log_dir else None,
            "warnings": list(report.warnings),
            "hosts": [
                {
                    "name": name,
                    "ok": h.ok,
                    "changed": h.changed,
                    "failed": h.failed,
                    "round_trips": h.remote.round_trips,
                    "seconds": round(h.seconds, 3),
                    "error": h.error,
                }
                for name, h in report.hosts.items()
            ],
            "steps": [
                {
                    "host": r.host,
                    "component": r.component,
                    "step": r.step,
                    "status": r.status,
                    "summary": r.summary,
                    "diff": r.diff,
                    "error": r.error,
                    "seconds": round(r.seconds, 3),
                }
                for r in report.results
            ],
        }
    )
    return doc


def verify(results: list[CheckResult], inventory: Inventory) -> dict[str, Any]:
    doc = _header("verify", inventory, all(r.ok for r in results))
    doc["down"] = [r.down for r in results if r.down]
    doc["checks"] = [
        {
            "name": r.name,
            "ok": r.ok,
            "problem": r.problem,
            "seconds": round(r.seconds, 3),
            "detail": r.detail,
            "warning": r.warning,
        }
        for r in results
    ]
    return doc


def position(value: Any) -> str | None:
    """A replication position as text: a PostgreSQL LSN (an int here) as 16/B374D848, a
    GTID set as it is."""
    if value is None:
        return None
    if isinstance(value, int):
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
    return str(value)


def db_status(states: list[NodeState], inventory: Inventory) -> dict[str, Any]:
    doc = _header("db.status", inventory, sum(s.writable for s in states) == 1)
    doc["nodes"] = [
        {
            "host": s.host.name,
            "reachable": s.reachable,
            "running": s.running,
            "role": s.role,
            "writable": s.writable,
            "fenced": s.fenced,
            "upstream": s.upstream,
            "received": position(s.received),
            "applied": position(s.applied),
            "lag_seconds": s.lag_seconds,
            "replicas": list(s.replicas),
            "streaming": s.streaming,
            "sync": s.sync,
            "detail": s.detail,
        }
        for s in states
    ]
    return doc


def drift(report: DriftReport, inventory: Inventory) -> dict[str, Any]:
    doc = _header("drift", inventory, report.ok)
    doc["differences"] = [
        {"host": x.host, "group": x.group, "what": x.what, "value": x.value, "expected": x.expected}
        for x in report.differences
    ]
    doc["hosts"] = {host: {k: v for k, v in facts.items() if v is not None} for host, facts in report.facts.items()}
    return doc


def dump(document: dict[str, Any], out: IO[str], redact: Callable[[str], str] = lambda text: text) -> None:
    """Write one document (indented, one trailing newline), redacted like every other output."""
    out.write(redact(json.dumps(document, indent=2, sort_keys=False)) + "\n")
    out.flush()


def schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(SCHEMA.read_text())
    return result
