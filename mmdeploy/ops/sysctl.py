"""Kernel parameters: the live value and a persisted /etc/sysctl.d file."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked


class Sysctl(Step):
    """`key` = `value`, live and persisted. With `minimum`, a live value already at least
    `value` is left as it is (never lowered, and never written: a kernel knob that is not
    namespaced is read-only inside a container, where the host set it)."""

    def __init__(self, key: str, value: str | int, *, minimum: bool = False):
        from ..grammar import sysctl_key

        sysctl_key(key)  # it names a file in the scripts below: never anything else
        if minimum and not str(value).isdigit():
            raise ValueError(f"sysctl {key}: a minimum must be a whole number, got {value!r}")
        self.key, self.value, self.minimum = key, " ".join(str(value).split()), minimum
        self.name = f"sysctl {key}" + (f" >= {self.value}" if minimum else "")
        self.path = f"/etc/sysctl.d/60-mmdeploy-{key}.conf"
        self._line = f"{key} = {self.value}\n"
        self._probe = f"sysctl -n {shlex.quote(key)}; echo '|'; cat {shlex.quote(self.path)}"

    def facts(self) -> list[str]:
        return [self._probe]

    def _live_ok(self, live: str) -> bool:
        if self.minimum:
            return live.isdigit() and int(live) >= int(self.value)
        return live == self.value

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        live, _, persisted = facts[self._probe].out.partition("|\n")
        live = " ".join(live.split())
        changes = []
        if not self._live_ok(live):
            changes.append(f"live {live or '?'} -> {self.value}")
        if persisted != self._line:
            changes.append(f"persist in {self.path}")
        return Change(", ".join(changes)) if changes else None

    def apply(self, remote: Remote, change: Change) -> None:
        script = f"set -e\nprintf '%s' {shlex.quote(self._line)} > {shlex.quote(self.path)}\n"
        # The live value only when it differs: a container's /proc/sys is read-only, and
        # its runtime may have set the value already (docker run --sysctl).
        if change.summary.startswith("live "):
            script += f"sysctl -q -w {shlex.quote(f'{self.key}={self.value}')}\n"
        run_checked(remote, script, self.name)
