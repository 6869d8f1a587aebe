"""Artifacts: a name, a version, a URL and a sha256, downloaded once into a cache on the
control machine. A mirror URL or a local path may replace the official URL (air-gapped
sites); the checksum is verified either way, and a cached copy is re-verified before use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import MMDeployError

CACHE = Path(os.environ.get("MMDEPLOY_CACHE", Path.home() / ".cache" / "mmdeploy" / "artifacts"))


class ArtifactError(MMDeployError):
    pass


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    url: str  # http(s)://, file://, or a local path
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(artifact: Artifact, cache: Path | None = None) -> Path:
    """The artifact's file in the local cache, downloaded and verified if not there yet."""
    cache = cache or CACHE
    target = cache / artifact.name / artifact.version / artifact.filename
    if target.exists() and sha256_of(target) == artifact.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if "://" not in artifact.url or artifact.url.startswith("file://"):
                with open(artifact.url.removeprefix("file://"), "rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                with urllib.request.urlopen(artifact.url, timeout=60) as src:
                    shutil.copyfileobj(src, out)
        actual = sha256_of(tmp)
        if actual != artifact.sha256:
            raise ArtifactError(
                f"{artifact.name} {artifact.version}: sha256 mismatch for {artifact.url}: "
                f"expected {artifact.sha256}, got {actual}"
            )
        os.replace(tmp, target)
    except OSError as e:
        raise ArtifactError(f"{artifact.name} {artifact.version}: cannot fetch {artifact.url}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
