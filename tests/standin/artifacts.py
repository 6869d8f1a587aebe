"""The archives the multi and cluster patterns install besides Mattermost, built on this
machine from the registries it can reach, with the official release's name and layout, so
that mmdeploy's components install them exactly as on a real site (only URL and sha256 differ):

  pushproxy  mattermost-push-proxy-linux-amd64.tar.gz  TEST STAND-IN (build-pushproxy.sh)
  search     opensearch-2.19.6-linux-x64.tar.gz         real OpenSearch from Maven Central, no jdk/
             analysis-icu-2.19.6.zip                    TEST STAND-IN for the ICU plugin (build-opensearch.sh)
  storage    linux_amd64.tar.gz                         real SeaweedFS 4.53 from the Go module proxy

They are cached on the control machine outside the checkout, in $MMDEPLOY_BUILD_CACHE, by
default ~/.cache/mmdeploy/build (beside mmdeploy's download cache ~/.cache/mmdeploy/artifacts;
not derived from $MMDEPLOY_CACHE, which tests point at temporary directories), as
<name>/<version>/<file> (+ .sha256). Each build script skips its work when its
inputs are unchanged and holds an flock on its directory, so concurrent callers (bootstrap,
several test sessions) wait for one build. SeaweedFS is the long pole: about 6-8 minutes and
2.2-2.7 GB of memory cold.

    python3 -m tests.standin.artifacts [pushproxy|search|storage ...]   build (all by default)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mmdeploy import artifacts

HERE = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("MMDEPLOY_BUILD_CACHE", Path.home() / ".cache" / "mmdeploy" / "build"))

# SeaweedFS 4.53 as the Go module proxy knows it (no tagged module versions: a pseudo-version).
SEAWEEDFS_MODULE_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"


@dataclass(frozen=True)
class Build:
    section: str  # the settings section that consumes it: <section>.url/.sha256/.version
    name: str  # its directory in the build cache
    version: str
    filename: str  # the official release asset's name

    @property
    def directory(self) -> Path:
        return BUILD / self.name / self.version

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    def command(self) -> list[str]:
        if self.section == "pushproxy":
            return ["bash", str(HERE / "build-pushproxy.sh"), self.version, str(self.directory)]
        if self.section == "search":
            return ["bash", str(HERE / "build-opensearch.sh"), self.version, str(self.directory)]
        return ["bash", str(HERE / "build-seaweedfs.sh"), self.version, SEAWEEDFS_MODULE_VERSION, str(self.directory)]


PUSHPROXY = Build("pushproxy", "mattermost-push-proxy", "6.5.0", "mattermost-push-proxy-linux-amd64.tar.gz")
SEARCH = Build("search", "opensearch", "2.19.6", "opensearch-2.19.6-linux-x64.tar.gz")
STORAGE = Build("storage", "seaweedfs", "4.53", "linux_amd64.tar.gz")
BUILDS = {b.section: b for b in (PUSHPROXY, SEARCH, STORAGE)}
# The analysis-icu plugin zip comes out of the search build, beside the node archive.
ICU_FILENAME = f"analysis-icu-{SEARCH.version}.zip"

TIMEOUT = {"pushproxy": 600, "search": 900, "storage": 2400}  # cold, on 2 busy cores


class BuildError(Exception):
    pass


def sha256_of(path: Path) -> str:
    """The checksum the build wrote beside the file (sha256sum format), checked against the file."""
    recorded = Path(f"{path}.sha256").read_text().split()[0]
    actual = artifacts.sha256_of(path)
    if recorded != actual:
        raise BuildError(f"{path}: .sha256 says {recorded}, the file hashes to {actual}")
    return recorded


def build(section: str) -> tuple[Path, str]:
    """(archive path, sha256) of one section's archive, building it if its inputs changed."""
    b = BUILDS[section]
    try:
        r = subprocess.run(b.command(), capture_output=True, text=True, timeout=TIMEOUT[section])
    except subprocess.TimeoutExpired:
        raise BuildError(f"{section}: {' '.join(b.command())} did not finish in {TIMEOUT[section]}s") from None
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
        raise BuildError(f"{section}: {' '.join(b.command())} failed ({r.returncode}):\n{tail}")
    return b.path, sha256_of(b.path)


def icu_plugin() -> tuple[Path, str]:
    """(zip path, sha256) of the analysis-icu plugin stand-in, building search if needed."""
    build("search")
    path = SEARCH.directory / ICU_FILENAME
    return path, sha256_of(path)


BED_NOFILE_DROPIN = """[Service]
# test bed only: this machine caps open files at 20000 (tests/standin/bednofile/nofile.c)
Environment=LD_PRELOAD=/usr/local/lib/mmdeploy-bed-nofile.so
"""


