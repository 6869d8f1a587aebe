"""System users and groups."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked


class Group(Step):
    def __init__(self, name: str, system: bool = True):
        self.group, self.system = name, system
        self.name = f"group {name}"
        self._probe = f"getent group {shlex.quote(name)}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        return None if facts[self._probe].ok else Change("create")

    def apply(self, remote: Remote, change: Change) -> None:
        flag = "--system " if self.system else ""
        run_checked(remote, f"groupadd {flag}{shlex.quote(self.group)}", self.name)


class User(Step):
    """A user with a given primary group, home and shell (system user by default)."""

    def __init__(
        self,
        name: str,
        *,
        group: str | None = None,
        home: str = "/nonexistent",
        shell: str = "/usr/sbin/nologin",
        system: bool = True,
    ):
        self.user, self.group = name, group or name
        self.home, self.shell, self.system = home, shell, system
        self.name = f"user {name}"
        self._probe = f"getent passwd {shlex.quote(name)} && id -gn {shlex.quote(name)}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        fact = facts[self._probe]
        if not fact.ok:
            return Change("create")
        entry, group = (fact.out.splitlines() + [""])[:2]
        fields = entry.split(":")
        changes = []
        if group != self.group:
            changes.append(f"group {group} -> {self.group}")
        if fields[5] != self.home:
            changes.append(f"home {fields[5]} -> {self.home}")
        if fields[6] != self.shell:
            changes.append(f"shell {fields[6]} -> {self.shell}")
        return Change(", ".join(changes)) if changes else None

    def apply(self, remote: Remote, change: Change) -> None:
        u, g = shlex.quote(self.user), shlex.quote(self.group)
        opts = f"-g {g} -d {shlex.quote(self.home)} -s {shlex.quote(self.shell)}"
        if change.summary == "create":
            system = "--system " if self.system else ""
            script = f"useradd {system}{opts} {u}"
        else:
            script = f"usermod {opts} {u}"
        run_checked(remote, script, self.name)
