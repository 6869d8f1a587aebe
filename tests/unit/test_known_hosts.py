"""remote._known_keys: the keys a known_hosts file holds for one host, as OpenSSH writes the
file (plain names, `[host]:port`, comma lists, hashed names, comments and markers), read
once per process and again when the file changes. Real keys, generated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import paramiko
import pytest

from mmdeploy import remote


def hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.fixture
def keys():
    return {name: paramiko.ECDSAKey.generate() for name in ("a", "b", "c", "d")}


def line(names: str, key) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def test_picks_only_the_hosts_own_keys(tmp_path, keys):
    f = tmp_path / "known_hosts"
    f.write_text(
        "# a comment\n"
        + line("10.0.0.1", keys["a"])
        + line("10.0.0.10,db1", keys["b"])  # a name that starts like the other is not it
        + line("[10.0.0.1]:2222", keys["c"])  # the same address on another port
        + line(hashed("10.0.0.2"), keys["d"])
        + "10.0.0.1 ssh-ed25519 not-base64!!\n"  # unreadable: skipped, as OpenSSH does
        + "@revoked 10.0.0.1 "
        + keys["b"].get_name()
        + " "
        + keys["b"].get_base64()
        + "\n"
    )
    assert [k.asbytes() for _, k in remote._known_keys(f, "10.0.0.1")] == [keys["a"].asbytes()]
    assert [k.asbytes() for _, k in remote._known_keys(f, "db1")] == [keys["b"].asbytes()]
    assert [k.asbytes() for _, k in remote._known_keys(f, "[10.0.0.1]:2222")] == [keys["c"].asbytes()]
    assert [k.asbytes() for _, k in remote._known_keys(f, "10.0.0.2")] == [keys["d"].asbytes()]
    assert remote._known_keys(f, "10.0.0.3") == []
    assert remote._known_keys(tmp_path / "absent", "10.0.0.1") == []
    assert remote._known_keys(None, "10.0.0.1") == []


def test_a_changed_file_is_read_again(tmp_path, keys):
    f = tmp_path / "known_hosts"
    f.write_text(line("10.0.0.1", keys["a"]))
    assert [k.asbytes() for _, k in remote._known_keys(f, "10.0.0.1")] == [keys["a"].asbytes()]
    f.write_text(line("10.0.0.1", keys["b"]) + line("10.0.0.9", keys["c"]))  # ssh-keygen -R, keyscan
    assert [k.asbytes() for _, k in remote._known_keys(f, "10.0.0.1")] == [keys["b"].asbytes()]


def test_the_file_is_parsed_once_for_many_hosts(tmp_path, keys, monkeypatch):
    f = tmp_path / "known_hosts"
    f.write_text("".join(line(f"10.0.1.{i}", keys["abcd"[i % 4]]) for i in range(50)))
    reads = []
    real = type(f).read_text
    monkeypatch.setattr(type(f), "read_text", lambda self, *a, **k: reads.append(self) or real(self, *a, **k))
    for i in range(50):
        ((_, key),) = remote._known_keys(f, f"10.0.1.{i}")
        assert key.asbytes() == keys["abcd"[i % 4]].asbytes()
    assert reads == [f]
