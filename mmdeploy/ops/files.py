"""Files and directories: sha256 compare, unified diff, atomic replace, owner/group/mode."""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import shlex
from typing import Callable, Mapping

from ..facts import Batched, BatchKind, Fact
from ..inventory import merge
from ..remote import Remote
from ..step import Change, Step, run_checked

# Files up to this size come back whole with the facts, so a diff needs no second trip.
INLINE_LIMIT = 256 * 1024


def file_probe(path: str, mode: str) -> Batched:
    """The fact of one path: its stat line, then per `mode` nothing ("s"), its content when
    small or else its sha256 ("c"), or its sha256 ("h"). Read with a host's other file
    facts, all of them take one command (FILES)."""
    return Batched(_alone(path, mode), FILES, f"{mode} {path}")


def _alone(path: str, mode: str) -> str:
    p = shlex.quote(path)
    if mode == "s":
        return f"if [ -e {p} ] || [ -L {p} ]; then stat -c '%F|%U|%G|%a|%s' -- {p}; fi"
    if mode == "h":
        return (
            f"if [ -e {p} ] || [ -L {p} ]; then stat -c '%F|%U|%G|%a|%s' -- {p}; "
            f"if [ -f {p} ]; then printf 'sha:'; sha256sum -- {p} | cut -d' ' -f1; fi; fi"
        )
    # One stat: its last field (the size) picks inline content or a hash.
    return (
        f"if [ -e {p} ] || [ -L {p} ]; then s=$(stat -c '%F|%U|%G|%a|%s' -- {p}); printf '%s\\n' \"$s\"; "
        f"if [ -f {p} ] && [ \"${{s##*|}}\" -le {INLINE_LIMIT} ]; then printf 'b64:'; base64 -w0 -- {p}; "
        f"elif [ -f {p} ]; then printf 'sha:'; sha256sum -- {p} | cut -d' ' -f1; fi; fi"
    )


def _files_command(args: list[str]) -> str:
    """Every file probe of a host in one command of a fixed number of processes (one stat,
    one cat | base64, one sha256sum) instead of three or four per file: a run reads dozens
    of files on every host, and on a busy machine each process counts.
    Prints the stat lines, the paths inlined (in order), their contents concatenated in
    base64, and the hashes of the others."""
    modes: dict[str, str] = {}
    for arg in args:  # one path asked twice: content covers a hash, both cover the stat
        path, mode = arg[2:], arg[0]
        modes[path] = max(modes.get(path, "s"), mode, key="shc".index)
    paths = " ".join(shlex.quote(p) for p in modes)
    wanted = " ".join(f"[{shlex.quote(p)}]={m}" for p, m in modes.items() if m != "s")
    # Each section ends with a newline and the mark: the split needs no knowledge of sizes.
    return f"""declare -A mode=({wanted})
st=$(stat -c '%F|%U|%G|%a|%s|%n' -- {paths} 2>/dev/null)
printf '%s\\n{_MARK}\\n' "$st"
inline=(); hashed=()
while IFS='|' read -r kind u g a size name; do
  [ -n "$name" ] && [ -f "$name" ] || continue
  case "${{mode[$name]}}" in
    c) if [ "$size" -le {INLINE_LIMIT} ]; then inline+=("$name"); else hashed+=("$name"); fi ;;
    h) hashed+=("$name") ;;
  esac
done <<< "$st"
printf '%s\\n' "${{inline[@]}}"
printf '\\n{_MARK}\\n'
[ ${{#inline[@]}} -eq 0 ] || cat -- "${{inline[@]}}" | base64 -w0
printf '\\n{_MARK}\\n'
[ ${{#hashed[@]}} -eq 0 ] || sha256sum -- "${{hashed[@]}}"
"""


_MARK = "MMDEPLOY-FILES"


