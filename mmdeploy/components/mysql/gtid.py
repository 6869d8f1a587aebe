"""GTID positions of both flavors: MariaDB's per-domain positions and Oracle MySQL's GTID
sets, with the comparisons failover needs (behind, subset, missing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ...dbtier import NodeState


@dataclass(frozen=True)
class MariaPos:
    """A MariaDB GTID position: per replication domain, the last (server_id, seq_no)."""

    domains: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MariaPos:
        domains: dict[int, tuple[int, int]] = {}
        for part in (text or "").replace("\\n", ",").replace("\n", ",").split(","):
            part = part.strip()
            if part:
                d, s, n = (int(x) for x in part.split("-"))
                if d not in domains or n > domains[d][1]:
                    domains[d] = (s, n)
        return cls(domains)

    def merge(self, other: MariaPos) -> MariaPos:
        """Per domain, the higher of the two."""
        out = dict(self.domains)
        for d, (s, n) in other.domains.items():
            if d not in out or n > out[d][1]:
                out[d] = (s, n)
        return MariaPos(out)

    def __bool__(self) -> bool:
        return bool(self.domains)

    def __lt__(self, other: MariaPos) -> bool:
        """Behind: at most as far in every domain, and not equal."""
        keys = set(self.domains) | set(other.domains)
        return self != other and all(self.seq(d) <= other.seq(d) for d in keys)

    def seq(self, domain: int) -> int:
        return self.domains.get(domain, (0, 0))[1]

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domains.items()))


def maria_state_map(*texts: str) -> dict[tuple[int, int], int]:
    """(domain, server_id) -> highest seq_no, from gtid_binlog_state / positions."""
    out: dict[tuple[int, int], int] = {}
    for text in texts:
        for part in (text or "").replace("\\n", ",").replace("\n", ",").split(","):
            part = part.strip()
            if part:
                d, s, n = (int(x) for x in part.split("-"))
                out[(d, s)] = max(n, out.get((d, s), 0))
    return out


def maria_missing(pos: MariaPos, known: dict[tuple[int, int], int]) -> list[str]:
    """The GTIDs of `pos` that a server knowing `known` (maria_state_map) never had."""
    return [f"{d}-{s}-{n}" for d, (s, n) in sorted(pos.domains.items()) if known.get((d, s), 0) < n]


@dataclass(frozen=True)
class GtidSet:
    """An Oracle MySQL GTID set: source uuid -> sorted, merged [start, end] intervals."""

    sets: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> GtidSet:
        raw: dict[str, list[tuple[int, int]]] = {}
        for part in (text or "").replace("\\n", "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            for r in ranges:
                a, _, b = r.partition("-")
                raw.setdefault(uuid.lower(), []).append((int(a), int(b or a)))
        return cls({u: _merge_intervals(iv) for u, iv in raw.items()})

    def union(self, other: GtidSet) -> GtidSet:
        keys = set(self.sets) | set(other.sets)
        return GtidSet({u: _merge_intervals([*self.sets.get(u, ()), *other.sets.get(u, ())]) for u in keys})

    def issubset(self, other: GtidSet) -> bool:
        return not (self - other)

    def __sub__(self, other: GtidSet) -> GtidSet:
        out = {}
        for uuid, intervals in self.sets.items():
            left = []
            for a, b in intervals:
                for c, d in other.sets.get(uuid, ()):
                    if d < a or c > b:
                        continue
                    if c > a:
                        left.append((a, c - 1))
                    a = max(a, d + 1)
                    if a > b:
                        break
                if a <= b:
                    left.append((a, b))
            if left:
                out[uuid] = tuple(left)
        return GtidSet(out)

    def __bool__(self) -> bool:
        return bool(self.sets)

    def __lt__(self, other: GtidSet) -> bool:
        """Behind: a proper subset."""
        return self != other and self.issubset(other)

    def __str__(self) -> str:
        return ",".join(
            f"{u}:" + ":".join(f"{a}-{b}" if a != b else str(a) for a, b in iv) for u, iv in sorted(self.sets.items())
        )


def _merge_intervals(intervals) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def missing_on(node: NodeState, primary: NodeState) -> str:
    """The node's executed transactions the primary never had ('' when a subset)."""
    if isinstance(node.applied, GtidSet):
        return str(node.applied - primary.applied)
    return ", ".join(maria_missing(node.applied, primary.extra.get("known", {})))
