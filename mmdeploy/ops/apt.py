"""Debian packages through apt, several per step (one dpkg query, one apt-get call)."""

from __future__ import annotations

from typing import Mapping

from ..facts import Fact
from ..remote import Remote
from ..errors import StepFailed
from ..step import Change, Step, run_checked

# Refresh the package lists only when an install fails or they are missing: an up-to-date
# host installs without the extra minute `apt-get update` can cost. A stalled download
# (a proxy that drops a connection) must fail and be retried, not hang the run: hence the
# HTTP timeout, apt's retries and a hard limit with one more try on `update`.
_INSTALL = """\
apt_get() {{ timeout 900 apt-get -q -y -o DPkg::Lock::Timeout=300 -o Acquire::http::Timeout=30 \\
  -o Acquire::Retries=3 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }}
update() {{ timeout 300 apt-get -q -o Acquire::http::Timeout=30 -o Acquire::Retries=3 update || \\
  timeout 300 apt-get -q -o Acquire::http::Timeout=30 -o Acquire::Retries=3 update; }}
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then update; fi
# An install interrupted earlier (its run killed) leaves dpkg half-configured: finish it.
if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || dpkg --audit 2>/dev/null | grep . >/dev/null; then
  timeout 900 dpkg --force-confdef --force-confold --configure -a || true
fi
apt_get install --no-install-recommends {pkgs} || {{ update && apt_get install --no-install-recommends {pkgs}; }}
"""


def install_script(packages: str) -> str:
    """The shell script Packages runs to install `packages` (space-separated), for a step
    that decides what to install only once an earlier step has run."""
    return _INSTALL.format(pkgs=packages)


# Every package dpkg knows, one line each: the same fact for every Packages step of a host,
# so a run reads it once per host instead of once per step.
INSTALLED = "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n'"


class Packages(Step):
    """Packages installed (optionally `name=version`) or absent."""

    timeout = 1800  # apt's own limits above: two updates and an install, with retries

    def __init__(self, *names: str, state: str = "present", notify: tuple[str, ...] = ()):
        if state not in ("present", "absent"):
            raise ValueError(f"state must be present or absent, got {state!r}")
        self.wanted = {n.split("=", 1)[0]: (n.split("=", 1)[1] if "=" in n else None) for n in names}
        self.state, self.notify = state, tuple(notify)
        self.name = f"packages {' '.join(names)}" + (" absent" if state == "absent" else "")
        self._probe = INSTALLED
        # Later components' packages installed in this step's apt transaction (the runner
        # sets them on a cold host, runner._packages_ahead): one apt-get and one dpkg run
        # instead of one per component.
        self.ahead: tuple[str, ...] = ()

    @property
    def can_go_ahead(self) -> bool:
        """Whether an earlier step may install these packages for this one: an install
        that notifies nothing (its change would run no handler of its own)."""
        return self.state == "present" and not self.notify

    def facts(self) -> list[str]:
        return [self._probe]

    def installed(self, fact: Fact) -> dict[str, str]:
        versions = {}
        for line in fact.out.splitlines():
            name, status, version = (line.split("\t") + ["", ""])[:3]
            if status.startswith("ii"):
                versions[name.split(":")[0]] = version
        return versions

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        have = self.installed(facts[self._probe])
        if self.state == "absent":
            extra = [n for n in self.wanted if n in have]
            return Change("remove " + " ".join(extra)) if extra else None
        todo = [
            n if v is None else f"{n}={v}"
            for n, v in self.wanted.items()
            if n not in have or (v is not None and have[n] != v)
        ]
        if not todo:
            return None
        ahead = [p for p in self.ahead if p.split("=", 1)[0] not in self.wanted]
        return Change("install " + " ".join(todo) + (f" (with later components': {' '.join(ahead)})" if ahead else ""))

    def apply(self, remote: Remote, change: Change) -> None:
        own, _, later = change.summary.split(" ", 1)[1].partition(" (with later components': ")
        if self.state == "absent":
            run_checked(
                remote, f"apt-get -q -y -o DPkg::Lock::Timeout=300 purge {own}", self.name, timeout=self.timeout
            )
            return
        if later:
            try:
                run_checked(remote, install_script(f"{own} {later.rstrip(')')}"), self.name, timeout=self.timeout)
                return
            except StepFailed:  # e.g. a later component's package needs its own source first
                pass  # its own packages alone; the later components install theirs at their turn
        run_checked(remote, install_script(own), self.name, timeout=self.timeout)