def _files_split(out: str, args: list[str]) -> list[str] | None:
    """The joined output -> what each probe prints alone; None when it does not add up (a
    file changed between stat and read, a name with a newline): then each is read alone."""
    sections = out.split(f"\n{_MARK}\n")
    if len(sections) != 4:
        return None
    stats, names, encoded, hashes = sections
    found = {}
    for line in stats.split("\n"):
        if line:
            kind, owner, group, mode, size, name = line.split("|", 5)
            found[name] = (f"{kind}|{owner}|{group}|{mode}|{size}", int(size))
    inline = [n for n in names.split("\n") if n]
    try:
        blob = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    if any(n not in found for n in inline) or len(blob) != sum(found[n][1] for n in inline):
        return None
    contents, at = {}, 0
    for name in inline:
        contents[name] = blob[at : at + found[name][1]]
        at += found[name][1]
    sums = {}
    for line in hashes.split("\n"):
        if line:
            digest, _, name = line.partition("  ")
            sums[name] = digest
    parts = []
    for arg in args:
        mode, path = arg[0], arg[2:]
        if path not in found:
            parts.append("")
            continue
        stat, _size = found[path]
        if path in contents and mode == "c":
            parts.append(f"{stat}\nb64:{base64.b64encode(contents[path]).decode()}")
        elif path in contents and mode == "h":
            parts.append(f"{stat}\nsha:{hashlib.sha256(contents[path]).hexdigest()}\n")
        elif path in sums and mode != "s":
            parts.append(f"{stat}\nsha:{sums[path]}\n")
        elif mode != "s" and stat.startswith("regular"):
            return None  # a regular file neither inlined nor hashed: a name sha256sum escaped
        else:
            parts.append(f"{stat}\n")
    return parts


# Every file and directory a host's steps ask about, in one command.
FILES = BatchKind("files", _files_command, _files_split)


def _parse_stat(fact: Fact) -> tuple[str, str, str, str] | None:
    """(type, owner, group, mode) of an existing path, or None."""
    first = fact.out.split("\n", 1)[0]
    if not first:
        return None
    kind, owner, group, mode, _size = first.split("|")
    return kind, owner, group, mode.zfill(4)


def _attr_changes(current, owner: str, group: str, mode: str) -> list[str]:
    _, cur_owner, cur_group, cur_mode = current
    out = []
    if (cur_owner, cur_group) != (owner, group):
        out.append(f"owner {cur_owner}:{cur_group} -> {owner}:{group}")
    if cur_mode != mode:
        out.append(f"mode {cur_mode} -> {mode}")
    return out


class File(Step):
    """A file with exactly `content`. `validate` (a command with {} for the new file) must
    pass before the live file is replaced; `then` runs after a replacement (daemon-reload)."""

    def __init__(
        self,
        path: str,
        content: str | bytes,
        *,
        owner: str = "root",
        group: str = "root",
        mode: str = "0644",
        validate: str | None = None,
        then: str | None = None,
        notify: tuple[str, ...] = (),
    ):
        self.path = path
        # A rendered template names its source (built-in or the site's override): plan says it.
        self.origin = getattr(content, "origin", "")
        self.content = content.encode() if isinstance(content, str) else content
        self.owner, self.group, self.mode = owner, group, mode.zfill(4)
        self.validate, self.then, self.notify = validate, then, tuple(notify)
        self.name = f"file {path}"
        self._probe = file_probe(path, "c")

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        change = self._check(facts)
        if change is not None and self.origin:
            return Change(f"{change.summary} (from the {self.origin})", change.diff)
        return change

    def _check(self, facts: Mapping[str, Fact]) -> Change | None:
        fact = facts[self._probe]
        current = _parse_stat(fact)
        if current is None:
            return Change("create", _diff(self.path, b"", self.content, created=True))
        if current[0] != "regular file":
            return Change(f"replace {current[0]} with a file", _diff(self.path, b"", self.content, created=True))
        body = fact.out.split("\n", 1)[1] if "\n" in fact.out else ""
        changes = _attr_changes(current, self.owner, self.group, self.mode)
        diff = ""
        if body.startswith("b64:"):
            old = base64.b64decode(body[4:])
            if old != self.content:
                changes.insert(0, "update content")
                diff = _diff(self.path, old, self.content)
        elif body.removeprefix("sha:").strip() != hashlib.sha256(self.content).hexdigest():
            changes.insert(0, "update content (large file, no diff)")
        return Change(", ".join(changes), diff) if changes else None

    def apply(self, remote: Remote, change: Change) -> None:
        p = shlex.quote(self.path)
        validate = ""
        if self.validate:
            command = self.validate.replace("{}", '"$tmp"')
            validate = (
                f"if ! {command} >&2; then echo 'validation failed: {shlex.quote(self.validate)}' >&2; exit 3; fi\n"
            )
        encoded = base64.b64encode(self.content).decode()
        body = (
            f'chown {self.owner}:{self.group} "$tmp"\nchmod {self.mode} "$tmp"\n{validate}'
            f'mv -f "$tmp" {p}\n{self.then or ""}\n'
        )
        head = (
            f"set -e\ntmp=$(mktemp {shlex.quote(_dirname(self.path))}/.mmdeploy.XXXXXX)\ntrap 'rm -f \"$tmp\"' EXIT\n"
        )
        script = f"{head}base64 -d > \"$tmp\" <<'MMDEPLOY_EOF'\n{encoded}\nMMDEPLOY_EOF\n{body}"
        log = f'{head}# ({len(self.content)} bytes, sha256 {hashlib.sha256(self.content).hexdigest()[:16]}) > "$tmp"\n{body}'
        run_checked(remote, script, self.name, log_as=log, timeout=self.timeout)


