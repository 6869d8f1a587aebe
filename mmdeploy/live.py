"""A live per-host progress view for a terminal (rich): one row per host with the
component and step it is at, the time since the run started, a spinner while it works
and its counts. Changes and failures still print above the view, one line each, exactly
as report.Reporter prints them, and the run log gets the same lines; the summary table
follows the run. Without a terminal the plain Reporter is used (tests parse its lines).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .report import Reporter, StepResult

if TYPE_CHECKING:
    from .runner import RunReport


@dataclass
class _Row:
    host: str
    component: str = ""
    step: str = "connecting"
    ok: int = 0
    changed: int = 0
    failed: int = 0
    state: str = "working"  # working | done | failed
    finished: float | None = None
    spinner: Spinner = field(default_factory=lambda: Spinner("dots"))


class LiveReporter(Reporter):
    def __init__(
        self,
        redact: Callable[[str], str],
        out: TextIO | None = None,
        verbose: bool = False,
        console: Console | None = None,
    ):
        super().__init__(redact, out=out, verbose=verbose)
        self.console = console or Console(file=self.out, highlight=False)
        self.rows: dict[str, _Row] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    # --- the view ---------------------------------------------------------------------

    def _row(self, host: str) -> _Row:
        with self._lock:
            if self._live is None:
                self._live = Live(
                    get_renderable=self.render,
                    console=self.console,
                    refresh_per_second=8,
                    transient=True,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start()
            if host not in self.rows:
                self.rows[host] = _Row(host)
            return self.rows[host]

    def render(self) -> Table | Group:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for name, justify in (
            ("", "left"),
            ("host", "left"),
            ("component", "left"),
            ("step", "left"),
            ("time", "right"),
            ("ok", "right"),
            ("changed", "right"),
            ("failed", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        now = time.monotonic()
        for row in list(self.rows.values()):
            mark = {"done": Text("✓", style="green"), "failed": Text("✗", style="red")}.get(row.state, row.spinner)
            elapsed = (row.finished or now) - self.started
            table.add_row(
                mark,
                row.host,
                row.component,
                Text(self.redact(row.step), overflow="ellipsis"),
                f"{elapsed:.1f}s",
                str(row.ok),
                str(row.changed),
                Text(str(row.failed), style="red" if row.failed else ""),
            )
        return table

    def print(self, text: str = "") -> None:
        if self._live is None:
            return super().print(text)
        text = self.redact(text)
        with self._lock:
            self._live.console.print(Text(text), soft_wrap=True)
            if self._log:
                print(text, file=self._log, flush=True)

    # --- the runner's events ----------------------------------------------------------

    def open_log(self, path: Path) -> None:
        super().open_log(path)
        self.started = time.monotonic()

    def applying(self, host: str, component: str, step: str, summary: str) -> None:
        row = self._row(host)
        row.component, row.step = component, f"{step}: {summary}"
        if self._log:  # the view shows it; the run log keeps the line the plain output has
            with self._lock:
                print(
                    self.redact(f"{self._prefix(host, component)} > {step}: {summary} ..."), file=self._log, flush=True
                )

    def step(self, r: StepResult, mode: str) -> None:
        row = self._row(r.host)
        row.component, row.step = r.component, r.step
        if r.status == "failed":
            row.failed += 1
            row.state, row.finished = "failed", time.monotonic()
        elif r.status == "changed":
            row.changed += 1
        else:
            row.ok += 1
        super().step(r, mode)

    def host_failed(self, host: str, error: str) -> None:
        row = self._row(host)
        row.failed += 1
        row.state, row.step, row.finished = "failed", "unreachable", time.monotonic()
        super().host_failed(host, error)

    def summary(self, report: RunReport) -> None:
        self.stop()
        super().summary(report)

    def stop(self) -> None:
        with self._lock:
            for row in self.rows.values():
                if row.state == "working":
                    row.state, row.step, row.finished = "done", "done", time.monotonic()
            live, self._live = self._live, None
        if live is not None:
            live.stop()
