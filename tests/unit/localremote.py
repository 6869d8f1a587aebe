"""A Remote that runs scripts with the local bash instead of over SSH.

Unit tests use it to exercise facts, ops and the runner for real (real scripts, real files
in a temporary directory) without a test bed. It keeps Remote's interface: run, connect,
close, round_trips, log_path, redact."""

from __future__ import annotations

import subprocess

from mmdeploy.remote import PREAMBLE, Result, Unreachable


class LocalRemote:
    def __init__(self, host, redact=lambda s: s, log_path=None, fail_connect=False):
        self.host, self.redact, self.log_path = host, redact, log_path
        self.round_trips = 0
        self.host_facts: dict = {}
        self.scripts: list[str] = []
        self.fail_connect = fail_connect

    def connect(self):
        if self.fail_connect:
            raise Unreachable(f"cannot connect over SSH to root@{self.host.address}:22: refused")

    def run(
        self,
        script: str,
        timeout: float = 60,
        log_as: str | None = None,
        log_output: bool = True,
        what: str | None = None,
    ) -> Result:
        self.connect()  # as Remote.run, which connects on first use
        self.round_trips += 1
        self.scripts.append(script)
        p = subprocess.run(["bash", "-s"], input=PREAMBLE + script, capture_output=True, text=True, timeout=timeout)
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(self.redact((log_as or script) + (p.stdout if log_output else "") + p.stderr))
        return Result(p.returncode, p.stdout, p.stderr)

    def close(self):
        pass

    def hold(self, script: str, timeout: float, what: str, wait: float = 30.0):
        """Remote.hold with the local bash: the script runs until close() ends its input."""
        if self.fail_connect:
            self.connect()
        self.round_trips += 1
        self.scripts.append(script)
        p = subprocess.Popen(["bash", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write(PREAMBLE + script)
        p.stdin.flush()
        return p.stdout.readline().strip(), _LocalHeld(p)


class _LocalHeld:
    def __init__(self, proc):
        self.proc = proc

    def readline(self, wait: float) -> str:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        return self.proc.stdout.readline().strip() if ready else ""

    def close(self, wait: float = 5.0) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(wait)
