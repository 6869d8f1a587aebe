"""The archives of tests/standin/artifacts.py: the push proxy TEST STAND-IN (built and run on
loopback: send_push, ack, version, metrics, throttle, credential checks, the delivery record),
and the layout, checksum files and reproducibility of the push proxy, OpenSearch (+ the
analysis-icu stand-in) and SeaweedFS archives. The OpenSearch node is also started on loopback
as an unprivileged user and indexes with edge_ngram and ICU analysis.

Builds go to the shared build cache (MMDEPLOY_BUILD_CACHE, ~/.cache/mmdeploy/build) and are
skipped when their inputs are unchanged; scripts/bootstrap pre-builds them. A cold SeaweedFS
build takes 6-8 minutes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.standin import artifacts

HERE = Path(artifacts.__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_sha256_file(path: Path) -> None:
    """<file>.sha256 is in sha256sum format, names the file, and matches it."""
    digest, name = Path(f"{path}.sha256").read_text().split()
    assert name == path.name
    assert digest == sha256(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds}s")


# ---------- push proxy stand-in ----------

needs_go = pytest.mark.skipif(
    shutil.which("go") is None, reason="go is not installed: cannot build the push proxy stand-in"
)


@pytest.fixture(scope="module")
def pushproxy_archive():
    path, _ = artifacts.build("pushproxy")
    return path


@pytest.fixture(scope="module")
def pushproxy_home(pushproxy_archive, tmp_path_factory):
    """The archive unpacked as on a host, with dummy credentials that load."""
    d = tmp_path_factory.mktemp("opt")
    with tarfile.open(pushproxy_archive) as t:
        t.extractall(d, filter="tar")
    home = d / "mattermost-push-proxy-linux-amd64"
    certs = home / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(certs / "apns.p8"),
        ],
        check=True,
        capture_output=True,
    )
    key = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (certs / "fcm.json").write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "mmdeploy-test",
                "client_email": "push@mmdeploy-test.example",
                "private_key": key,
            }
        )
    )
    return home


def start_pushproxy(home: Path, tmp_path: Path, **changes) -> tuple[str, subprocess.Popen, Path]:
    cfg = json.loads((home / "config" / "mattermost-push-proxy.sample.json").read_text())
    cfg["ListenAddress"] = f"127.0.0.1:{free_port()}"
    cfg["EnableMetrics"] = True
    for apple in cfg["ApplePushSettings"]:
        apple.update(
            AppleAuthKeyFile=str(home / "certs" / "apns.p8"), AppleAuthKeyID="KEY1234567", AppleTeamID="TEAM123456"
        )
    for android in cfg["AndroidPushSettings"]:
        android["ServiceFileLocation"] = str(home / "certs" / "fcm.json")
    cfg.update(changes)
    config = tmp_path / "mattermost-push-proxy.json"
    config.write_text(json.dumps(cfg))
    record = tmp_path / "received.jsonl"
    proc = subprocess.Popen(
        [str(home / "bin" / "mattermost-push-proxy"), "-config", str(config)],
        env={**os.environ, "MMDEPLOY_STANDIN_PUSH_RECORD": str(record)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://{cfg['ListenAddress']}"
    try:
        wait_for(url + "/version", 15)
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()[0])
    return url, proc, record


@pytest.fixture
def pushproxy(pushproxy_home, tmp_path):
    url, proc, record = start_pushproxy(pushproxy_home, tmp_path)
    yield url, record
    proc.terminate()
    proc.wait(timeout=10)


@needs_go
def test_pushproxy_archive_has_the_release_layout(pushproxy_archive):
    assert pushproxy_archive.name == "mattermost-push-proxy-linux-amd64.tar.gz"
    check_sha256_file(pushproxy_archive)
    with tarfile.open(pushproxy_archive) as t:
        members = {m.name: m for m in t.getmembers()}
        build_txt = t.extractfile("mattermost-push-proxy-linux-amd64/config/build.txt").read().decode()
    top = "mattermost-push-proxy-linux-amd64"
    assert members[f"{top}/bin/mattermost-push-proxy"].mode & 0o111
    for f in ["config/mattermost-push-proxy.sample.json", "README.md", "NOTICE.txt"]:
        assert members[f"{top}/{f}"].isfile(), f
    assert members[f"{top}/logs"].isdir()
    assert build_txt.strip() == f"v{artifacts.PUSHPROXY.version}"
    assert all(n == top or n.startswith(top + "/") for n in members)
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


@needs_go
def test_pushproxy_build_is_reproducible(pushproxy_archive, tmp_path):
    r = subprocess.run(
        ["bash", str(HERE / "build-pushproxy.sh"), artifacts.PUSHPROXY.version, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / pushproxy_archive.name) == sha256(pushproxy_archive)


@needs_go
def test_pushproxy_says_it_is_a_stand_in(pushproxy_archive):
    with tarfile.open(pushproxy_archive) as t:
        readme = t.extractfile("mattermost-push-proxy-linux-amd64/README.md").read().decode()
    assert "TEST STAND-IN" in readme.splitlines()[0]
    assert (HERE / "pushproxy" / "main.go").read_text().startswith("// TEST STAND-IN")


@needs_go
def test_pushproxy_version(pushproxy, pushproxy_home):
    url, _ = pushproxy
    status, body = http("GET", url + "/version")
    assert status == 200
    assert json.loads(body)["version"] == artifacts.PUSHPROXY.version
    out = subprocess.run(
        [str(pushproxy_home / "bin" / "mattermost-push-proxy"), "-version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"BuildVersion:  {artifacts.PUSHPROXY.version}" in out
    assert http("GET", url + "/")[1] == "<html><body>Mattermost Push Proxy</body></html>"


@needs_go
def test_pushproxy_send_push_is_recorded_and_counted(pushproxy):
    url, record = pushproxy
    ok = http(
        "POST",
        url + "/api/v1/send_push",
        {
            "platform": "android_rn-v2",
            "server_id": "srv",
            "device_id": "tok-a",
            "type": "message",
            "message": "hello",
            "ack_id": "ack-1",
        },
    )
    assert ok == (200, '{"status":"OK"}\n')
    assert json.loads(
        http(
            "POST",
            url + "/api/v1/send_push",
            {"platform": "apple", "server_id": "srv", "device_id": "tok-b", "type": "clear"},
        )[1]
    ) == {"status": "OK"}
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["target"], r["app_version"], r["notification"]["device_id"]) for r in lines] == [
        ("android_rn", 2, "tok-a"),
        ("apple", 1, "tok-b"),
    ]
    assert lines[0]["notification"]["message"] == "hello"
    status, body = http("GET", url + "/api/v1/received")
    assert status == 200 and json.loads(body)["count"] == 2
    metrics = http("GET", url + "/metrics")[1].splitlines()
    for line in [
        'service_notifications_total{platform="android",transport="",type="message"} 1',
        'service_notifications_total{platform="apple",transport="",type="clear"} 1',
        'service_success_with_ack_total{platform="android",transport="",type="message"} 1',
        'service_success_total{platform="apple",transport="",type="clear"} 1',
        'service_notifications_by_app_version_total{app_version="2",platform="android_rn"} 1',
        "service_bad_request_total 0",
    ]:
        assert line in metrics, line
    assert any(m.startswith("service_request_duration_seconds_count 2") for m in metrics)
    assert any(m.startswith("go_goroutines ") for m in metrics)


@needs_go
@pytest.mark.parametrize(
    "body, error",
    [
        ({"platform": "apple", "device_id": "t"}, "Failed because of missing server Id"),
        ({"platform": "apple", "server_id": "s"}, "Failed because of missing device Id serverId=s"),
        (
            {"platform": "windows", "server_id": "s", "device_id": "t"},
            "Did not send message because of missing platform property type=windows serverId=s",
        ),
    ],
)
def test_pushproxy_refuses_bad_notifications_like_the_real_one(pushproxy, body, error):
    url, record = pushproxy
    status, answer = http("POST", url + "/api/v1/send_push", body)
    assert status == 200 and json.loads(answer) == {"status": "FAIL", "error": error}
    assert record.read_text() == ""
    assert "service_bad_request_total 1" in http("GET", url + "/metrics")[1].splitlines()


@needs_go
def test_pushproxy_ack(pushproxy):
    url, _ = pushproxy
    assert json.loads(http("POST", url + "/api/v1/ack", {"id": "a1", "platform": "android", "type": "message"})[1]) == {
        "status": "OK"
    }
    assert json.loads(http("POST", url + "/api/v1/ack", {"id": "a1", "platform": "android"})[1]) == {
        "status": "FAIL",
        "error": "Failed because of missing ack type",
    }
    assert http("GET", url + "/api/v1/send_push")[0] == 405


@needs_go
def test_pushproxy_skips_targets_whose_credentials_do_not_load(pushproxy_home, tmp_path):
    bad = tmp_path / "bad.p8"
    bad.write_text("not a key")
    url, proc, record = start_pushproxy(
        pushproxy_home,
        tmp_path,
        ApplePushSettings=[
            {"Type": "apple", "AppleAuthKeyFile": str(bad), "AppleAuthKeyID": "K", "AppleTeamID": "T"},
            {"Type": "apple_rn"},
        ],
        AndroidPushSettings=[{"Type": "android", "ServiceFileLocation": str(tmp_path / "missing.json")}],
    )
    try:
        for platform in ["apple", "apple_rn", "android"]:
            answer = json.loads(
                http("POST", url + "/api/v1/send_push", {"platform": platform, "server_id": "s", "device_id": "t"})[1]
            )
            assert answer["status"] == "FAIL" and "missing platform property" in answer["error"], platform
    finally:
        proc.terminate()
        log = proc.communicate(timeout=10)[0]
    assert "failed to initialize apple notification service with AuthKey file" in log
    assert "apple push notifications not configured: missing ApplePushCertPrivate for type=apple_rn" in log
    assert "error reading service file" in log
    assert record.read_text() == ""


@needs_go
def test_pushproxy_throttles_per_second(pushproxy_home, tmp_path):
    url, proc, _ = start_pushproxy(pushproxy_home, tmp_path, ThrottlePerSec=3)
    try:
        start = int(time.time())
        codes = [http("GET", url + "/version")[0] for _ in range(12)]
        seconds = int(time.time()) - start + 1  # the server's one-second windows these spanned
        assert 429 in codes and codes.count(200) <= 3 * seconds
        # another X-Forwarded-For value has a budget of its own
        assert http("GET", url + "/version", headers={"X-Forwarded-For": "192.0.2.7"})[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------- OpenSearch ----------

needs_java = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mvn", "javac", "java")),
    reason="mvn, javac and java are needed to assemble OpenSearch",
)


@pytest.fixture(scope="module")
def search_archive():
    path, _ = artifacts.build("search")
    return path


@needs_java
def test_opensearch_archive_has_the_release_layout(search_archive):
    version = artifacts.SEARCH.version
    top = f"opensearch-{version}"
    assert search_archive.name == f"opensearch-{version}-linux-x64.tar.gz"
    check_sha256_file(search_archive)
    with tarfile.open(search_archive) as t:
        members = {m.name: m for m in t.getmembers()}
        descriptors = {
            n: t.extractfile(n).read().decode() for n in members if n.endswith("/plugin-descriptor.properties")
        }
    assert all(n == top or n.startswith(top + "/") for n in members)
    for d in ["bin", "config", "config/jvm.options.d", "lib", "logs", "modules", "plugins"]:
        assert members[f"{top}/{d}"].isdir(), d
    for f in ["bin/opensearch", "bin/opensearch-plugin", "bin/opensearch-keystore"]:
        assert members[f"{top}/{f}"].mode & 0o111, f
    for f in [
        "config/opensearch.yml",
        "config/jvm.options",
        "config/log4j2.properties",
        f"lib/opensearch-{version}.jar",
        "LICENSE.txt",
        "NOTICE.txt",
    ]:
        assert members[f"{top}/{f}"].isfile(), f
    assert not [n for n in members if n.startswith(f"{top}/jdk") or n.endswith((".bat", ".exe"))]
    modules = {n.split("/")[2]: text for n, text in descriptors.items()}
    assert set(modules) == {
        "transport-netty4",
        "lang-painless",
        "analysis-common",
        "mapper-extras",
        "parent-join",
        "reindex",
    }
    for name, text in modules.items():
        props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
        assert props["name"] == name and props["version"] == version and props["opensearch.version"] == version
    lib = {Path(n).name for n in members if Path(n).parent.as_posix() == f"{top}/lib"}  # not lib/tools/
    in_modules = [Path(n).name for n in members if n.startswith(f"{top}/modules/") and n.endswith(".jar")]
    assert not lib & set(in_modules), "a jar is both in lib/ and in a module (jar hell)"
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


@needs_java
def test_analysis_icu_stand_in_is_an_installable_plugin_zip(search_archive):
    path, _ = artifacts.icu_plugin()
    assert path.name == f"analysis-icu-{artifacts.SEARCH.version}.zip"
    check_sha256_file(path)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        descriptor = z.read("plugin-descriptor.properties").decode()
    assert "name=analysis-icu" in descriptor.splitlines() and "TEST STAND-IN" in descriptor
    assert {f"analysis-icu-{artifacts.SEARCH.version}.jar", "lucene-analysis-icu-9.12.3.jar"} <= names
    assert all("/" not in n for n in names)  # files at the zip root, as opensearch-plugin expects


@needs_java
@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("runuser") is None,
    reason="root without runuser: OpenSearch refuses to run as root",
)
def test_opensearch_node_indexes_with_edge_ngram_and_icu_on_loopback(search_archive):
    """Unpack, install the analysis-icu zip with opensearch-plugin, start a node on loopback
    (as nobody when run as root), create an index like Mattermost's posts template with an
    edge_ngram analyzer, index and search."""
    java_home = Path(os.path.realpath(shutil.which("java"))).parents[1]
    work = Path(tempfile.mkdtemp(prefix="mmdeploy-opensearch-", dir="/tmp"))
    work.chmod(0o755)
    proc = None
    try:
        with tarfile.open(search_archive) as t:
            t.extractall(work, filter="tar")
        home = work / f"opensearch-{artifacts.SEARCH.version}"
        icu, _ = artifacts.icu_plugin()
        shutil.copy(icu, work / icu.name)
        port = free_port()
        (home / "config" / "opensearch.yml").write_text(
            f"cluster.name: mmdeploy-unit\nnode.name: unit\nnetwork.host: 127.0.0.1\nhttp.port: {port}\n"
            f"transport.port: {free_port()}\ndiscovery.type: single-node\n"
        )
        (home / "config" / "jvm.options.d" / "heap.options").write_text("-Xms256m\n-Xmx256m\n")
        prefix = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for p in [work, *work.rglob("*")]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
            prefix = ["runuser", "-u", "nobody", "--"]
        env = {"PATH": os.environ["PATH"], "OPENSEARCH_JAVA_HOME": str(java_home), "HOME": str(work)}
        r = subprocess.run(
            prefix + [str(home / "bin" / "opensearch-plugin"), "install", "--batch", f"file://{work / icu.name}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        proc = subprocess.Popen(
            prefix + [str(home / "bin" / "opensearch")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(url, 120)
        h = {"Content-Type": "application/json"}
        status, body = http(
            "PUT",
            url + "/posts_unit",
            {
                "settings": {
                    "number_of_shards": 1,
                    "number_of_replicas": 0,
                    "analysis": {
                        "analyzer": {
                            "mm_lowercaser": {
                                "tokenizer": "icu_tokenizer",
                                "filter": ["icu_normalizer", "mm_snowball", "mm_stop"],
                            },
                            "prefix": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "edge"]},
                        },
                        "filter": {
                            "edge": {"type": "edge_ngram", "min_gram": 2, "max_gram": 10},
                            "mm_snowball": {"type": "snowball", "language": "English"},
                            "mm_stop": {"type": "stop", "stopwords": "_english_"},
                        },
                        "normalizer": {"mm_hashtag": {"type": "custom", "filter": ["lowercase", "icu_normalizer"]}},
                    },
                },
                "mappings": {
                    "properties": {
                        "message": {"type": "text", "analyzer": "mm_lowercaser"},
                        "user": {"type": "text", "analyzer": "prefix", "search_analyzer": "standard"},
                        "hashtags": {"type": "keyword", "normalizer": "mm_hashtag"},
                    }
                },
            },
            h,
        )
        assert status == 200, body
        status, body = http(
            "PUT",
            url + "/posts_unit/_doc/1?refresh=true",
            {"message": "Running ＦＵＬＬＷＩＤＴＨ clusters", "user": "alexandra", "hashtags": ["#Release"]},
            h,
        )
        assert status == 201, body
        for query in [
            {"match": {"user": "ale"}},
            {"match": {"message": "fullwidth cluster"}},
            {"term": {"hashtags": "#RELEASE"}},
        ]:
            status, body = http("POST", url + "/posts_unit/_search", {"query": query}, h)
            assert status == 200 and json.loads(body)["hits"]["total"]["value"] == 1, (query, body)
        status, body = http("GET", url + "/_cat/plugins?h=component")
        assert body.split() == ["analysis-icu"]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


# ---------- SeaweedFS ----------


@pytest.fixture(scope="module")
def storage_archive():
    path, _ = artifacts.build("storage")
    return path


@needs_go
def test_seaweedfs_archive_is_the_release_asset(storage_archive, tmp_path):
    assert storage_archive.name == "linux_amd64.tar.gz"
    assert storage_archive.parent.name == artifacts.STORAGE.version
    check_sha256_file(storage_archive)
    with tarfile.open(storage_archive) as t:
        members = t.getmembers()
        assert [m.name for m in members] == ["weed"]
        assert members[0].mode == 0o755 and (members[0].uid, members[0].mtime) == (0, 0)
        t.extractall(tmp_path, filter="tar")
    out = subprocess.run([str(tmp_path / "weed"), "version"], capture_output=True, text=True, timeout=30).stdout
    assert f" {artifacts.STORAGE.version} " in out and "30GB" in out  # 30GB: built without 5BytesOffset


# ---------- the bed's open-files shim ----------


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: cannot build the bed's nofile shim")
def test_bed_nofile_shim_reports_enough_open_files_without_changing_the_limit():
    shim = artifacts.bed_nofile_shim()
    probe = (
        "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)); print(open('/proc/self/limits').read())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "LD_PRELOAD": str(shim)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    reported = ast.literal_eval(out.splitlines()[0])
    assert min(reported) >= 65536
    real_soft = int(next(line for line in out.splitlines() if line.startswith("Max open files")).split()[3])
    import resource

    assert real_soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
