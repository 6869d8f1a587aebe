"""Errors the tool reports to its users; each carries the exit code the CLI uses."""

from __future__ import annotations

from typing import Callable


class MMDeployError(Exception):
    exit_code = 1


class InventoryError(MMDeployError):
    """Bad input. Raised before any host is contacted; one problem per line."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StepFailed(MMDeployError):
    """A step's apply (or a fact probe) failed on a host."""


class Refused(MMDeployError):
    """An HA manager (Patroni) answered that it cannot move the primary now (no candidate
    it trusts yet, a synchronous standby that changed): nothing moved; asking again once
    the cluster has settled may succeed."""


def redacted(error: MMDeployError, redact: Callable[[str], str]) -> MMDeployError:
    """The same error with every secret in its message masked (for messages that quote a
    host's output, which may hold one in any of its forms)."""
    if isinstance(error, InventoryError):
        error.problems = [redact(p) for p in error.problems]
        error.args = ("\n".join(error.problems),)
    else:
        error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
    return error
