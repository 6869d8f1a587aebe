"""The stand-in Mattermost release for the test bed (see build.sh and mattermost/): built
once, served over HTTP from the bed's gateway, and handed to the Mattermost component as
`--set` overrides, exactly as an operator points it at a mirror."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mmdeploy import testbed

HERE = Path(__file__).resolve().parent
DIST = HERE / "dist"
VERSION = "10.11.4"


def build(version: str = VERSION) -> tuple[str, str]:
    """(archive file name, sha256), building the archive if its sources changed."""
    subprocess.run(["bash", str(HERE / "build.sh"), version, str(DIST)], check=True, capture_output=True)
    archive = f"mattermost-{version}-linux-amd64.tar.gz"
    return archive, (DIST / f"{archive}.sha256").read_text().split()[0]


def overrides(version: str = VERSION) -> list[str]:
    """Build, serve on the bed's gateway (the bed must be up), and return the overrides."""
    archive, sha = build(version)
    url = testbed.serve(DIST)
    return [f"mattermost.version={version}", f"mattermost.url={url}/{archive}", f"mattermost.sha256={sha}"]


def settings(version: str = VERSION) -> dict:
    """Build, and return the inventory settings that point the Mattermost component at the
    archive as a local file (an air-gapped site's mirror), so that an inventory holding them
    works on its own, in any later process."""
    archive, sha = build(version)
    return {"mattermost": {"version": version, "url": str(DIST / archive), "sha256": sha}}
