"""Kernel parameters: the live value and a persisted /etc/sysctl.d file."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked


class Sysctl(Step):
    def __init__(self, key: str, value: str | int):
        self.key, self.value = key, " ".join(str(value).split())
        self.name = f"sysctl {key}"
        self.path = f"/etc/sysctl.d/60-mmdeploy-{key}.conf"
        self._line = f"{key} = {self.value}\n"
        self._probe = f"sysctl -n {shlex.quote(key)}; echo '|'; cat {self.path}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        live, _, persisted = facts[self._probe].out.partition("|\n")
        changes = []
        if " ".join(live.split()) != self.value:
            changes.append(f"live {' '.join(live.split()) or '?'} -> {self.value}")
        if persisted != self._line:
            changes.append(f"persist in {self.path}")
        return Change(", ".join(changes)) if changes else None

    def apply(self, remote: Remote, change: Change) -> None:
        script = f"set -e\nprintf '%s' {shlex.quote(self._line)} > {self.path}\n"
        # The live value only when it differs: a container's /proc/sys is read-only, and
        # its runtime may have set the value already (docker run --sysctl).
        if change.summary.startswith("live "):
            script += f"sysctl -q -w {shlex.quote(f'{self.key}={self.value}')}\n"
        run_checked(remote, script, self.name)
