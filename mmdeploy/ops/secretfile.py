"""A file that holds a secret (a private key, a connection string with a password).

It is compared by sha256 on the host, so its content is never in the facts (which the run
log records), and never in a plan diff; the upload itself is logged as a size and a hash
by File.apply."""

from __future__ import annotations

from typing import Mapping

from ..facts import Fact
from ..step import Change
from .files import File, file_probe


class SecretFile(File):
    def __init__(
        self,
        path: str,
        content: str | bytes,
        *,
        owner: str = "root",
        group: str = "root",
        mode: str = "0600",
        notify: tuple[str, ...] = (),
        validate: str | None = None,
    ):
        super().__init__(path, content, owner=owner, group=group, mode=mode, notify=notify, validate=validate)
        self._probe = file_probe(path, "h")

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        change = super().check(facts)
        if change is None:
            return None
        summary = change.summary.replace(" (large file, no diff)", "")
        return Change(summary + " (secret: content not shown)")
