"""The one step primitive.

A step names the facts it reads; `check` turns those facts into the change needed, or None
when the host already is as wanted (it never touches the host); `apply` makes the change.
A step that changed something notifies its handlers, which run once per host after the
component's steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import StepFailed
from .facts import Fact
from .remote import DEFAULT_TIMEOUT, Remote, Result


@dataclass(frozen=True)
class Change:
    summary: str  # one line: "create", "mode 0644 -> 0640", "install busybox"
    diff: str = ""  # unified diff for files, empty otherwise


class Step:
    name: str = "step"
    notify: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT  # seconds `apply` may take on the host

    def facts(self) -> list[str]:
        """Shell commands whose output `check` reads (batched by the runner)."""
        return []

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        raise NotImplementedError

    def apply(self, remote: Remote, change: Change) -> None:
        raise NotImplementedError

    def downloads(self, change: Change) -> list[str]:
        """What apply(change) will download that a pipelined run may fetch ahead, while the
        host's earlier components run (apt package names, runner._Pipelines)."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def run_checked(
    remote: Remote, script: str, what: str, log_as: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Result:
    """Run an apply script; a non-zero exit becomes StepFailed with the output's tail."""
    result = remote.run(script, log_as=log_as, timeout=timeout, what=what)
    if result.rc == 124:
        raise StepFailed(f"{what} did not finish within {int(timeout)} s and was stopped")
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-8:]
        raise StepFailed(f"{what} failed (exit {result.rc}): " + " | ".join(detail))
    return result
