"""A release archive unpacked into a directory of its own (kept for rollback).

The archive is fetched into the control machine's cache (or, when the hosts can reach the
URL themselves, by each host), its sha256 verified on the host, unpacked into DEST.tmp and
renamed to DEST only when complete, so a half-unpacked release is never used."""

from __future__ import annotations

import shlex
from typing import Mapping

from ..artifacts import Artifact, fetch
from ..facts import Fact
from ..remote import Remote
from ..step import Change, Step, run_checked

MARKER = ".mmdeploy-sha256"


def delivered(remote: Remote, artifact: Artifact, fetch_on_host: bool) -> tuple[str, str]:
    """The artifact on the host, checked: (its temporary path, the script's opening). The
    archive is uploaded now, or downloaded by the host itself in the script; the opening
    removes it when the script exits and stops unless its sha256 is the artifact's."""
    tmp = f"/tmp/mmdeploy-{artifact.sha256[:16]}-{artifact.filename}"
    q_tmp = shlex.quote(tmp)
    if fetch_on_host:
        get = f"curl -fsSL --retry 3 -o {q_tmp} {shlex.quote(artifact.url)}\n"
    else:
        remote.put(fetch(artifact), tmp)
        get = ""
    return tmp, (f"set -e\ntrap 'rm -f {q_tmp}' EXIT\n{get}echo '{artifact.sha256}  {tmp}' | sha256sum -c --quiet -\n")


class Unpacked(Step):
    timeout = 900  # a download on the host and the unpacking of a large archive

    def __init__(
        self,
        artifact: Artifact,
        dest: str,
        *,
        strip: int = 1,
        owner: str = "root",
        fetch_on_host: bool = False,
        notify: tuple[str, ...] = (),
    ):
        self.artifact, self.dest, self.strip, self.owner = artifact, dest, strip, owner
        self.fetch_on_host, self.notify = fetch_on_host, tuple(notify)
        self.name = f"release {artifact.name} {artifact.version} in {dest}"
        self._probe = f"cat {shlex.quote(dest)}/{MARKER}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        if facts[self._probe].out.strip() == self.artifact.sha256:
            return None
        return Change(f"unpack {self.artifact.filename} (sha256 {self.artifact.sha256[:12]})")

    def apply(self, remote: Remote, change: Change) -> None:
        tmp, opening = delivered(remote, self.artifact, self.fetch_on_host)
        q_tmp, dest = shlex.quote(tmp), shlex.quote(self.dest)
        script = (
            f"{opening}"
            f"rm -rf {dest}.tmp && mkdir -p {dest}.tmp\n"
            f"tar -xzf {q_tmp} -C {dest}.tmp --strip-components={self.strip} --no-same-owner\n"
            f"chown -R {self.owner}: {dest}.tmp\n"
            f"echo {self.artifact.sha256} > {dest}.tmp/{MARKER}\n"
            f"rm -rf {dest} && mv {dest}.tmp {dest}\n"
        )
        run_checked(remote, script, self.name, timeout=self.timeout)


class Binary(Step):
    """A release that is a single executable (no archive), installed at `path` after its
    sha256 is verified on the host; compared by that checksum."""

    timeout = 900

    def __init__(self, artifact: Artifact, path: str, *, fetch_on_host: bool = False, notify: tuple[str, ...] = ()):
        self.artifact, self.path, self.fetch_on_host = artifact, path, fetch_on_host
        self.notify = tuple(notify)
        self.name = f"binary {artifact.name} {artifact.version} at {path}"
        self._probe = f"sha256sum {shlex.quote(path)} | cut -d' ' -f1"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        if facts[self._probe].out.strip() == self.artifact.sha256:
            return None
        return Change(f"install {self.artifact.filename} (sha256 {self.artifact.sha256[:12]})")

    def apply(self, remote: Remote, change: Change) -> None:
        tmp, opening = delivered(remote, self.artifact, self.fetch_on_host)
        q_tmp, path = shlex.quote(tmp), shlex.quote(self.path)
        script = f"{opening}install -D -o root -g root -m 0755 {q_tmp} {path}\n"
        run_checked(remote, script, self.name, timeout=self.timeout)
