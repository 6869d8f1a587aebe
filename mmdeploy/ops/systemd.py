"""systemd: unit files and service state."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked
from .files import File


def unit(name: str, content: str, notify: tuple[str, ...] = ()) -> File:
    """A unit file under /etc/systemd/system; systemd re-reads units right after it changes."""
    return File(f"/etc/systemd/system/{name}", content, then="systemctl daemon-reload", notify=notify)


def when_ready(probe: str, then: str = "", wait: int = 60) -> str:
    """A script that runs `then` (if any) once `probe` succeeds (tried each second for
    `wait` s); it fails when `probe` never does.
    For a reload right after a start: a reload signal (SIGHUP) that reaches a process
    before it handles it ends the process, and systemd does not restart a service that
    SIGHUP ended (a clean exit for Restart=on-failure)."""
    return (
        f"for i in $(seq {wait}); do {probe} && break; sleep 1; done\n"
        f"{probe} || {{ echo 'not ready after {wait} s' >&2; exit 1; }}\n{then}\n"
    )


class Service(Step):
    def __init__(self, name: str, *, enabled: bool = True, running: bool = True):
        self.unit, self.enabled, self.running = name, enabled, running
        self.name = f"service {name}"
        q = shlex.quote(name)
        # Both commands print their answer even when they exit non-zero.
        self._probe = f"systemctl is-enabled {q}; systemctl is-active {q}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        lines = facts[self._probe].out.split()
        enabled_state, active_state = (lines + ["unknown", "unknown"])[:2]
        todo = []
        if enabled_state == "masked":
            todo.append("unmask")
        is_enabled = enabled_state in ("enabled", "static", "alias", "indirect", "generated")
        if self.enabled != is_enabled and enabled_state != "static":
            todo.append("enable" if self.enabled else "disable")
        if self.running != (active_state == "active"):
            todo.append("start" if self.running else "stop")
        return Change(" + ".join(todo) + f" (was {enabled_state}, {active_state})") if todo else None

    def apply(self, remote: Remote, change: Change) -> None:
        q = shlex.quote(self.unit)
        actions = change.summary.split(" (", 1)[0].split(" + ")
        script = "set -e\n" + "".join(f"systemctl {a} {q}\n" for a in actions)
        run_checked(remote, script, self.name, timeout=self.timeout)
