"""The hosts of one day-2 operation (backup, restore, upgrade, rollback, migration, drift):
one Remote per host opened on first use, a thread pool, and a timeline of what was done.

Like dbtier's Tier, but for any role: every command goes through Remote.run with its own
time limit, each line printed says how long since the operation started, and the lines
are kept for the operation's report.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TextIO, TypeVar, cast

from .inventory import Host, Inventory
from .remote import Remote
from .runner import run_dir
from .secrets import Redactor

Out = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")


class Fleet:
    def __init__(self, inventory: Inventory, what: str, out: Out | None = None, redactor: Redactor | None = None):
        from .api import session

        self.inventory = inventory
        self.redactor, self.secrets = session(inventory)
        if redactor is not None:  # the caller's redactor knows the same secrets, and maybe more
            self.redactor = redactor
        self.out = out or (lambda _: None)
        self.log_dir = run_dir(what)
        self.started = time.monotonic()
        self.lines: list[str] = []
        self._remotes: dict[str, Remote] = {}
        self._pool = ThreadPoolExecutor(max_workers=8)

    def remote(self, host: Host | str) -> Remote:
        h = self.inventory.host(host) if isinstance(host, str) else host
        if h.name not in self._remotes:
            self._remotes[h.name] = Remote(h, self.redactor, self.log_dir / f"{h.name}.log")
        return self._remotes[h.name]

    def say(self, message: str) -> None:
        line = self.redactor(f"[{time.monotonic() - self.started:6.1f}s] {message}")
        self.lines.append(line)
        self.out(line)

    def verify(self, inventory: Inventory) -> list:
        """Every verify check (api.CheckResult), its lines into this operation's timeline."""
        from .api import verify

        return verify(inventory, out=cast(TextIO, _Timeline(self)))

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def parallel(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.shutdown()
        for r in self._remotes.values():
            r.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Timeline:
    """A text stream whose lines go into a Fleet's timeline, marked as verify's."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.fleet.say(f"verify: {line}")

    def flush(self) -> None:
        pass
