"""The TEST STAND-IN Mattermost release (tests/standin/) and Mattermost's own config validator.

The real release tarball cannot be downloaded here and the server is AGPL, so
tests/standin/build.sh builds a stand-in archive with the release layout plus
``configcheck`` (built against Mattermost's Apache-2.0 model package). These
tests build it (when ``go`` is installed), check the archive, the checksum file
and configcheck, and run ``bin/mattermost`` + ``bin/mmctl --local`` against a
local PostgreSQL on 127.0.0.1:5432 when one is reachable (the DB part is
skipped, with the reason, otherwise). All traffic stays on loopback.

The database is a private PostgreSQL started for these tests (tests/standin/services.py:
initdb in a temporary directory, a free loopback port; Debian's postgresql is installed
first when it is missing and we are root, as in CI); each test gets a database of its own.
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
LICENSE_KEY = Path(os.environ.get("MMSTANDIN_LICENSE_KEY", ROOT / "tests" / "standin" / ".license-key.pem"))

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
    for f in [
        "mattermost/bin/mattermost",
        "mattermost/bin/mmctl",
        "mattermost/config/config.json",
        "mattermost/i18n/en.json",
        "mattermost/client/index.html",
    ]:
        assert members[f].isfile(), f
    for f in ["mattermost/bin/mattermost", "mattermost/bin/mmctl"]:
        assert members[f].mode & 0o111, f"{f} is not executable"
    for d in [
        "mattermost/templates",
        "mattermost/fonts",
        "mattermost/client",
        "mattermost/logs",
        "mattermost/prepackaged_plugins",
    ]:
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
    r = subprocess.run(["bash", str(BUILD), VERSION, str(dist)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
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


@pytest.mark.parametrize(
    "cfg, why",
    [
        ({"SqlSettings": {"DriverName": "oracle"}}, "sql_driver"),
        ({"SqlSettings": {"DataSource": ""}}, "sql_data_src"),
        ({"ServiceSettings": {"SiteURL": "not a url"}}, "site_url"),
        ({"ServiceSettings": {"ListenAddress": ""}}, "listen_address"),
    ],
)
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
    p.write_text(
        json.dumps(
            {
                "SqlSettings": {
                    "DriverName": "mysql",
                    "DataSource": "mmuser:pw@tcp(db1:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s",
                }
            }
        )
    )
    assert _check(dist, p, "configcheck-v10").returncode == 0
    r = _check(dist, p)  # Mattermost v11 removed MySQL
    assert r.returncode == 1 and "sql_driver" in r.stdout


# ---------- the server against a local PostgreSQL ----------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, install: Path, tmp: Path, extra_env=None, extra_cfg=None, dsn=None):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port, self.mport = _free_port(), _free_port()
        self.sock = str(tmp / "local.socket")
        cfg = {
            "ServiceSettings": {
                "SiteURL": f"http://127.0.0.1:{self.port}",
                "ListenAddress": f"127.0.0.1:{self.port}",
                "EnableLocalMode": True,
                "LocalModeSocketLocation": self.sock,
            },
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
        env = dict(
            os.environ,
            MM_SQLSETTINGS_DATASOURCE=dsn or "postgres://nobody:x@127.0.0.1:1/none",
            MMSTANDIN_DB_PING_INTERVAL_SECONDS="0.2",
            MMSTANDIN_CLUSTER_DISCOVERY_SECONDS="0.5",
        )
        env.update(extra_env or {})
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen(
            [str(install / "bin" / "mattermost"), "--config", str(self.cfg_path)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
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
        return subprocess.run(
            [str(self.install / "bin" / "mmctl"), "--local", *args], capture_output=True, text=True, env=env, timeout=30
        )


def _http(method, url, body=None, token=None, raw=None, ctype="application/json"):
    data = json.dumps(body).encode() if body is not None else raw
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", ctype)
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
    hdr = (
        f"GET /api/v4/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
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
        payload = bytes(buf[off : off + n])
        del buf[: off + n]
        if op == 1:
            return json.loads(payload)


@pytest.fixture(scope="module")
def pgserver(tmp_path_factory):
    from tests.standin.services import PrivatePostgres

    try:
        srv = PrivatePostgres()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot start a private PostgreSQL for the stand-in's database tests: {e}")
    yield srv
    srv.stop()


@pytest.fixture
def pg(pgserver):
    """A fresh database of the private PostgreSQL (its DSN)."""
    return pgserver.database()


def test_server_end_to_end_against_postgresql(pg, install, tmp_path):
    srv = Server(install, tmp_path, dsn=pg)
    try:
        assert srv.wait_ready(), srv.log.read_text()

        status, _, body = _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))
        ping = json.loads(body)
        assert status == 200 and ping["status"] == "OK" and ping["database_status"] == "OK", ping

        suffix = secrets.token_hex(4)
        user, team, pw = f"admin{suffix}", f"team{suffix}", "Sup3r-secret!"
        r = srv.mmctl(
            "user", "create", "--email", f"{user}@example.com", "--username", user, "--password", pw, "--system-admin"
        )
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
        status, _, body = _http(
            "POST", srv.url("/api/v4/posts"), {"channel_id": channel_id, "message": message}, token=token
        )
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
        for name in [
            "mattermost_http_requests_total",
            "mattermost_db_master_connections_total",
            "mattermost_post_total",
            "mattermost_login_logins_total",
        ]:
            assert f"\n{name} " in metrics, name
        assert "\nmattermost_post_total 1\n" in metrics
    finally:
        rc = srv.stop()
    assert rc == 0, srv.log.read_text()  # SIGTERM: clean shutdown
    assert not Path(srv.sock).exists()


def test_posts_are_read_through_replicas(pg, install, tmp_path):
    # Two "replicas": one is the same database (reachable), one refuses connections.
    # Set as MM_SQLSETTINGS_DATASOURCEREPLICAS: a []string override is space-separated.
    srv = Server(
        install,
        tmp_path,
        dsn=pg,
        extra_env={"MM_SQLSETTINGS_DATASOURCEREPLICAS": f"{pg} postgres://mmuser:x@127.0.0.1:1/none?sslmode=disable"},
        extra_cfg={"ServiceSettings": {"LicenseFileLocation": str(_license(tmp_path, "none"))}},
    )
    try:
        assert srv.wait_ready(), srv.log.read_text()
        suffix = secrets.token_hex(4)
        user, team, pw = f"reader{suffix}", f"rteam{suffix}", "Sup3r-secret!"
        assert (
            srv.mmctl(
                "user", "create", "--email", f"{user}@example.com", "--username", user, "--password", pw
            ).returncode
            == 0
        )
        assert srv.mmctl("team", "create", "--name", team, "--display-name", "R").returncode == 0
        assert srv.mmctl("team", "users", "add", team, user).returncode == 0
        _, headers, _ = _http("POST", srv.url("/api/v4/users/login"), {"login_id": user, "password": pw})
        token = headers["Token"]
        team_id = json.loads(_http("GET", srv.url(f"/api/v4/teams/name/{team}"), token=token)[2])["id"]
        ch = json.loads(_http("GET", srv.url(f"/api/v4/teams/{team_id}/channels/name/off-topic"), token=token)[2])
        post = json.loads(
            _http("POST", srv.url("/api/v4/posts"), {"channel_id": ch["id"], "message": "r"}, token=token)[2]
        )
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
    srv = Server(install, tmp_path, dsn=pg, extra_env={"MM_SQLSETTINGS_DRIVERNAME": "oracle"})
    assert srv.proc.wait(timeout=10) != 0
    log = srv.log.read_text()
    assert "refusing to start" in log and "DriverName" in log
    srv2 = Server(install, tmp_path, dsn=pg, extra_env={"MM_SQLSETTINGS_DATASOURCE": ""})
    assert srv2.proc.wait(timeout=10) != 0
    assert "DataSource is empty" in srv2.log.read_text()


def test_version_11_refuses_mysql_like_the_real_server(install, tmp_path):
    srv = Server(
        install,
        tmp_path,
        extra_env={
            "MM_SQLSETTINGS_DRIVERNAME": "mysql",
            "MM_SQLSETTINGS_DATASOURCE": "mmuser:pw@tcp(127.0.0.1:1)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s",
        },
    )
    assert srv.proc.wait(timeout=10) == 1
    assert "mysql is not supported by Mattermost 11" in srv.log.read_text()


def test_gives_up_after_retries_when_the_database_is_unreachable(install, tmp_path):
    srv = Server(
        install,
        tmp_path,
        extra_env={
            "MM_SQLSETTINGS_DATASOURCE": "postgres://mmuser:pw@127.0.0.1:1/mattermost?sslmode=disable&connect_timeout=1"
        },
    )
    assert srv.proc.wait(timeout=30) == 1
    log = srv.log.read_text()
    assert log.count("Failed to ping DB") == 4 and "after 5 attempts" in log
    assert ":pw@" not in log  # the password is redacted


# ---------- licenses, cluster, files, push, schema (all against the private PostgreSQL) ----------

_DIST = {}


@pytest.fixture(scope="module", autouse=True)
def _remember_dist(dist):
    _DIST["dir"] = dist


def _license(tmp: Path, features="all", days=365, name="mattermost.mattermost-license") -> Path:
    """A TEST license signed with the project's key (dist/mklicense)."""
    path = tmp / name
    tmp.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [
            str(_DIST["dir"] / "mklicense"),
            "-key",
            str(LICENSE_KEY),
            "-out",
            str(path),
            "-features",
            features,
            "-days",
            str(days),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return path


def _ws_try_recv(s, buf, timeout):
    """The next text frame, or None when nothing arrives in time."""
    s.settimeout(timeout)
    try:
        return _ws_recv(s, buf)
    except (socket.timeout, TimeoutError):
        return None
    finally:
        s.settimeout(10)


def _admin_and_channel(srv, prefix="u"):
    """A system admin in a team, logged in: (token, user id, team id, town-square channel id)."""
    suffix = secrets.token_hex(3)
    user, team, pw = f"{prefix}{suffix}", f"t{suffix}", "Sup3r-secret!"
    assert (
        srv.mmctl(
            "user", "create", "--email", f"{user}@example.com", "--username", user, "--password", pw, "--system-admin"
        ).returncode
        == 0
    )
    assert srv.mmctl("team", "create", "--name", team, "--display-name", "T").returncode == 0
    assert srv.mmctl("team", "users", "add", team, user).returncode == 0
    return _login(srv, user, pw) + (team,)


def _login(srv, user, pw, device_id=None):
    body = {"login_id": user, "password": pw}
    if device_id:
        body["device_id"] = device_id
    status, headers, body = _http("POST", srv.url("/api/v4/users/login"), body)
    assert status == 200, body
    token, uid = headers["Token"], json.loads(body)["id"]
    return token, uid


def _town_square(srv, token, team):
    status, _, body = _http("GET", srv.url(f"/api/v4/teams/name/{team}/channels/name/town-square"), token=token)
    assert status == 200, body
    c = json.loads(body)
    return c["team_id"], c["id"]


def _cluster_cfg(name, gossip_port, lic=None):
    cfg = {
        "ClusterSettings": {
            "Enable": True,
            "ClusterName": name,
            "GossipPort": gossip_port,
            "AdvertiseAddress": "127.0.0.1",
            "BindAddress": "127.0.0.1",
            "UseIPAddress": True,
        }
    }
    if lic:
        cfg["ServiceSettings"] = {"LicenseFileLocation": str(lic)}
    return cfg


def _node(install, tmp, dsn, name, lic=None):
    from tests.standin.services import free_port

    srv = Server(install, tmp, dsn=dsn, extra_cfg=_cluster_cfg(name, free_port(), lic))
    assert srv.wait_ready(), srv.log.read_text()
    return srv


def _posted_crosses(a, b, token, channel_id, wait=4.0):
    """Post through node a; the `posted` event seen by a websocket client on node b, or None."""
    ws, buf = _ws_connect(b.port, token)
    try:
        assert _ws_recv(ws, buf)["event"] == "hello"
        msg = f"cross-node {secrets.token_hex(4)}"
        status, _, body = _http("POST", a.url("/api/v4/posts"), {"channel_id": channel_id, "message": msg}, token=token)
        assert status == 201, body
        ev = _ws_try_recv(ws, buf, wait)
        return ev if ev and ev.get("event") == "posted" and json.loads(ev["data"]["post"])["message"] == msg else None
    finally:
        ws.close()


def _wait(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return pred()


def test_two_licensed_nodes_form_a_cluster_and_share_websocket_events(pg, install, tmp_path):
    lic = _license(tmp_path)
    a = _node(install, tmp_path / "a", pg, "mm-test", lic)
    b = _node(install, tmp_path / "b", pg, "mm-test", lic)
    try:
        token, _, team = _admin_and_channel(a)
        _, channel = _town_square(a, token, team)

        def status():
            s, _, body = _http("GET", a.url("/api/v4/cluster/status"), token=token)
            assert s == 200, body
            infos = json.loads(body)
            return infos if len(infos) == 2 else None

        infos = _wait(status)
        assert infos, "the two nodes did not find each other"
        assert {tuple(sorted(i)) for i in infos} == {
            ("config_hash", "hostname", "id", "ipaddress", "schema_version", "version")
        }
        assert all(len(i["id"]) == 26 and i["version"] == VERSION and i["schema_version"] == "11.1.0" for i in infos)
        # same settings on both nodes (only their ports differ... which are part of the config): hashes are per config
        rows = None
        import psycopg

        with psycopg.connect(pg.replace("&connect_timeout=5", "")) as conn:
            rows = conn.execute(
                "SELECT type, clustername, hostname, gossipport, lastpingat FROM clusterdiscovery"
            ).fetchall()
        assert len(rows) == 2 and {r[0] for r in rows} == {"mattermost_app"} and {r[1] for r in rows} == {"mm-test"}
        assert all(r[2] == "127.0.0.1" and r[4] > 0 for r in rows), rows

        s, _, body = _http("GET", b.url("/api/v4/license/client?format=old"), token=token)
        assert s == 200 and json.loads(body)["IsLicensed"] == "true" and json.loads(body)["Cluster"] == "true"
        s, _, body = _http("GET", b.url("/api/v4/license/client?format=old"))
        assert json.loads(body)["IsLicensed"] == "true" and "Id" not in json.loads(body)  # sanitized without a session

        ev = _posted_crosses(a, b, token, channel)
        assert ev is not None, (
            "a post made on node A did not reach a websocket client on node B\n" + b.log.read_text()[-2000:]
        )
        assert ev["broadcast"]["channel_id"] == channel
        assert _posted_crosses(b, a, token, channel) is not None
    finally:
        a.stop()
        rc = b.stop()
    assert rc == 0
    with psycopg.connect(pg.replace("&connect_timeout=5", "")) as conn:  # each node removed its row
        assert conn.execute("SELECT count(*) FROM clusterdiscovery").fetchone()[0] == 0


@pytest.mark.parametrize("case", ["no-license", "cluster-name-differs", "license-without-cluster"])
def test_websocket_events_do_not_cross_nodes_when_ha_is_not_in_force(case, pgserver, install, tmp_path):
    pg = pgserver.database()
    lic = None
    if case == "cluster-name-differs":
        lic = _license(tmp_path)
    elif case == "license-without-cluster":
        lic = _license(tmp_path, "elastic_search")
    a = _node(install, tmp_path / "a", pg, "mm-test", lic)
    b = _node(install, tmp_path / "b", pg, "mm-other" if case == "cluster-name-differs" else "mm-test", lic)
    try:
        token, _, team = _admin_and_channel(a)
        _, channel = _town_square(a, token, team)
        time.sleep(2)  # several discovery rounds
        assert _posted_crosses(a, b, token, channel, wait=3) is None
        s, _, body = _http("GET", a.url("/api/v4/cluster/status"), token=token)
        infos = json.loads(body)
        if case == "cluster-name-differs":
            assert len(infos) == 1  # a cluster of one
        else:
            assert infos == []
            assert "cluster mode is inactive" in a.log.read_text()
        s, _, body = _http("GET", a.url("/api/v4/license/client?format=old"), token=token)
        assert json.loads(body)["IsLicensed"] == ("false" if case == "no-license" else "true")
        if case == "no-license":
            assert "No license: Enterprise features are inactive" in a.log.read_text()
    finally:
        a.stop()
        b.stop()


def test_a_license_signed_by_another_key_is_refused(pg, install, tmp_path):
    import base64 as b64

    lic = _license(tmp_path)
    raw = bytearray(b64.b64decode(lic.read_text()))
    raw[-1] ^= 0xFF  # break the signature
    lic.write_text(b64.b64encode(bytes(raw)).decode())
    a = _node(install, tmp_path / "a", pg, "mm-test", lic)
    try:
        token, _, _ = _admin_and_channel(a)
        s, _, body = _http("GET", a.url("/api/v4/license/client?format=old"), token=token)
        assert json.loads(body) == {"IsLicensed": "false"}
        log = a.log.read_text()
        assert "appears to be invalid" in log and "invalid signature" in log
    finally:
        a.stop()


def test_client_bootstrap_files_push_and_logout(pg, install, tmp_path):
    import http.server
    import threading

    received = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status":"OK"}')

        def log_message(self, *a):
            pass

    proxy = http.server.HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    srv = Server(
        install,
        tmp_path,
        dsn=pg,
        extra_cfg={
            "EmailSettings": {
                "SendPushNotifications": True,
                "PushNotificationServer": f"http://127.0.0.1:{proxy.server_port}",
            }
        },
    )
    try:
        assert srv.wait_ready(), srv.log.read_text()
        token, uid, team = _admin_and_channel(srv)
        team_id, channel = _town_square(srv, token, team)
        # a second user, on a phone
        assert (
            srv.mmctl(
                "user",
                "create",
                "--email",
                "phone@example.com",
                "--username",
                "phoneuser",
                "--password",
                "Sup3r-secret!",
            ).returncode
            == 0
        )
        assert srv.mmctl("team", "users", "add", team, "phoneuser").returncode == 0
        ptoken, puid = _login(srv, "phoneuser", "Sup3r-secret!", device_id="android_rn:device-token-1")

        s, _, body = _http("GET", srv.url("/api/v4/users/me/teams"), token=token)
        assert s == 200 and [t["name"] for t in json.loads(body)] == [team]
        s, _, body = _http("GET", srv.url(f"/api/v4/users/{uid}/teams/members"), token=token)
        assert s == 200 and json.loads(body)[0]["team_id"] == team_id and json.loads(body)[0]["user_id"] == uid
        s, _, body = _http("GET", srv.url(f"/api/v4/users/me/teams/{team_id}/channels"), token=token)
        assert s == 200 and {c["name"] for c in json.loads(body)} == {"town-square", "off-topic"}
        s, _, body = _http("GET", srv.url(f"/api/v4/users/{puid}/teams"), token=ptoken)
        assert s == 200
        assert _http("GET", srv.url(f"/api/v4/users/{uid}/teams"), token=ptoken)[0] == 403
        s, h, body = _http("GET", srv.url(f"/api/v4/users/{uid}/image"), token=token)
        assert s == 200 and body[:4] == b"\x89PNG"

        # a file through POST /api/v4/files, attached to a post
        boundary = "----standin" + secrets.token_hex(8)
        content = b"hello from the stand-in\n" * 10
        form = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="channel_id"\r\n\r\n{channel}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="notes.txt"\r\n'
                f"Content-Type: text/plain\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        s, _, body = _http(
            "POST", srv.url("/api/v4/files"), raw=form, token=token, ctype=f"multipart/form-data; boundary={boundary}"
        )
        assert s == 201, body
        info = json.loads(body)["file_infos"][0]
        assert len(info["id"]) == 26 and info["name"] == "notes.txt" and info["size"] == len(content)
        s, _, body = _http(
            "POST",
            srv.url("/api/v4/posts"),
            {"channel_id": channel, "message": "see the file @phoneuser", "file_ids": [info["id"]]},
            token=token,
        )
        assert s == 201, body
        post = json.loads(body)
        assert post["file_ids"] == [info["id"]] and post["metadata"]["files"][0]["post_id"] == post["id"]
        s, h, body = _http("GET", srv.url(f"/api/v4/files/{info['id']}"), token=ptoken)  # a channel member
        assert s == 200 and body == content and "notes.txt" in h["Content-Disposition"]
        s, _, body = _http("GET", srv.url(f"/api/v4/files/{info['id']}/info"), token=token)
        assert s == 200 and json.loads(body)["post_id"] == post["id"]
        stored = list((tmp_path / "data").rglob("notes.txt"))
        assert len(stored) == 1 and stored[0].read_bytes() == content
        assert f"/channels/{channel}/users/{uid}/{info['id']}/" in str(stored[0])

        # the push proxy got the real PushNotification JSON for the mention
        assert _wait(lambda: received, 10), srv.log.read_text()[-2000:]
        path, pn = received[0]
        assert path == "/api/v1/send_push"
        assert (pn["platform"], pn["device_id"], pn["post_id"], pn["channel_id"], pn["type"], pn["version"]) == (
            "android_rn",
            "device-token-1",
            post["id"],
            channel,
            "message",
            "v2",
        )
        assert pn["sender_id"] == uid and "see the file" in pn["message"] and len(pn["ack_id"]) == 26

        # a reply, and the channel's posts as the real PostList
        s, _, body = _http(
            "POST",
            srv.url("/api/v4/posts"),
            {"channel_id": channel, "message": "reply", "root_id": post["id"]},
            token=ptoken,
        )
        assert s == 201 and json.loads(body)["root_id"] == post["id"]
        s, _, body = _http("GET", srv.url(f"/api/v4/channels/{channel}/posts?page=0&per_page=1"), token=token)
        pl = json.loads(body)
        assert s == 200 and len(pl["order"]) == 1 and set(pl["posts"]) == set(pl["order"])
        s, _, body = _http("GET", srv.url(f"/api/v4/channels/{channel}/posts?since={post['create_at']}"), token=token)
        assert [json.loads(body)["posts"][i]["message"] for i in json.loads(body)["order"]] == ["reply"]
        s, _, body = _http(
            "POST", srv.url(f"/api/v4/teams/{team_id}/posts/search"), {"terms": "SEE file"}, token=ptoken
        )
        assert s == 200 and json.loads(body)["order"] == [post["id"]]

        # a later device registration moves the device to the new session; logout ends a session
        s, _, _ = _http("PUT", srv.url("/api/v4/users/sessions/device"), {"device_id": "apple:tok-2"}, token=ptoken)
        assert s == 200
        s, _, _ = _http("POST", srv.url("/api/v4/users/logout"), {}, token=ptoken)
        assert s == 200
        assert _http("GET", srv.url("/api/v4/users/me"), token=ptoken)[0] == 401
    finally:
        srv.stop()
        proxy.shutdown()


def _count_jobs(dsn):
    import psycopg

    with psycopg.connect(dsn.replace("&connect_timeout=5", "")) as conn:
        return conn.execute("SELECT count(*) FROM jobs WHERE type = 'standin_heartbeat'").fetchone()[0]


def _start_with_config_dsn(install, tmp, dsn, env=None):
    """A server whose DataSource is in its config file (no MM_SQLSETTINGS_DATASOURCE override)."""
    srv = Server(install, tmp, dsn=dsn, extra_env=env, extra_cfg={"SqlSettings": {"DataSource": dsn}})
    srv.proc.kill()
    srv.proc.wait()
    penv = {k: v for k, v in srv_env(env).items() if k != "MM_SQLSETTINGS_DATASOURCE"}
    srv.proc = subprocess.Popen(
        [str(install / "bin" / "mattermost"), "--config", str(srv.cfg_path)],
        stdout=srv.log.open("a"),
        stderr=subprocess.STDOUT,
        env=penv,
    )
    assert srv.wait_ready(), srv.log.read_text()
    return srv


def srv_env(extra):
    return dict(os.environ, MMSTANDIN_DB_PING_INTERVAL_SECONDS="0.2", **(extra or {}))


def test_database_recycle_moves_the_server_and_its_jobs_to_a_new_primary(pgserver, install, tmp_path):
    first = pgserver.database()
    env = {"MMSTANDIN_JOB_INTERVAL_SECONDS": "0.5"}
    srv = _start_with_config_dsn(install, tmp_path, first, env)
    token, _, _ = _admin_and_channel(srv)
    assert srv.stop() == 0
    # "promote a replica": a copy of the primary, as a failed-over replica holds the same data
    second_name = "mm_" + secrets.token_hex(4)
    pgserver.psql(f"CREATE DATABASE {second_name} TEMPLATE {first.split('/')[3].split('?')[0]}")
    second = first.replace(first.split("/")[3].split("?")[0], second_name)
    srv = _start_with_config_dsn(install, tmp_path / "2", first, env)
    try:
        n_first = _wait(lambda: _count_jobs(first) or None)
        base_second = _count_jobs(second)
        cfg = json.loads(srv.cfg_path.read_text())
        cfg["SqlSettings"]["DataSource"] = second
        srv.cfg_path.write_text(json.dumps(cfg))
        assert _http("POST", srv.url("/api/v4/database/recycle"), {}, token=None)[0] == 401
        s, _, body = _http("POST", srv.url("/api/v4/database/recycle"), {}, token=token)
        assert s == 200, body
        assert "Recycled the database connections" in srv.log.read_text()
        # the job loop now writes through the new primary, and no longer through the old one
        assert _wait(lambda: _count_jobs(second) >= base_second + 2, 10)
        frozen = _count_jobs(first)
        time.sleep(1.5)
        assert _count_jobs(first) == frozen and frozen >= n_first
        s, _, body = _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))
        assert s == 200 and json.loads(body)["database_status"] == "OK"
        # a DataSource that does not answer is refused in bounded time, and the server keeps the working one
        cfg["SqlSettings"]["DataSource"] = "postgres://mmuser:x@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
        srv.cfg_path.write_text(json.dumps(cfg))
        t0 = time.monotonic()
        s, _, body = _http("POST", srv.url("/api/v4/database/recycle"), {}, token=token)
        assert s == 500 and time.monotonic() - t0 < 10 and "mmuser:x@" not in body.decode()
        assert _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))[0] == 200
    finally:
        srv.stop()