def bed_nofile_shim() -> Path:
    """The TEST BED ONLY LD_PRELOAD library of bednofile/nofile.c, built with gcc when its
    source is newer. On the bed, search hosts get it as /usr/local/lib/mmdeploy-bed-nofile.so
    plus BED_NOFILE_DROPIN as /etc/systemd/system/opensearch.service.d/zz-mmdeploy-bed.conf,
    so that OpenSearch's file descriptor bootstrap check passes on machines whose open-file
    limit cannot be raised to 65535 (see the source's comment). Never for real hosts."""
    source = HERE / "bednofile" / "nofile.c"
    target = BUILD / "bed" / "mmdeploy-bed-nofile.so"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        r = subprocess.run(
            ["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(tmp), str(source), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise BuildError(f"bed nofile shim: gcc failed:\n{r.stderr}")
        os.replace(tmp, target)
    return target


BED_SHIM_PATH = "/usr/local/lib/mmdeploy-bed-nofile.so"
BED_DROPIN_PATH = "/etc/systemd/system/opensearch.service.d/zz-mmdeploy-bed.conf"


def install_bed_nofile_shim(container: str) -> None:
    """TEST BED ONLY: put the shim and its drop-in into a bed container (before mmdeploy
    installs OpenSearch there; the drop-in waits for the unit). mmdeploy itself never
    knows about them: on real hosts the open-file limit is simply 65535."""
    shim = bed_nofile_shim()
    for command, stdin in (
        (["docker", "cp", str(shim), f"{container}:{BED_SHIM_PATH}"], None),
        (
            [
                "docker",
                "exec",
                "-i",
                container,
                "sh",
                "-c",
                f"mkdir -p {os.path.dirname(BED_DROPIN_PATH)} && cat > {BED_DROPIN_PATH} && systemctl daemon-reload",
            ],
            BED_NOFILE_DROPIN,
        ),
    ):
        r = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise BuildError(f"bed nofile shim into {container}: {' '.join(command[:3])} failed: {r.stderr.strip()}")


def settings(*sections: str, icu: bool = False) -> dict:
    """overrides() as inventory settings, with the archives as local files (an air-gapped
    site's mirror) instead of a URL served by this process: a bed's inventory holding them
    works on its own, in any later process."""
    result: dict = {}
    for section in sections or tuple(BUILDS):
        path, sha = build(section)
        result[section] = {"url": str(path), "sha256": sha, "version": BUILDS[section].version}
    if icu:
        path, sha = icu_plugin()
        result.setdefault("search", {}).update(icu_url=str(path), icu_sha256=sha)
    return result


# The bed's hosts report the whole machine's memory, which several beds share: small heaps.
BED_SEARCH_HEAP = {"heap_mb": 512, "manager_heap_mb": 256}


def bed_settings(roles: set[str]) -> dict:
    """What a bed whose hosts carry `roles` needs in its inventory for the archives built
    here (so far: search, when it has search hosts)."""
    if "search" not in roles:
        return {}
    found = settings("search", icu=True)
    found["search"].update(BED_SEARCH_HEAP)
    return found


def prepare_bed(hosts: list[tuple[str, list[str]]]) -> None:
    """TEST BED ONLY setup right after the bed's containers start, before any deploy: the
    open-files shim on every host of a bed that has search hosts (the tiebreaker beside two
    search hosts runs OpenSearch on a monitoring or job host). `hosts`: (name, roles)."""
    if not any("search" in roles for _, roles in hosts):
        return
    from mmdeploy import testbed

    for name, _ in hosts:
        install_bed_nofile_shim(testbed.container_name(name))


_served: str | None = None


def base_url() -> str:
    """The build cache served over HTTP on the bed's gateway (the bed must be up), once per process."""
    global _served
    if _served is None:
        from mmdeploy import testbed

        BUILD.mkdir(parents=True, exist_ok=True)
        _served = testbed.serve(BUILD)
    return _served


def url_of(path: Path) -> str:
    return f"{base_url()}/{path.relative_to(BUILD).as_posix()}"


def overrides(*sections: str, icu: bool = False) -> list[str]:
    """Build (if needed), serve from the bed's gateway, and return the `--set` overrides,
    e.g. ["storage.url=http://10.213.9.1:PORT/seaweedfs/4.53/linux_amd64.tar.gz",
    "storage.sha256=...", "storage.version=4.53"]. All three sections by default.
    icu=True adds search.icu_url/search.icu_sha256 for the analysis-icu plugin zip (only for a
    search component that has those settings: unknown keys are refused)."""
    result = []
    for section in sections or tuple(BUILDS):
        path, sha = build(section)
        result += [
            f"{section}.url={url_of(path)}",
            f"{section}.sha256={sha}",
            f"{section}.version={BUILDS[section].version}",
        ]
    if icu:
        path, sha = icu_plugin()
        result += [f"search.icu_url={url_of(path)}", f"search.icu_sha256={sha}"]
    return result


def main(argv: list[str]) -> int:
    sections = argv or list(BUILDS)
    unknown = [s for s in sections if s not in BUILDS]
    if unknown:
        print(f"unknown artifact(s) {', '.join(unknown)}; expected {', '.join(BUILDS)}", file=sys.stderr)
        return 2
    failed = 0
    for section in sections:
        start = time.monotonic()
        try:
            path, sha = build(section)
        except BuildError as e:
            print(f"artifacts: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"artifacts: {section}: {path} sha256 {sha} ({time.monotonic() - start:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
