"""What a run prints: one line per change or failure, each naming its host; diffs in plan;
a summary table at the end. Everything passes through the redactor, and is copied to the
run's output.log."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from .runner import RunReport


@dataclass
class StepResult:
    host: str
    component: str
    step: str
    status: str  # ok | changed | failed
    summary: str = ""
    diff: str = ""
    error: str = ""
    seconds: float = 0.0


MARK = {"changed": "~", "failed": "!", "ok": " "}


class Reporter:
    def __init__(self, redact: Callable[[str], str], out: TextIO | None = None, verbose: bool = False):
        self.redact = redact
        self.out = out or sys.stdout
        self.verbose = verbose
        self._lock = threading.Lock()
        self._log: TextIO | None = None
        self.width = 12

    def open_log(self, path: Path) -> None:
        self._log = open(path, "a")

    def print(self, text: str = "") -> None:
        text = self.redact(text)
        with self._lock:
            print(text, file=self.out, flush=True)
            if self._log:
                print(text, file=self._log, flush=True)

    def _prefix(self, host: str, component: str) -> str:
        return f"{host:<{self.width}} {component:<11}"

    def applying(self, host: str, component: str, step: str, summary: str) -> None:
        self.print(f"{self._prefix(host, component)} > {step}: {summary} ...")

    def step(self, r: StepResult, mode: str) -> None:
        if r.status == "ok" and not self.verbose:
            return
        if r.status == "failed":
            text = f"FAILED: {r.error}"
        elif r.status == "changed":
            text = (
                ("would " if mode == "plan" else "") + r.summary + (f" ({r.seconds:.1f}s)" if r.seconds >= 0.05 else "")
            )
        else:
            text = "ok"
        self.print(f"{self._prefix(r.host, r.component)} {MARK[r.status]} {r.step}: {text}")
        if r.diff and mode == "plan":
            self.print("\n".join("      " + line for line in r.diff.rstrip("\n").splitlines()))

    def note(self, host: str, text: str) -> None:
        """What the run does on a host beside its steps."""
        self.print(f"{self._prefix(host, '-')}   {text}")

    def host_failed(self, host: str, error: str) -> None:
        self.print(f"{self._prefix(host, '-')} ! FAILED: {error}")

    def summary(self, report: RunReport) -> None:
        verb = "would change" if report.mode == "plan" else "changed"
        self.print()
        self.print(f"{'host':<{self.width}} {'ok':>5} {verb:>13} {'failed':>7} {'round trips':>12} {'time':>8}")
        for name, h in report.hosts.items():
            self.print(
                f"{name:<{self.width}} {h.ok:>5} {h.changed:>13} {h.failed:>7} "
                f"{h.remote.round_trips:>12} {h.seconds:>7.1f}s"
            )
        total = report.hosts.values()
        self.print(
            f"{'total':<{self.width}} {sum(h.ok for h in total):>5} {sum(h.changed for h in total):>13} "
            f"{sum(h.failed for h in total):>7} {sum(h.remote.round_trips for h in total):>12} "
            f"{report.seconds:>7.1f}s"
        )
        for name, h in report.hosts.items():
            if h.error:
                self.print(f"{name}: FAILED: {h.error}")
        if report.log_dir:
            self.print(f"run log: {report.log_dir}")