def test_ping_reports_a_dead_database_without_hanging(install, tmp_path):
    from tests.standin.services import PrivatePostgres

    try:
        own = PrivatePostgres()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot start a private PostgreSQL: {e}")
    srv = Server(install, tmp_path / "srv", dsn=own.database(), extra_cfg={"SqlSettings": {"QueryTimeout": 5}})
    try:
        assert srv.wait_ready(), srv.log.read_text()
        assert (
            json.loads(_http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))[2])["database_status"]
            == "OK"
        )
        own.stop()
        t0 = time.monotonic()
        s, _, body = _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))
        assert time.monotonic() - t0 < 10
        assert (
            s == 500
            and json.loads(body)["database_status"] == "UNHEALTHY"
            and json.loads(body)["status"] == "UNHEALTHY"
        )
        assert _http("GET", srv.url("/api/v4/system/ping"))[0] == 200  # the plain ping does not touch the database
    finally:
        srv.stop()
        own.stop()


def test_an_older_server_refuses_a_newer_schema(pg, install, tmp_path):
    import psycopg

    srv = Server(install, tmp_path / "a", dsn=pg)
    assert srv.wait_ready(), srv.log.read_text()
    assert srv.stop() == 0
    dsn = pg.replace("&connect_timeout=5", "")
    with psycopg.connect(dsn) as conn:
        rows = dict(conn.execute("SELECT version, name FROM db_migrations").fetchall())
        assert rows[11001] == "release_11.1.0" and 1 in rows and 2 in rows
        assert conn.execute("SELECT value FROM systems WHERE name = 'Version'").fetchone()[0] == "11.1.0"
        # what an upgrade to 11.2 leaves behind
        conn.execute("INSERT INTO db_migrations (version, name) VALUES (11002, 'release_11.2.0')")
    srv = Server(install, tmp_path / "b", dsn=pg)
    assert srv.proc.wait(timeout=30) == 1
    log = srv.log.read_text()
    assert "Refusing to start: the database schema is newer than this server" in log
    assert "does not support downgrading" in log and "11.2.0" in log


