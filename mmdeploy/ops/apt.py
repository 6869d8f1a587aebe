"""Debian packages through apt, several per step (one dpkg query, one apt-get call)."""

from __future__ import annotations

import functools
import shlex
from types import MappingProxyType
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
    patterns = " ".join(f"-e {shlex.quote(p)}" for p in packages.split())
    return _WAIT.format(fetching=FETCHING, patterns=patterns) + _INSTALL.format(pkgs=packages)


# Every package dpkg knows, one line each: the same fact for every Packages step of a host,
# so a run reads it once per host instead of once per step.
INSTALLED = "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n'"


@functools.lru_cache(maxsize=64)
def _installed(listing: str) -> Mapping[str, str]:
    """Package -> version of what INSTALLED lists as installed. Parsed once per listing: a
    host's Packages steps all read the same one, each twice in an apply that fetches ahead
    (its prefetch asks what they will download), and a listing is some 600 lines."""
    versions = {}
    for line in listing.splitlines():
        name, status, version = (line.split("\t") + ["", ""])[:3]
        if status.startswith("ii"):
            versions[name.split(":")[0]] = version
    return MappingProxyType(versions)


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

    def installed(self, fact: Fact) -> Mapping[str, str]:
        return _installed(fact.out)

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

    def downloads(self, change: Change) -> list[str]:
        return change.summary.split()[1:] if self.state == "present" else []


# Fetching ahead (issue #14): a pipelined cold run starts, on each host, the download of
# the packages its later components will install, while its earlier ones run; their
# installs then only unpack. It runs detached from the run and takes no apt or dpkg lock
# (the host's own installs go on beside it): apt resolves with Debug::NoLocking into a
# staging directory of its own and checks each file against the signed indexes there; a
# file enters apt's cache, by rename, only once complete. One transaction per component,
# in the run's order, so that the next install's packages come first; FETCHING names the
# component's packages being fetched (after the fetcher's pid), and an install that needs
# one of them waits for that transaction instead of fetching the same files beside it
# (the two would share the host's link to the mirror). What apt's cache already holds (an
# earlier component's dependencies) is linked into the staging directory first, so that a
# later transaction does not fetch it again. Best effort: a package not fetched
# ahead (a component adds its repository first) is fetched by its install, as without this.
AHEAD_DIR = "/var/cache/apt/archives/mmdeploy-ahead"
AHEAD_LOG = "/var/log/mmdeploy/fetch-ahead.log"
FETCHING = f"{AHEAD_DIR}/fetching"
_AHEAD = """\
set -u
for fd in /proc/$$/fd/*; do n=${{fd##*/}}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done
s={dir}
mkdir -p "$s/partial"
fetch() {{
  printf '%s\\n' $$ "$@" > "$s/fetching.new" && mv -f "$s/fetching.new" "$s/fetching"
  ln -f /var/cache/apt/archives/*.deb "$s/" 2>/dev/null
  timeout 900 apt-get -q -y --download-only -o Debug::NoLocking=true -o Dir::Cache::Archives="$s/" \\
    -o Acquire::http::Timeout=30 -o Acquire::Retries=3 install --no-install-recommends "$@"
  for f in "$s"/*.deb; do
    if [ -e "/var/cache/apt/archives/${{f##*/}}" ]; then rm -f "$f"; else mv -f "$f" /var/cache/apt/archives/; fi
  done
}}
{each}
rm -rf "$s"
"""
# The install's wait (at most 5 minutes) while the fetcher (alive) holds one of its packages.
_WAIT = """\
i=0; while [ $i -lt 1500 ] && [ -e {fetching} ] && kill -0 "$(head -n1 {fetching})" 2>/dev/null \\
  && grep -qxF {patterns} {fetching}; do sleep 0.2; i=$((i+1)); done
"""


def fetch_ahead_script(groups: list[list[str]]) -> str:
    """The command that starts, detached, the download of `groups` (each component's
    packages, in the order they will be installed) and returns at once."""
    each = "\n".join("fetch " + " ".join(shlex.quote(p) for p in group) for group in groups)
    body = _AHEAD.format(dir=AHEAD_DIR, each=each)
    # Its own session, so it outlives the command that starts it; it closes every file but
    # its output first, the run's script lock among them (remote.py: the script's children
    # inherit it), which a later run would otherwise wait on. Not niced: measured with a
    # 4 MB/s link, a niced fetcher fell behind the installs it feeds (README, benchmarks).
    return (
        f"mkdir -p {shlex.quote(AHEAD_LOG.rsplit('/', 1)[0])} && "
        f"setsid -f bash -c {shlex.quote(body)} mmdeploy-fetch-ahead </dev/null >{AHEAD_LOG} 2>&1"
    )
