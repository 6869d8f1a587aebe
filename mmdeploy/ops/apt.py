"""Debian packages through apt, several per step (one dpkg query, one apt-get call)."""

from __future__ import annotations

from typing import Mapping

from ..facts import Fact
from ..remote import Remote
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
        return Change("install " + " ".join(todo)) if todo else None

    def apply(self, remote: Remote, change: Change) -> None:
        pkgs = change.summary.split(" ", 1)[1]
        if self.state == "absent":
            script = f"apt-get -q -y -o DPkg::Lock::Timeout=300 purge {pkgs}"
        else:
            script = install_script(pkgs)
        run_checked(remote, script, self.name, timeout=self.timeout)
