"""The live per-host view (mmdeploy/live.py) on a terminal, and the plain line-per-change
output without one: the runner drives both for real (LocalRemote runs the scripts)."""

import io
import re

from rich.console import Console

from mmdeploy import inventory, runner
from mmdeploy.live import LiveReporter
from mmdeploy.report import Reporter
from mmdeploy.secrets import Redactor, Secrets

from .conftest import SINGLE
from .localremote import LocalRemote
from .test_runner import Files

ANSI = re.compile(r"\x1b\[")


def run(tmp_path, write_inventory, monkeypatch, reporter_for, fail_on=()):
    monkeypatch.setattr(runner, "Remote", lambda host, redact, log_path: LocalRemote(host, redact, log_path))
    inv = inventory.load(write_inventory(SINGLE))
    files = tmp_path / "hosts"
    files.mkdir(exist_ok=True)
    redactor = Redactor()
    secrets = Secrets(tmp_path / "site.secrets.yml", redactor)
    out = io.StringIO()
    reporter = reporter_for(redactor, out)
    report = runner.run(
        inv,
        [Files(files, fail_on=fail_on)],
        mode="apply",
        secrets=secrets,
        reporter=reporter,
        run_root=tmp_path / "runs",
    )
    return report, reporter, out.getvalue()


def test_live_view_on_a_terminal(tmp_path, write_inventory, monkeypatch):
    def live(redactor, out):
        console = Console(file=out, force_terminal=True, width=140, color_system="standard")
        return LiveReporter(redactor, out=out, console=console)

    report, reporter, text = run(tmp_path, write_inventory, monkeypatch, live, fail_on=("db1",))
    # The view: a row per host with its component, last step, counts and a finished mark.
    assert set(reporter.rows) == {"proxy1", "app1", "db1"}
    assert reporter.rows["app1"].changed == 5 and reporter.rows["app1"].state == "done"
    assert reporter.rows["db1"].state == "failed" and reporter.rows["db1"].failed == 1
    view = io.StringIO()
    Console(file=view, width=140).print(reporter.render())
    rows = {line.split()[1]: line for line in view.getvalue().splitlines() if line.split()[1:2] != ["host"]}
    assert "files" in rows["app1"] and re.search(r"\d+\.\ds\s+\d+\s+5\s+0$", rows["app1"].rstrip())
    assert "✗" in rows["db1"] and "break" in rows["db1"]
    # Changes and failures still print one line each above it, then the summary table.
    assert ANSI.search(text)  # a terminal got a live view
    assert "db1          files       ! break: FAILED:" in text
    assert re.search(r"^total\s+\d+\s+\d+\s+1\s+", text, re.M)
    # The run log holds the plain lines, the "applying" ones included.
    log = (report.log_dir / "output.log").read_text()
    assert "app1         files       > file " in log and not ANSI.search(log)


def test_plain_output_without_a_terminal_is_unchanged(tmp_path, write_inventory, monkeypatch):
    report, _, text = run(tmp_path, write_inventory, monkeypatch, lambda r, out: Reporter(r, out=out))
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert any(re.match(r"^app1\s+files\s+> file .*/a\.conf: create \.\.\.$", line) for line in lines)
    assert any(re.match(r"^app1\s+files\s+~ file .*/a\.conf: create", line) for line in lines)
    assert re.search(r"^total\s+\d+\s+15\s+0\s+", text, re.M)
