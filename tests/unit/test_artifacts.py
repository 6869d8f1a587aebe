"""Artifacts (download once, verify sha256), the release unpack op and the JSON-merge op."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from mmdeploy.artifacts import Artifact, ArtifactError, fetch
from mmdeploy.facts import FactCache
from mmdeploy.ops import JsonSettings, Unpacked

from .localremote import LocalRemote


def make_tarball(path: Path, files: dict[str, str]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_verifies_and_caches(tmp_path):
    src = tmp_path / "rel-1.0.tar.gz"
    sha = make_tarball(src, {"rel/bin/x": "x"})
    art = Artifact("rel", "1.0", f"file://{src}", sha)
    cached = fetch(art, tmp_path / "cache")
    assert cached == tmp_path / "cache/rel/1.0/rel-1.0.tar.gz" and cached.read_bytes() == src.read_bytes()
    src.unlink()
    assert fetch(art, tmp_path / "cache") == cached  # from the cache, source gone


def test_fetch_refuses_a_wrong_checksum(tmp_path):
    src = tmp_path / "rel.tar.gz"
    make_tarball(src, {"a": "b"})
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch(Artifact("rel", "1", str(src), "0" * 64), tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))
    with pytest.raises(ArtifactError, match="cannot fetch"):
        fetch(Artifact("rel", "1", str(tmp_path / "missing.tar.gz"), "0" * 64), tmp_path / "cache")


def test_unpacked_installs_once(tmp_path, monkeypatch):
    src = tmp_path / "mattermost-1.0-linux-amd64.tar.gz"
    sha = make_tarball(src, {"mattermost/bin/mattermost": "#!/bin/sh\n", "mattermost/i18n/en.json": "{}"})
    monkeypatch.setattr("mmdeploy.ops.archive.fetch", lambda artifact: src)
    remote = LocalRemote(None)
    remote.put = lambda local, path: Path(path).write_bytes(Path(local).read_bytes())
    dest = tmp_path / "releases" / "1.0"
    dest.parent.mkdir()
    step = Unpacked(Artifact("mattermost", "1.0", "https://x/" + src.name, sha), str(dest), owner="root")
    cache = FactCache(remote)
    change = step.check(cache.get(step.facts()))
    assert change.summary.startswith("unpack mattermost-1.0-linux-amd64.tar.gz")
    step.apply(remote, change)
    assert (dest / "bin" / "mattermost").exists() and (dest / "i18n" / "en.json").exists()
    cache.invalidate()
    assert step.check(cache.get(step.facts())) is None


def test_json_settings_merges_and_keeps_foreign_keys(tmp_path):
    import getpass

    me = getpass.getuser()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ServiceSettings": {"SiteURL": "http://old", "Extra": 1}, "Other": True}))
    step = JsonSettings(str(path), {"ServiceSettings": {"SiteURL": "https://new"}}, owner=me, group=me)
    remote = LocalRemote(None)
    cache = FactCache(remote)
    change = step.check(cache.get(step.facts()))
    assert change.summary == "update keys"
    assert '-    "SiteURL": "http://old"' in change.diff and '+    "SiteURL": "https://new"' in change.diff
    step.apply(remote, change)
    assert json.loads(path.read_text()) == {"ServiceSettings": {"SiteURL": "https://new", "Extra": 1}, "Other": True}
    # The server adding keys of its own does not make the next run change anything.
    data = json.loads(path.read_text())
    data["ServiceSettings"]["AddedByServer"] = "x"
    path.write_text(json.dumps(data))
    cache.invalidate()
    assert step.check(cache.get(step.facts())) is None
