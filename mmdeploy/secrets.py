"""Secrets: generated once, kept in a 0600 file outside git, redacted from all output.

A value can also come from the environment: MMDEPLOY_SECRET_<NAME> (upper case) wins over
the file, which lets a CI system or a vault inject it without touching disk.

Redaction covers every form a secret takes on its way to a host: as given, JSON-escaped,
URL-encoded, SQL quote-doubled, shell-quoted, and escaped for the files it is written to
(.pgpass, systemd environment files, MySQL option files); see `escaped_forms`.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import re
import secrets as _random
import shlex
import stat
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote, quote_plus

import yaml

from . import safeyaml
from .errors import InventoryError, MMDeployError
from .grammar import control_characters

REDACTED = "********"
# Shorter values cannot be redacted without mangling ordinary text (and are weak anyway).
MIN_LENGTH = 8


@dataclass(frozen=True)
class Secret:
    """A named secret a component declares. Generated on first use unless `generate` is
    false (a password only the operator knows: then it is None until given). `max_bytes`:
    the most its consumer takes (Mattermost passwords: 72, bcrypt's limit)."""

    name: str
    doc: str
    generate: bool = True
    max_bytes: int | None = None
    # A grammar the consumer needs (an S3 access key goes into a SigV4 credential scope).
    pattern: str | None = None

    @property
    def env(self) -> str:
        return "MMDEPLOY_SECRET_" + re.sub(r"\W", "_", self.name).upper()


def option_file_value(value: str) -> str:
    """A value for a MySQL/MariaDB option file (my.cnf): double-quoted, with backslash and
    double quote escaped. The option-file reader strips the quotes and undoes \\\\ and \\",
    and inside quotes '#' starts no comment and surrounding spaces are kept."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escaped_forms(value: str) -> set[str]:
    """Every form `value` takes in the scripts, files and messages mmdeploy writes."""
    forms = {
        value,
        json.dumps(value)[1:-1],  # JSON (config.json, API bodies), ASCII-escaped
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),  # URLs (DSNs)
        value.replace("'", "''"),  # an SQL literal (standard)
        value.replace("\\", "\\\\").replace("'", "''"),  # a MySQL literal
        value.replace("\\", "\\\\").replace("'", "\\'"),
        shlex.quote(value),  # a shell word
        value.replace("\\", "\\\\").replace('"', '\\"'),  # systemd EnvironmentFile, option files
        value.replace("\\", "\\\\").replace(":", "\\:"),  # .pgpass
        option_file_value(value),
        repr(value)[1:-1],  # Python's repr, in error messages
    }
    return {f for f in forms if len(f) >= 4}


class Redactor:
    """Replaces every known secret value, in all its escaped forms, in a text. Shared by
    all output and logs of a run."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4:  # too short to redact without mangling text
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            self._forms |= escaped_forms(value)
            # Longest first, so a secret that contains another is redacted whole.
            alternatives = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern and text else text


def problem(secret: Secret | None, value: object) -> str | None:
    """What is wrong with a secret's value, or None."""
    if value is None or value == "":
        return (
            "empty value: remove the key to have one generated"
            if secret is None or secret.generate
            else "empty value: give the value, or remove the key"
        )
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {value!r} (quote it)"
    bad = control_characters(value)
    if bad:
        return f"expected a single line without control characters, found {', '.join(bad)}"
    if len(value) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters (too short to keep out of the output)"
    if secret is not None and secret.max_bytes and len(value.encode()) > secret.max_bytes:
        return f"longer than {secret.max_bytes} bytes, the most {secret.doc} can be"
    if secret is not None and secret.pattern and not re.fullmatch(secret.pattern, value):
        return f"{secret.doc} must match {secret.pattern}"
    return None


class Secrets:
    """The secrets of one inventory. Only declared secrets can be asked for: a typo in a
    name is an error, never a new random value. Every value (file and environment) is
    checked when this is made, before any host is contacted."""

    def __init__(self, path: Path, redactor: Redactor, declared: Iterable[Secret] = ()):
        self.path = path
        self.redact = redactor
        self.declared = {s.name: s for s in declared}
        self._lock = threading.Lock()
        self._values: dict[str, str] = self._read()
        problems = []
        for s in self.declared.values():
            env = os.environ.get(s.env)
            if env is not None and env != "" and (why := problem(s, env)):
                problems.append(f"{s.env}: {why}")
            redactor.add(env)
        if problems:
            raise InventoryError(problems)
        for value in self._values.values():
            redactor.add(value)

    def _read(self) -> dict[str, str]:
        """The file's values, checked: a mapping of declared names to strings."""
        if not self.path.exists() and not self.path.is_symlink():
            return {}
        label = str(self.path)
        try:
            mode = self.path.stat().st_mode
        except OSError as e:
            raise InventoryError([f"{label}: cannot read: {e.strerror}"]) from None
        if stat.S_ISREG(mode) and mode & 0o077:
            raise InventoryError(
                [
                    f"{label}: readable by others (mode {stat.S_IMODE(mode):04o}); "
                    f"make it private: chmod 600 {shlex.quote(label)}"
                ]
            )
        data, lines = safeyaml.read(self.path, label)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InventoryError([f"{label}: expected a mapping of secret names to values"])
        problems = []
        for key, value in data.items():
            where = f"{label}:{lines.get((key,), 1)}: {key}"
            secret = self.declared.get(key)
            if self.declared and secret is None:
                close = difflib.get_close_matches(key, list(self.declared), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(self.declared))}"
                problems.append(f"{where}: unknown secret ({hint})")
            elif why := problem(secret, value):
                problems.append(f"{where}: {why}")
        if problems:
            raise InventoryError(problems)
        return dict(data)

    def get(self, secret: Secret) -> str:
        """A generated secret's value, generated and saved on first use."""
        value = self.optional(secret)
        if value is None:
            raise MMDeployError(f"secret {secret.name} is not set: put it in {self.path} or {secret.env}")
        return value

    def optional(self, secret: Secret) -> str | None:
        """The secret's value from the environment or the secrets file; a generated one is
        created on first use, one that cannot be generated (an SMTP password) is None."""
        return self._value(secret, create=secret.generate)

    def existing(self, secret: Secret) -> str | None:
        """The value if there is one; never generates (verify reads, it does not create)."""
        return self._value(secret, create=False)

    def _value(self, secret: Secret, create: bool) -> str | None:
        if not isinstance(secret, Secret):
            raise TypeError(f"ask for a declared Secret, not {secret!r}")
        if self.declared and self.declared.get(secret.name) != secret:
            raise MMDeployError(f"secret {secret.name!r} is not declared by any component")
        env = os.environ.get(secret.env)
        if env:
            self.redact.add(env)
            return env
        with self._lock:
            if secret.name not in self._values and create:
                self._generate(secret)
            value = self._values.get(secret.name)
        self.redact.add(value)
        return value

    def _generate(self, secret: Secret) -> None:
        """Under the file's lock, re-read it (another run may have made this secret since
        we read it), then add the new value and save."""
        with self._file_lock():
            self._values = {**self._values, **self._read()}
            if secret.name not in self._values:
                self._values[secret.name] = _random.token_urlsafe(24)
                self._save()

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self) -> None:
        # A new 0600 file beside the old one, flushed to disk, then renamed over it (and
        # the rename itself flushed): a crash at any point leaves the old file or the new
        # one, complete and private, never a half-written or readable one.
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write("# generated by mmdeploy; keep out of version control\n")
                yaml.safe_dump(self._values, f, default_flow_style=False, allow_unicode=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
