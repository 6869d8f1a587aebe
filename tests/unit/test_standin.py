"""The TEST STAND-IN Mattermost release (tests/standin/) and Mattermost's own config validator.

The real release tarball cannot be downloaded here and the server is AGPL, so
tests/standin/build.sh builds a stand-in archive with the release layout plus
``configcheck`` (built against Mattermost's Apache-2.0 model package). These
tests build it (when ``go`` is installed), check the archive, the checksum file
and configcheck, and run ``bin/mattermost`` + ``bin/mmctl --local`` against a
local PostgreSQL on 127.0.0.1:5432 when one is reachable (the DB part is
skipped, with the reason, otherwise). All traffic stays on loopback.

DB credentials: $MMDEPLOY_STANDIN_PG_DSN, default
postgres://mmuser:mostest@127.0.0.1:5432/mattermost_test?sslmode=disable
(the stand-in creates its tables there; names used are unique per run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "standin" / "build.sh"
VERSION = "11.1.0"
ARCHIVE = f"mattermost-{VERSION}-linux-amd64.tar.gz"
PG_DSN = os.environ.get(
    "MMDEPLOY_STANDIN_PG_DSN",
    "postgres://mmuser:mostest@127.0.0.1:5432/mattermost_test?sslmode=disable&connect_timeout=5",
)

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed: cannot build the stand-in")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(["bash", str(BUILD), VERSION, str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def install(dist, tmp_path_factory):
    """The archive unpacked as on a host: <dir>/mattermost/{bin,config,...}."""
    d = tmp_path_factory.mktemp("opt")
    with tarfile.open(dist / ARCHIVE) as t:
        t.extractall(d, filter="tar")
    return d / "mattermost"


# ---------- archive and build ----------


def test_archive_has_the_release_layout(dist):
    with tarfile.open(dist / ARCHIVE) as t:
        members = {m.name: m for m in t.getmembers()}
    for f in ["mattermost/bin/mattermost", "mattermost/bin/mmctl", "mattermost/config/config.json",
              "mattermost/i18n/en.json", "mattermost/client/index.html"]:
        assert members[f].isfile(), f
    for f in ["mattermost/bin/mattermost", "mattermost/bin/mmctl"]:
        assert members[f].mode & 0o111, f"{f} is not executable"
    for d in ["mattermost/templates", "mattermost/fonts", "mattermost/client", "mattermost/logs",
              "mattermost/prepackaged_plugins"]:
        assert members[d].isdir(), d
    assert all(n == "mattermost" or n.startswith("mattermost/") for n in members)
    # reproducible: fixed owner and mtime
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


def test_sha256_file_matches_the_archive(dist):
    line = (dist / f"{ARCHIVE}.sha256").read_text()
    digest, name = line.split()
    assert name == ARCHIVE
    assert digest == hashlib.sha256((dist / ARCHIVE).read_bytes()).hexdigest()


def test_rebuild_is_skipped_when_sources_are_unchanged(dist):
    before = (dist / ARCHIVE).stat().st_mtime_ns
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(BUILD), VERSION, str(dist)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
    assert time.monotonic() - t0 < 10
    assert (dist / ARCHIVE).stat().st_mtime_ns == before


def test_archive_is_reproducible(dist, tmp_path):
    r = subprocess.run(["bash", str(BUILD), VERSION, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / f"{ARCHIVE}.sha256").read_text() == (dist / f"{ARCHIVE}.sha256").read_text()


def test_binaries_are_static_and_report_the_version(install):
    head = (install / "bin" / "mattermost").read_bytes()[:4]
    assert head == b"\x7fELF"
    r = subprocess.run([str(install / "bin" / "mattermost"), "version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and f"Version: {VERSION}" in r.stdout
    # no program interpreter = statically linked
    r = subprocess.run(["readelf", "-l", str(install / "bin" / "mattermost")], capture_output=True, text=True)
    if r.returncode == 0:
        assert "INTERP" not in r.stdout


# ---------- configcheck (Mattermost's own model package) ----------


def _check(dist, path, binary="configcheck"):
    return subprocess.run([str(dist / binary), str(path)], capture_output=True, text=True, timeout=30)


def test_configcheck_is_built_against_the_real_model(dist):
    r = subprocess.run([str(dist / "configcheck"), "--model-version"], capture_output=True, text=True)
    assert r.stdout.startswith("github.com/mattermost/mattermost/server/public v0.1.")


def test_configcheck_accepts_the_shipped_default_config(dist, install):
    cfg = install / "config" / "config.json"
    r = _check(dist, cfg)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stdout + r.stderr
    sql = json.loads(cfg.read_text())["SqlSettings"]
    assert sql["DriverName"] == "postgres"
    assert sql["DataSource"].startswith("postgres://") and "@localhost" in sql["DataSource"]


@pytest.mark.parametrize("cfg, why", [
    ({"SqlSettings": {"DriverName": "oracle"}}, "sql_driver"),
    ({"SqlSettings": {"DataSource": ""}}, "sql_data_src"),
    ({"ServiceSettings": {"SiteURL": "not a url"}}, "site_url"),
    ({"ServiceSettings": {"ListenAddress": ""}}, "listen_address"),
])
def test_configcheck_rejects_invalid_configs(dist, tmp_path, cfg, why):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    r = _check(dist, p)
    assert r.returncode == 1
    assert why in r.stdout


def test_configcheck_rejects_broken_json(dist, tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"SqlSettings": ')
    assert _check(dist, p).returncode == 1


def test_mysql_is_valid_only_for_the_v10_model(dist, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"SqlSettings": {
        "DriverName": "mysql",
        "DataSource": "mmuser:pw@tcp(db1:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"}}))
    assert _check(dist, p, "configcheck-v10").returncode == 0
    r = _check(dist, p)  # Mattermost v11 removed MySQL
    assert r.returncode == 1 and "sql_driver" in r.stdout


# ---------- the server against a local PostgreSQL ----------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


class Server:
    def __init__(self, install: Path, tmp: Path, extra_env=None, extra_cfg=None):
        self.port, self.mport = _free_port(), _free_port()
        self.sock = str(tmp / "local.socket")
        cfg = {
            "ServiceSettings": {"SiteURL": f"http://127.0.0.1:{self.port}", "ListenAddress": f"127.0.0.1:{self.port}",
                                "EnableLocalMode": True, "LocalModeSocketLocation": self.sock},
            "SqlSettings": {"DriverName": "postgres", "DataSource": "postgres://nobody:wrong@127.0.0.1:1/none"},
            "MetricsSettings": {"Enable": True, "ListenAddress": f"127.0.0.1:{self.mport}"},
            "FileSettings": {"Directory": str(tmp / "data")},
            "LogSettings": {"EnableFile": False},
        }
        for section, values in (extra_cfg or {}).items():
            cfg.setdefault(section, {}).update(values)
        self.cfg_path = tmp / "config.json"
        self.cfg_path.write_text(json.dumps(cfg))
        # The real DataSource comes from the environment, as operators often do.
        env = dict(os.environ, MM_SQLSETTINGS_DATASOURCE=PG_DSN, MMSTANDIN_DB_PING_INTERVAL_SECONDS="0.2")
        env.update(extra_env or {})
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen([str(install / "bin" / "mattermost"), "--config", str(self.cfg_path)],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        self.install = install

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def mmctl(self, *args):
        env = dict(os.environ, MMCTL_LOCAL_SOCKET_PATH=self.sock)
        return subprocess.run([str(self.install / "bin" / "mmctl"), "--local", *args], capture_output=True,
                              text=True, env=env, timeout=30)


def _http(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# minimal RFC 6455 client: enough for the upgrade, one masked text frame, unmasked replies
def _ws_connect(port, token=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    hdr = (f"GET /api/v4/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if token:
        hdr += f"Authorization: Bearer {token}\r\n"
    s.sendall((hdr + "\r\n").encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(1024)
        assert chunk, "connection closed during the websocket handshake"
        resp += chunk
    head, rest = resp.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert b"Sec-Websocket-Accept: " + accept in head or b"Sec-WebSocket-Accept: " + accept in head
    return s, bytearray(rest)


def _ws_send(s, obj):
    payload = json.dumps(obj).encode()
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _ws_recv(s, buf):
    def need(k):
        while len(buf) < k:
            chunk = s.recv(4096)
            assert chunk, "websocket closed"
            buf.extend(chunk)
    while True:
        need(2)
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        off = 2
        if n == 126:
            need(4)
            n, off = struct.unpack(">H", bytes(buf[2:4]))[0], 4
        elif n == 127:
            need(10)
            n, off = struct.unpack(">Q", bytes(buf[2:10]))[0], 10
        need(off + n)
        payload = bytes(buf[off:off + n])
        del buf[:off + n]
        if op == 1:
            return json.loads(payload)


@pytest.fixture(scope="module")
def pg():
    if not _pg_reachable():
        pytest.skip("no PostgreSQL reachable on 127.0.0.1:5432: the stand-in's database part is not exercised "
                    "(install Debian's postgresql and create role mmuser/mostest with database mattermost_test)")
    return PG_DSN


def test_server_end_to_end_against_postgresql(pg, install, tmp_path):
    srv = Server(install, tmp_path)
    try:
        if not srv.wait_ready():
            log = srv.log.read_text()
            if "password authentication failed" in log or "does not exist" in log:
                pytest.skip(f"PostgreSQL on 127.0.0.1:5432 refused {PG_DSN.split('@')[0].split(':')[1][2:]}: "
                            f"set MMDEPLOY_STANDIN_PG_DSN ({log.splitlines()[-1][:200]})")
            pytest.fail("stand-in did not start:\n" + log)

        status, _, body = _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))
        ping = json.loads(body)
        assert status == 200 and ping["status"] == "OK" and ping["database_status"] == "OK", ping

        suffix = secrets.token_hex(4)
        user, team, pw = f"admin{suffix}", f"team{suffix}", "Sup3r-secret!"
        r = srv.mmctl("user", "create", "--email", f"{user}@example.com", "--username", user, "--password", pw,
                      "--system-admin")
        assert r.returncode == 0 and f"Created user {user}" in r.stdout, r.stderr
        r = srv.mmctl("user", "create", "--email", f"{user}@example.com", "--username", user, "--password", pw)
        assert r.returncode == 1 and "already exists" in r.stderr  # errors exit non-zero, like mmctl
        r = srv.mmctl("team", "create", "--name", team, "--display-name", "Stand-in Team")
        assert r.returncode == 0 and f"New team {team} successfully created" in r.stdout, r.stderr
        r = srv.mmctl("team", "users", "add", team, user)
        assert r.returncode == 0, r.stderr
        r = srv.mmctl("user", "list", "--json")
        assert r.returncode == 0 and any(u["username"] == user for u in json.loads(r.stdout))
        assert "system_admin" in next(u for u in json.loads(r.stdout) if u["username"] == user)["roles"]

        # mmctl's --hashed path: a bcrypt hash replaces the password (how mmdeploy sets it).
        import bcrypt

        hashed = bcrypt.hashpw(b"Hashed-pass-42", bcrypt.gensalt(4)).decode()
        r = srv.mmctl("user", "change-password", user, "--hashed", "--password", hashed)
        assert r.returncode == 0 and f"Password for user {user} successfully changed" in r.stdout, r.stderr
        assert _http("POST", srv.url("/api/v4/users/login"), {"login_id": user, "password": "Hashed-pass-42"})[0] == 200
        assert srv.mmctl("user", "change-password", user, "--hashed", "--password", "plain").returncode == 1
        r = srv.mmctl("user", "change-password", user, "--password", pw)
        assert r.returncode == 0, r.stderr

        status, _, _ = _http("POST", srv.url("/api/v4/users/login"), {"login_id": user, "password": "wrong"})
        assert status == 401
        status, headers, body = _http("POST", srv.url("/api/v4/users/login"), {"login_id": user, "password": pw})
        assert status == 200, body
        token = headers.get("Token")
        assert token and json.loads(body)["username"] == user and "password" not in json.loads(body)
        assert _http("GET", srv.url("/api/v4/users/me"))[0] == 401
        assert json.loads(_http("GET", srv.url("/api/v4/users/me"), token=token)[2])["username"] == user

        status, _, body = _http("GET", srv.url(f"/api/v4/teams/name/{team}"), token=token)
        assert status == 200, body
        team_id = json.loads(body)["id"]
        status, _, body = _http("GET", srv.url(f"/api/v4/teams/{team_id}/channels/name/town-square"), token=token)
        assert status == 200, body
        channel_id = json.loads(body)["id"]

        ws, buf = _ws_connect(srv.port, token)  # Bearer token on the upgrade
        hello = _ws_recv(ws, buf)
        assert hello["event"] == "hello" and hello["data"]["server_version"].startswith(VERSION)

        message = f"stand-in post {suffix}"
        status, _, body = _http("POST", srv.url("/api/v4/posts"), {"channel_id": channel_id, "message": message},
                                token=token)
        assert status == 201, body
        post = json.loads(body)
        assert post["id"] and post["create_at"] > 0 and post["message"] == message
        event = _ws_recv(ws, buf)
        assert event["event"] == "posted" and json.loads(event["data"]["post"])["id"] == post["id"]
        ws.close()

        status, _, body = _http("GET", srv.url(f"/api/v4/posts/{post['id']}"), token=token)
        assert status == 200 and json.loads(body)["message"] == message
        assert _http("GET", srv.url("/api/v4/posts/" + "x" * 26), token=token)[0] == 404

        ws, buf = _ws_connect(srv.port)  # no token: the authentication_challenge action
        _ws_send(ws, {"seq": 1, "action": "authentication_challenge", "data": {"token": token}})
        first, second = _ws_recv(ws, buf), _ws_recv(ws, buf)
        assert first == {"status": "OK", "seq_reply": 1}
        assert second["event"] == "hello"
        ws.close()

        with urllib.request.urlopen(f"http://127.0.0.1:{srv.mport}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        for name in ["mattermost_http_requests_total", "mattermost_db_master_connections_total",
                     "mattermost_post_total", "mattermost_login_logins_total"]:
            assert f"\n{name} " in metrics, name
        assert "\nmattermost_post_total 1\n" in metrics
    finally:
        rc = srv.stop()
    assert rc == 0, srv.log.read_text()  # SIGTERM: clean shutdown
    assert not Path(srv.sock).exists()


def test_posts_are_read_through_replicas(pg, install, tmp_path):
    # Two "replicas": one is the same database (reachable), one refuses connections.
    # Set as MM_SQLSETTINGS_DATASOURCEREPLICAS: a []string override is space-separated.
    srv = Server(install, tmp_path, extra_env={
        "MM_SQLSETTINGS_DATASOURCEREPLICAS": f"{PG_DSN} postgres://mmuser:x@127.0.0.1:1/none?sslmode=disable"})
    try:
        assert srv.wait_ready(), srv.log.read_text()
        suffix = secrets.token_hex(4)
        user, team, pw = f"reader{suffix}", f"rteam{suffix}", "Sup3r-secret!"
        assert srv.mmctl("user", "create", "--email", f"{user}@example.com", "--username", user,
                         "--password", pw).returncode == 0
        assert srv.mmctl("team", "create", "--name", team, "--display-name", "R").returncode == 0
        assert srv.mmctl("team", "users", "add", team, user).returncode == 0
        _, headers, _ = _http("POST", srv.url("/api/v4/users/login"), {"login_id": user, "password": pw})
        token = headers["Token"]
        team_id = json.loads(_http("GET", srv.url(f"/api/v4/teams/name/{team}"), token=token)[2])["id"]
        ch = json.loads(_http("GET", srv.url(f"/api/v4/teams/{team_id}/channels/name/off-topic"), token=token)[2])
        post = json.loads(_http("POST", srv.url("/api/v4/posts"), {"channel_id": ch["id"], "message": "r"},
                                token=token)[2])
        sources = []
        for _ in range(3):
            status, headers, _ = _http("GET", srv.url(f"/api/v4/posts/{post['id']}"), token=token)
            assert status == 200
            sources.append(headers.get("X-Standin-Read-From"))
        # the dead replica is out of rotation, so reads go to the live replica
        assert sources == ["replica0"] * 3
        assert "Read replica is unreachable" in srv.log.read_text()
    finally:
        srv.stop()


def test_refuses_to_start_on_bad_sql_settings(pg, install, tmp_path):
    srv = Server(install, tmp_path, extra_env={"MM_SQLSETTINGS_DRIVERNAME": "oracle"})
    assert srv.proc.wait(timeout=10) != 0
    log = srv.log.read_text()
    assert "refusing to start" in log and "DriverName" in log
    srv2 = Server(install, tmp_path, extra_env={"MM_SQLSETTINGS_DATASOURCE": ""})
    assert srv2.proc.wait(timeout=10) != 0
    assert "DataSource is empty" in srv2.log.read_text()


def test_version_11_refuses_mysql_like_the_real_server(install, tmp_path):
    srv = Server(install, tmp_path, extra_env={
        "MM_SQLSETTINGS_DRIVERNAME": "mysql",
        "MM_SQLSETTINGS_DATASOURCE": "mmuser:pw@tcp(127.0.0.1:1)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"})
    assert srv.proc.wait(timeout=10) == 1
    assert "mysql is not supported by Mattermost 11" in srv.log.read_text()


def test_gives_up_after_retries_when_the_database_is_unreachable(install, tmp_path):
    srv = Server(install, tmp_path, extra_env={
        "MM_SQLSETTINGS_DATASOURCE": "postgres://mmuser:pw@127.0.0.1:1/mattermost?sslmode=disable&connect_timeout=1"})
    assert srv.proc.wait(timeout=30) == 1
    log = srv.log.read_text()
    assert log.count("Failed to ping DB") == 4 and "after 5 attempts" in log
    assert ":pw@" not in log  # the password is redacted
