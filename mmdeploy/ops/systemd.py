"""systemd: unit files and service state."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..facts import Batched, BatchKind, Fact
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


def _units_command(units: list[str]) -> str:
    return "systemctl show -p ActiveState -p UnitFileState -- " + " ".join(shlex.quote(u) for u in units)


def _units_split(out: str, units: list[str]) -> list[str] | None:
    """One block per unit, in the order asked, "ActiveState=..\nUnitFileState=.." each ->
    the two values, as `systemctl show --value` prints them for one unit."""
    blocks = out.strip("\n").split("\n\n")
    if len(blocks) != len(units):
        return None
    parts = []
    for block in blocks:
        values = dict(line.split("=", 1) for line in block.split("\n") if "=" in line)
        if set(values) != {"ActiveState", "UnitFileState"}:
            return None
        parts.append(f"{values['ActiveState']}\n{values['UnitFileState']}\n")
    return parts


# Every unit a host's steps ask about, in one systemctl.
UNITS = BatchKind("systemd units", _units_command, _units_split)


class Service(Step):
    def __init__(self, name: str, *, enabled: bool = True, running: bool = True):
        self.unit, self.enabled, self.running = name, enabled, running
        self.name = f"service {name}"
        q = shlex.quote(name)
        # One systemctl instead of is-enabled + is-active (half the cost, on every host of a
        # run): ActiveState then UnitFileState (the is-enabled answer; empty when no unit).
        self._probe = Batched(f"systemctl show -p ActiveState -p UnitFileState --value {q}", UNITS, name)

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        lines = [line.strip() for line in facts[self._probe].out.split("\n")]
        active_state, enabled_state = (lines + ["", ""])[:2]
        active_state, enabled_state = active_state or "unknown", enabled_state or "not-found"
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
