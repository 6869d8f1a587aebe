"""Lines mmdeploy owns inside a file it shares with others (an authorized_keys file): the
lines that end with `tag` are exactly `lines`; every other line is left as it is."""

from __future__ import annotations

import base64
import shlex
from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked


class TaggedLines(Step):
    def __init__(
        self,
        path: str,
        lines: list[str],
        tag: str,
        *,
        owner: str = "root",
        group: str = "root",
        mode: str = "0600",
        notify: tuple[str, ...] = (),
    ):
        if any("\n" in line or not line.endswith(" " + tag) for line in lines):
            raise ValueError(f"every line must be one line ending with ' {tag}'")
        self.path, self.lines, self.tag = path, list(lines), tag
        self.owner, self.group, self.mode, self.notify = owner, group, mode.zfill(4), tuple(notify)
        self.name = f"lines '{tag}' in {path}"
        p = shlex.quote(path)
        self._probe = f"test -f {p} && stat -c '%U|%G|%a' -- {p} && grep -F -- {shlex.quote(' ' + tag)} {p}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        out = facts[self._probe].out.splitlines()
        if not out:
            return Change(f"create with {len(self.lines)} line(s)")
        owner, group, mode = (out[0].split("|") + ["", "", ""])[:3]
        have = [line for line in out[1:] if line.endswith(" " + self.tag)]
        todo = []
        if sorted(have) != sorted(self.lines):
            todo.append(f"{len(have)} -> {len(self.lines)} tagged line(s)")
        if (owner, group, mode.zfill(4)) != (self.owner, self.group, self.mode):
            todo.append(f"owner/mode {owner}:{group} {mode} -> {self.owner}:{self.group} {self.mode}")
        return Change(", ".join(todo)) if todo else None

    def apply(self, remote: Remote, change: Change) -> None:
        p, d = shlex.quote(self.path), shlex.quote(self.path.rsplit("/", 1)[0] or "/")
        wanted = base64.b64encode("".join(line + "\n" for line in self.lines).encode()).decode()
        run_checked(
            remote,
            f"""\
set -e
install -d -m 0700 -o {self.owner} -g {self.group} {d}
tmp=$(mktemp {p}.XXXXXX)
trap 'rm -f "$tmp"' EXIT
{{ [ -f {p} ] && grep -vF -- {shlex.quote(" " + self.tag)} {p} || true; echo {wanted} | base64 -d; }} > "$tmp"
chown {self.owner}:{self.group} "$tmp"; chmod {self.mode} "$tmp"
mv -f "$tmp" {p}
""",
            self.name,
            log_as=f"# replace the lines tagged '{self.tag}' in {self.path}",
        )
