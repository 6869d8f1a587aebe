"""A command guarded by a check: it runs only when `unless` fails (or has no guard)."""

from __future__ import annotations

import threading
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked


class Command(Step):
    def __init__(
        self,
        name: str,
        script: str,
        *,
        unless: str | None = None,
        notify: tuple[str, ...] = (),
        timeout: float | None = None,
    ):
        self.name, self.script, self.unless, self.notify = name, script, unless, tuple(notify)
        if timeout is not None:
            self.timeout = timeout

    def facts(self) -> list[str]:
        return [self.unless] if self.unless else []

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        if self.unless is None:
            return Change("run")
        return None if facts[self.unless].ok else Change("run")

    def apply(self, remote: Remote, change: Change) -> None:
        run_checked(remote, self.script, self.name, timeout=self.timeout)


# The host's clock, read while a run builds its steps (Component.build_facts): a service
# whose process started at or after it was started by this run.
NOW = "date +%s"


def started_since(unit: str, started_after: int) -> str:
    """A shell test: `unit` is active and its process started at or after `started_after`
    (NOW as the run read it): it runs what this run configured."""
    return (
        f"since=$(systemctl show -p ExecMainStartTimestamp --value {unit}); systemctl is-active --quiet {unit} "
        f'&& [ -n "$since" ] && [ "$(date -d "$since" +%s)" -ge {started_after} ]'
    )


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class OneAtATime(Command):
    """A command that runs on one host at a time among the run's hosts that share its `key`
    (a rolling restart: each node serves again before the next one stops)."""

    def __init__(self, name: str, script: str, *, key: str, timeout: float | None = None):
        super().__init__(name, script, timeout=timeout)
        self.key = key

    def apply(self, remote: Remote, change: Change) -> None:
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(self.key, threading.Lock())
        with lock:
            super().apply(remote, change)
