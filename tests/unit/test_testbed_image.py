"""The bed's images per Debian suite (mmdeploy/testbed/image.py): names, the mirror taken
from the control machine's own apt sources, and the sources a suite's image gets."""

import pytest

from mmdeploy.testbed import image
from mmdeploy.testbed.config import TestbedError


def test_an_image_per_suite():
    assert image.image_for("bookworm") == image.IMAGE == "mmdeploy-bed:bookworm"
    assert image.image_for("trixie") == "mmdeploy-bed:trixie"
    with pytest.raises(TestbedError, match="unknown test-bed distribution 'sid'"):
        image.image_for("sid")


def test_mirror_from_the_control_machines_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("MMDEPLOY_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (tmp_path / "sources.list.d" / "other.list").write_text("deb https://packages.invalid/apt cloud-sdk main\n")
    assert image.mirrors(tmp_path) == ("http://mirror.invalid/debian", "http://mirror.invalid/debian-security")


def test_a_trixie_image_uses_trixie_on_the_same_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("MMDEPLOY_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    root = tmp_path / "rootfs"
    for d in ("etc/ssl/certs", "var/cache/apt", "var/lib/apt/lists", "var/lib/dbus"):
        (root / d).mkdir(parents=True)
    monkeypatch.setattr(image.shutil, "copyfile", lambda src, dst: open(dst, "w").close())
    image._prepare_rootfs(root, "trixie")
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://mirror.invalid/debian trixie main\n"
        "deb http://mirror.invalid/debian trixie-updates main\n"
        "deb http://mirror.invalid/debian-security trixie-security main\n"
    )
