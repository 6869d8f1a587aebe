"""Facts: read-only probes of a host, batched into one round trip and cached for the run.

A fact is a shell command whose exit code and standard output a step's check reads. All
facts a component needs on a host are gathered by one script; after any change on that
host the cache is dropped, so later checks see the new state.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import StepFailed
from .remote import Remote


@dataclass(frozen=True)
class Fact:
    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


# Facts only read: a probe that takes longer than this hangs on something (a dead database).
FACT_TIMEOUT = 60

# Facts every component may use; gathered with the first batch of a run.
HOST_FACTS = {
    "os": '. /etc/os-release && echo "$ID $VERSION_ID $VERSION_CODENAME"',
    "mem_kb": "awk '/^MemTotal:/ {print $2}' /proc/meminfo",
    "cpus": "nproc",
}

HOST_FACT_MARK = "MMHOSTFACT"


def host_facts_script() -> str:
    """Shell that prints each of HOST_FACTS as a line `MMHOSTFACT <name> <rc> <output>`
    (output on one line): for a script that runs on the host anyway (the run lock's) to
    bring them along, sparing the run a round trip per host."""
    return "".join(
        f"out=$( ( {command}\n) </dev/null 2>/dev/null ); rc=$?\n"
        f"printf '{HOST_FACT_MARK} {name} %d %s\\n' \"$rc\" \"${{out//$'\\n'/ }}\"\n"
        for name, command in HOST_FACTS.items()
    )


def parse_host_fact(line: str) -> tuple[str, Fact] | None:
    """(command, fact) from one line host_facts_script printed; None for any other line."""
    mark, _, rest = line.partition(" ")
    name, _, rest = rest.partition(" ")
    rc, _, out = rest.partition(" ")
    if mark != HOST_FACT_MARK or name not in HOST_FACTS or not rc.isdigit():
        return None
    out = out.rstrip()
    return HOST_FACTS[name], Fact(int(rc), out + "\n" if out else "")  # as a batch of facts reads it


class Batched(str):
    """A fact whose command can run together with others of its kind: read alone it is its
    own command (the string); read with others, `kind` turns them into one command, and
    splits its output into each one's (one systemctl for every unit a host's steps ask
    about: a systemctl costs more than all the shell around it)."""

    kind: BatchKind
    arg: str

    def __new__(cls, command: str, kind: BatchKind, arg: str) -> Batched:
        fact = super().__new__(cls, command)
        fact.kind, fact.arg = kind, arg
        return fact


@dataclass(frozen=True)
class BatchKind:
    name: str
    # The args of several facts -> one command.
    command: Callable[[list[str]], str]
    # That command's output -> each arg's output, in order; None when it cannot be split.
    split: Callable[[str, list[str]], list[str] | None]


class FactCache:
    def __init__(self, remote: Remote):
        self.remote = remote
        # Host facts the run lock's script read on this connection (locks.py).
        self._cache: dict[str, Fact] = dict(remote.host_facts) if remote is not None else {}
        # The host's own pipeline and another component's prepare() may read at once.
        self._lock = threading.RLock()

    def get(self, commands: Iterable[str]) -> dict[str, Fact]:
        """The facts for `commands`, fetching all missing ones in a single round trip."""
        wanted = list(dict.fromkeys(commands))
        with self._lock:
            missing = [c for c in wanted if c not in self._cache]
            if missing:
                self._cache.update(self._gather(missing))
            return {c: self._cache[c] for c in wanted}

    def host(self, name: str) -> str:
        """One of HOST_FACTS, e.g. host('mem_kb')."""
        return self.get([HOST_FACTS[name]])[HOST_FACTS[name]].out.strip()

    def invalidate(self) -> None:
        # Host facts (OS, memory, CPUs) do not change when a step applies.
        keep = set(HOST_FACTS.values())
        with self._lock:
            self._cache = {c: f for c, f in self._cache.items() if c in keep}

    def _gather(self, commands: list[str]) -> dict[str, Fact]:
        if not self._cache:  # first batch on this host: take the host facts along
            commands = list(dict.fromkeys([*HOST_FACTS.values(), *commands]))
        kinds: dict[str, list[Batched]] = {}
        for c in commands:
            if isinstance(c, Batched):
                kinds.setdefault(c.kind.name, []).append(c)
        groups = {k: b for k, b in kinds.items() if len(b) > 1}
        if not groups:
            return self._read(commands)
        grouped = {c for b in groups.values() for c in b}
        joined = {b[0].kind.command([c.arg for c in b]): b for b in groups.values()}
        found = self._read([c for c in commands if c not in grouped] + list(joined))
        for command, batch in joined.items():
            fact = found.pop(command)
            parts = batch[0].kind.split(fact.out, [c.arg for c in batch]) if fact.ok else None
            if parts is None:  # read them one by one
                found.update(self._read([str(c) for c in batch]))
            else:
                found.update({c: Fact(0, part) for c, part in zip(batch, parts)})
        return found

    def _read(self, commands: list[str]) -> dict[str, Fact]:
        token = "MMFACT" + secrets.token_hex(6)
        parts = []
        for i, command in enumerate(commands):
            # A subshell each, so one fact's `exit` or `cd` cannot affect the next.
            parts.append(f"echo '{token} {i}'\n( {command}\n) </dev/null 2>/dev/null\nprintf '\\n{token} rc %d\\n' $?")
        # Facts read files whole (base64, which the redactor cannot see): output not logged.
        result = self.remote.run("\n".join(parts) + "\n", log_output=False, timeout=FACT_TIMEOUT, what="reading facts")
        found = {}
        pattern = re.compile(rf"^{token} (\d+)\n(.*?)\n{token} rc (\d+)$", re.S | re.M)
        for m in pattern.finditer(result.stdout):
            found[commands[int(m.group(1))]] = Fact(int(m.group(3)), m.group(2))
        if len(found) != len(commands):
            raise StepFailed(f"fact probe failed (rc {result.rc}): {result.stderr.strip()[-500:]}")
        return found