class JsonSettings(Step):
    """A JSON file in which the keys of `wanted` have exactly these values; every other key
    is left as the file has it. Servers that rewrite their own config (Mattermost fills in
    defaults on start) stay idempotent with this, where a whole-file template would not.

    `mask(config, before)` returns a copy of a config with its secrets masked (those the
    server generates too, which no redactor knows): the plan diff shows every line of the
    file around a change, and is made from masked copies only."""

    def __init__(
        self,
        path: str,
        wanted: dict,
        *,
        owner: str = "root",
        group: str = "root",
        mode: str = "0644",
        notify: tuple[str, ...] = (),
        mask: Callable[[dict, dict | None], dict] | None = None,
    ):
        self.path, self.wanted, self.notify, self.mask = path, wanted, tuple(notify), mask
        self.owner, self.group, self.mode = owner, group, mode
        self.name = f"json {path}"
        self._probe = file_probe(path, "c")
        self._file: File | None = None

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        fact = facts[self._probe]
        body = fact.out.split("\n", 1)[1] if "\n" in fact.out else ""
        try:
            current = json.loads(base64.b64decode(body[4:])) if body.startswith("b64:") else {}
        except ValueError:
            current = {}  # unreadable JSON is replaced by the wanted keys alone
        merged = merge(current, self.wanted)
        self._file = File(
            self.path, json.dumps(merged, indent=2) + "\n", owner=self.owner, group=self.group, mode=self.mode
        )
        if merged == current:
            change = self._file.check(facts)  # owner and mode still matter
            return Change(change.summary) if change and "content" not in change.summary else None
        shown_before, shown_after = current, merged
        if self.mask is not None:
            shown_before, shown_after = self.mask(current, None), self.mask(merged, current)
        before = json.dumps(shown_before, indent=2, sort_keys=True) + "\n" if current else ""
        after = json.dumps(shown_after, indent=2, sort_keys=True) + "\n"
        return Change(
            "create" if not current else "update keys", _diff(self.path, before.encode(), after.encode(), not current)
        )

    def apply(self, remote: Remote, change: Change) -> None:
        if self._file is None:  # check() makes the file it applies
            raise RuntimeError(f"{self.name}: apply() before check()")
        self._file.apply(remote, change)


class Directory(Step):
    def __init__(self, path: str, *, owner: str = "root", group: str = "root", mode: str = "0755"):
        self.path, self.owner, self.group, self.mode = path, owner, group, mode.zfill(4)
        self.name = f"directory {path}"
        self._probe = file_probe(path, "s")

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        current = _parse_stat(facts[self._probe])
        if current is None:
            return Change("create")
        if current[0] != "directory":
            return Change(f"{self.path} is a {current[0]}, expected a directory")
        changes = _attr_changes(current, self.owner, self.group, self.mode)
        return Change(", ".join(changes)) if changes else None

    def apply(self, remote: Remote, change: Change) -> None:
        run_checked(
            remote,
            f"install -d -o {self.owner} -g {self.group} -m {self.mode} -- {shlex.quote(self.path)}",
            self.name,
        )


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _diff(path: str, before: bytes, after: bytes, created: bool = False) -> str:
    try:
        a, b = before.decode(), after.decode()
    except UnicodeDecodeError:
        return f"binary content differs ({len(before)} -> {len(after)} bytes)"
    if a and not a.endswith("\n") or b and not b.endswith("\n"):
        a, b = a + "\n", b + "\n"  # keep the diff readable when a file lacks a final newline
    source = "/dev/null" if created else f"{path} (on host)"
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), source, f"{path} (wanted)"))