def test_a_broken_release_fails_its_health_check_and_exits(install, tmp_path):
    out = tmp_path / "broken"
    r = subprocess.run(["bash", str(BUILD), VERSION, str(out), "--broken"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out / ARCHIVE) as t:
        names = set(t.getnames())
        t.extractall(tmp_path / "opt", filter="tar")
    with tarfile.open(_DIST["dir"] / ARCHIVE) as t:
        assert names == set(t.getnames())  # same layout as the good release
    broken = tmp_path / "opt" / "mattermost"
    srv = Server(broken, tmp_path / "run", extra_env={"MMSTANDIN_BROKEN_EXIT_SECONDS": "3"})
    assert srv.wait_ready(), srv.log.read_text()
    s, _, body = _http("GET", srv.url("/api/v4/system/ping?get_server_status=true"))
    assert s == 500 and json.loads(body)["status"] == "UNHEALTHY"
    assert srv.proc.wait(timeout=20) == 1
    assert "built with --broken" in srv.log.read_text()


def _upload(srv, token, channel, name, content):
    boundary = "----standin" + secrets.token_hex(8)
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="channel_id"\r\n\r\n{channel}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _http(
        "POST", srv.url("/api/v4/files"), raw=form, token=token, ctype=f"multipart/form-data; boundary={boundary}"
    )


def test_files_in_s3_are_shared_by_two_nodes(pg, install, tmp_path):
    from tests.standin.services import S3Proxy

    try:
        s3 = S3Proxy(ROOT / "tests" / "standin" / "dist" / "cache")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run s3proxy (Maven Central, Java 17): {e}")
    files = {
        "FileSettings": {
            "DriverName": "amazons3",
            "AmazonS3Bucket": "mmfiles",
            "AmazonS3PathPrefix": "site1",
            "AmazonS3AccessKeyId": S3Proxy.ACCESS,
            "AmazonS3SecretAccessKey": S3Proxy.SECRET,
            "AmazonS3Endpoint": f"127.0.0.1:{s3.port}",
            "AmazonS3SSL": False,
            "AmazonS3Region": "us-east-1",
        }
    }
    a = Server(install, tmp_path / "a", dsn=pg, extra_cfg=files)
    b = Server(install, tmp_path / "b", dsn=pg, extra_cfg=files)
    try:
        assert a.wait_ready() and b.wait_ready(), a.log.read_text() + b.log.read_text()
        assert "File store is ready" in a.log.read_text()  # the bucket was created at start, as the real server does
        token, _, team = _admin_and_channel(a)
        _, channel = _town_square(a, token, team)
        content = os.urandom(200_000)
        s, _, body = _upload(a, token, channel, "blob.bin", content)
        assert s == 201, body
        fid = json.loads(body)["file_infos"][0]["id"]
        s, _, body = _http("GET", b.url(f"/api/v4/files/{fid}"), token=token)  # served by the other node, from S3
        assert s == 200 and body == content
        objs = s3.objects("mmfiles")
        assert len(objs) == 1 and objs[0].read_bytes() == content
        assert "site1" in str(objs[0]) and fid in str(objs[0])
        assert not (tmp_path / "a" / "data").exists() or not list((tmp_path / "a" / "data").rglob("blob.bin"))
        s, _, body = _http("GET", b.url("/api/v4/system/ping?get_server_status=true"))
        assert s == 200 and json.loads(body)["filestore_status"] == "OK"
        # wrong credentials: the health check says so
        bad = Server(
            install,
            tmp_path / "c",
            dsn=pg,
            extra_cfg={"FileSettings": dict(files["FileSettings"], AmazonS3SecretAccessKey="wrong")},
        )
        try:
            assert bad.wait_ready(), bad.log.read_text()
            s, _, body = _http("GET", bad.url("/api/v4/system/ping?get_server_status=true"))
            assert s == 500 and json.loads(body)["filestore_status"] == "UNHEALTHY"
            assert "wrong" not in bad.log.read_text()
        finally:
            bad.stop()
    finally:
        a.stop()
        b.stop()
        s3.stop()


def test_search_through_opensearch_only_with_a_license(pgserver, install, tmp_path):
    from tests.standin.services import OpenSearch

    try:
        osrv = OpenSearch(ROOT / "tests" / "standin" / "dist" / "cache")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run OpenSearch (Maven Central, Java 17): {e}")
    es = {
        "ElasticsearchSettings": {
            "Backend": "opensearch",
            "ConnectionURL": osrv.url,
            "EnableIndexing": True,
            "EnableSearching": True,
            "IndexPrefix": "mmtest_",
            "Username": "",
            "Password": "",
        }
    }
    pg = pgserver.database()
    try:
        # no license: search stays on the database and nothing is indexed
        plain = Server(install, tmp_path / "plain", dsn=pg, extra_cfg=es)
        try:
            assert plain.wait_ready(), plain.log.read_text()
            token, _, team = _admin_and_channel(plain)
            team_id, channel = _town_square(plain, token, team)
            s, _, body = _http(
                "POST",
                plain.url("/api/v4/posts"),
                {"channel_id": channel, "message": "written before the license"},
                token=token,
            )
            old = json.loads(body)["id"]
            assert json.loads(_http("GET", plain.url("/api/v4/system/ping"))[2])["ActiveSearchBackend"] == "database"
            s, h, body = _http(
                "POST", plain.url(f"/api/v4/teams/{team_id}/posts/search"), {"terms": "license"}, token=token
            )
            assert s == 200 and h["X-Standin-Search-Backend"] == "database" and json.loads(body)["order"] == [old]
            assert "no license for Elasticsearch/OpenSearch" in plain.log.read_text()
            assert not [i for i in osrv.get("/_cat/indices?format=json") if i["index"].startswith("mmtest_")]
        finally:
            plain.stop()

        cfg = dict(es, ServiceSettings={"LicenseFileLocation": str(_license(tmp_path))})
        srv = Server(install, tmp_path / "lic", dsn=pg, extra_cfg=cfg)
        try:
            assert srv.wait_ready(), srv.log.read_text()
            assert "Search engine is ready" in srv.log.read_text()
            assert json.loads(_http("GET", srv.url("/api/v4/system/ping"))[2])["ActiveSearchBackend"] == "opensearch"
            s, _, body = _http(
                "POST",
                srv.url("/api/v4/posts"),
                {"channel_id": channel, "message": "indexed in the background, licensed"},
                token=token,
            )
            new = json.loads(body)  # answered before it is indexed, as the real server's search layer does

            def found():
                s, h, body = _http(
                    "POST", srv.url(f"/api/v4/teams/{team_id}/posts/search"), {"terms": "licensed"}, token=token
                )
                return (s, h["X-Standin-Search-Backend"], json.loads(body)["order"]) if s == 200 else None

            # Until the post's index exists the engine's query fails and the database answers.
            assert _wait(lambda: (r := found()) and r[1] == "opensearch" and r[2] and r, 15) == (
                200,
                "opensearch",
                [new["id"]],
            )
            indexes = {i["index"] for i in osrv.get("/_cat/indices?format=json")}
            day = time.strftime("%Y_%m_%d", time.localtime(new["create_at"] / 1000))
            assert f"mmtest_posts_{day}" in indexes, indexes
            # the older post is found only after the bulk indexing job ran
            s, h, body = _http(
                "POST", srv.url(f"/api/v4/teams/{team_id}/posts/search"), {"terms": "before"}, token=token
            )
            assert json.loads(body)["order"] == []
            s, _, body = _http("POST", srv.url("/api/v4/jobs"), {"type": "elasticsearch_post_indexing"}, token=token)
            assert s == 201, body
            job = json.loads(body)["id"]

            def done():
                j = json.loads(_http("GET", srv.url(f"/api/v4/jobs/{job}"), token=token)[2])
                return j if j["status"] in ("success", "error") else None

            j = _wait(done, 30)
            assert j and j["status"] == "success" and int(j["data"]["indexed_posts"]) >= 2, j
            s, h, body = _http(
                "POST", srv.url(f"/api/v4/teams/{team_id}/posts/search"), {"terms": "before"}, token=token
            )
            assert json.loads(body)["order"] == [old] and h["X-Standin-Search-Backend"] == "opensearch"
        finally:
            srv.stop()
    finally:
        osrv.stop()


def test_license_upload_replaces_a_stored_license_jobs_by_type_and_user_patch(pg, install, tmp_path):
    """As on the real server: once a license is in the database a changed file is ignored,
    and `mmctl --local license upload` installs the new one; GET /api/v4/jobs/type/{type}
    lists the jobs a deploy asks for once; PUT /api/v4/users/{id}/patch checks notify_props."""
    lic = tmp_path / "site.mattermost-license"
    lic.write_bytes(_license(tmp_path / "a", features="elastic_search").read_bytes())
    srv = Server(install, tmp_path / "srv", dsn=pg, extra_cfg={"ServiceSettings": {"LicenseFileLocation": str(lic)}})
    try:
        assert srv.wait_ready(), srv.log.read_text()
        token, uid, _ = _admin_and_channel(srv)

        def client_license():
            return json.loads(_http("GET", srv.url("/api/v4/license/client?format=old"), token=token)[2])

        first = client_license()
        assert first["IsLicensed"] == "true" and first["Cluster"] == "false"
        lic.write_bytes(_license(tmp_path / "b", features="all").read_bytes())
        srv.stop()
        srv = Server(
            install, tmp_path / "srv", dsn=pg, extra_cfg={"ServiceSettings": {"LicenseFileLocation": str(lic)}}
        )
        assert srv.wait_ready(), srv.log.read_text()
        assert client_license()["Id"] == first["Id"]  # the stored license wins over the changed file
        r = srv.mmctl("license", "upload", str(lic))
        assert r.returncode == 0 and r.stdout.strip() == "Uploaded license file", r.stderr
        assert client_license()["Cluster"] == "true" and client_license()["Id"] != first["Id"]
        bad = tmp_path / "bad-license"
        bad.write_text("not a license")
        r = srv.mmctl("license", "upload", str(bad))
        assert r.returncode == 1 and "Invalid license file" in r.stderr

        s, _, body = _http("POST", srv.url("/api/v4/jobs"), {"type": "elasticsearch_post_indexing"}, token=token)
        assert s == 201, body
        created = json.loads(body)["id"]
        s, _, body = _http("GET", srv.url("/api/v4/jobs/type/elasticsearch_post_indexing"), token=token)
        assert s == 200 and [j["id"] for j in json.loads(body)] == [created], body
        assert json.loads(_http("GET", srv.url("/api/v4/jobs/type/no_such_type"), token=token)[2]) == []

        props = {"push": "mention", "push_status": "online"}
        s, _, body = _http(
            "PUT", srv.url(f"/api/v4/users/{uid}/patch"), {"nickname": "verify", "notify_props": props}, token=token
        )
        assert s == 200 and json.loads(body)["nickname"] == "verify", body
        s, _, body = _http(
            "PUT", srv.url(f"/api/v4/users/{uid}/patch"), {"notify_props": {"push_status": "never"}}, token=token
        )
        assert s == 400 and b"notify" in body
    finally:
        srv.stop()


def test_go_unit_tests_of_the_stand_in_pass():
    """license verification, config hash, cluster fan-out, search query mapping, schema numbers."""
    r = subprocess.run(
        ["go", "test", "-count=1", "./..."],
        cwd=ROOT / "tests" / "standin" / "mattermost",
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "FAIL" not in r.stdout
