"""The stand-in Mattermost release for the test bed (see build.sh and mattermost/): built
once, served over HTTP from the bed's gateway, and handed to the Mattermost component as
`--set` overrides, exactly as an operator points it at a mirror.

VERSION is the default stand-in version; any X.Y.Z builds (11.x refuses MySQL like the real
v11). `license_file()` writes a TEST Enterprise license that only the stand-in accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mmdeploy import testbed
from mmdeploy.releases import DEFAULT_VERSION

HERE = Path(__file__).resolve().parent
DIST = HERE / "dist"
# The default follows mmdeploy's own (releases.DEFAULT_VERSION), so a bed deploys what a
# site gets by default.
VERSION = os.environ.get("MMSTANDIN_VERSION", DEFAULT_VERSION)
LICENSE_KEY = Path(os.environ.get("MMSTANDIN_LICENSE_KEY", HERE / ".license-key.pem"))


def build(version: str = VERSION, broken: bool = False) -> tuple[str, str]:
    """(archive file name, sha256), building the archive if its sources changed. A broken
    release (ping answers 500, the server exits) goes to dist/broken/ under the same name."""
    out = DIST / "broken" if broken else DIST
    subprocess.run(
        ["bash", str(HERE / "build.sh"), version, str(out), *(["--broken"] if broken else [])],
        check=True,
        capture_output=True,
    )
    archive = f"mattermost-{version}-linux-amd64.tar.gz"
    return archive, (out / f"{archive}.sha256").read_text().split()[0]


def overrides(version: str = VERSION, broken: bool = False) -> list[str]:
    """Build, serve on the bed's gateway (the bed must be up), and return the overrides."""
    archive, sha = build(version, broken)
    url = testbed.serve(DIST)
    path = f"broken/{archive}" if broken else archive
    return [f"mattermost.version={version}", f"mattermost.url={url}/{path}", f"mattermost.sha256={sha}"]


def settings(version: str = VERSION) -> dict:
    """Build, and return the inventory settings that point the Mattermost component at the
    archive as a local file (an air-gapped site's mirror), so that an inventory holding them
    works on its own, in any later process."""
    archive, sha = build(version)
    return {"mattermost": {"version": version, "url": str(DIST / archive), "sha256": sha}}


def license_file(path: Path, features: str = "all", days: int = 365) -> Path:
    """Write a TEST license (cluster, elastic_search, ... or 'all') signed with the project's
    test key; the stand-in built from the same checkout accepts it, the real server does not."""
    build()  # makes the key and dist/mklicense
    subprocess.run(
        [
            str(DIST / "mklicense"),
            "-key",
            str(LICENSE_KEY),
            "-out",
            str(path),
            "-features",
            features,
            "-days",
            str(days),
        ],
        check=True,
        capture_output=True,
    )
    return path
