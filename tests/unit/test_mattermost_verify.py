"""The Mattermost verify checks' logic against a fake site spoken to through httpx's
MockTransport (and a fake websocket): a healthy cluster passes; the quiet HA failures (a
node with another ClusterName, no license, files on each node's own disk) fail and name the
node; the license and release status are reported, never failed."""

import json
from datetime import date

import httpx
import pytest

from mmdeploy import inventory, releases
from mmdeploy.component import Info, Warn
from mmdeploy.components import mattermost as mm

SITE = """\
pattern: single
settings:
  domain: chat.example.com
  mattermost: {{sha256: "{sha}"}}
  pushproxy:
    android: [{{type: android_rn, service_file: "{service}"}}]
hosts:
  - {{name: proxy1, address: 192.0.2.1, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.2, private_address: 10.0.0.2, roles: [app, pushproxy]}}
  - {{name: app2, address: 192.0.2.3, private_address: 10.0.0.3, roles: [app, pushproxy]}}
  - {{name: job1, address: 192.0.2.4, roles: [jobserver, monitoring, db]}}
  - {{name: search1, address: 192.0.2.5, roles: [search]}}
"""
VERSION = releases.DEFAULT_VERSION
TODAY = date(2026, 11, 29)


class FakeSite:
    """A Mattermost cluster as the checks see it: the proxy (https://192.0.2.1), each app
    server where it listens (http://PRIVATE_ADDRESS:8065), each push proxy
    (http://ADDRESS:8066). Nodes are named by their address."""

    def __init__(self):
        self.licensed = True
        self.features = {"Cluster": "true", "Elasticsearch": "true"}
        # What each node runs: version, config hash, and the ClusterName it gossips under.
        self.nodes = {
            "192.0.2.2": ["app1", "10.0.0.2", VERSION, "c0ffee", "blue"],
            "192.0.2.3": ["app2", "10.0.0.3", VERSION, "c0ffee", "blue"],
        }
        self.shared_files = True
        self.search_backend = "opensearch"
        self.indexed = True
        self.push_metrics = True
        self.push_taken = True
        self.posts: dict[str, dict] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (node it was uploaded on, content)
        self.pushed = 0
        self.verify_user = None
        self.requests: list[str] = []
        self.store_failures = 0  # ping answers with a failing file store this many times

    # --- what a node knows -----------------------------------------------------------------

    def cluster(self, via: str = "192.0.2.2") -> list[dict]:
        """cluster/status from the node behind the proxy: the live nodes of its cluster."""
        if not self.licensed or self.features.get("Cluster") != "true":
            return []
        name = self.nodes[via][4]
        return [
            {
                "id": n[0] + "id",
                "hostname": n[0],
                "ipaddress": n[1],
                "version": n[2],
                "config_hash": n[3],
                "schema_version": "11.7.0",
            }
            for n in self.nodes.values()
            if n[4] == name
        ]

    def listening(self, private: str) -> str:
        """The node listening at `private` on 8065: Mattermost listens on the private address only."""
        found = [a for a, n in self.nodes.items() if n[1] == private]
        assert found, f"{private}: no node listens there (Mattermost listens on the private address)"
        return found[0]

    def gossips(self, a: str, b: str) -> bool:
        return a == b or (
            self.licensed and self.features.get("Cluster") == "true" and self.nodes[a][4] == self.nodes[b][4]
        )

    def version_id(self, address: str) -> str:
        n = self.nodes[address]
        return f"{n[2]}.standin.{n[3]}.{str(self.licensed).lower()}"

    # --- the HTTP API ----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        url, path, method = request.url, request.url.path, request.method
        self.requests.append(f"{method} {url.host}:{url.port or 443}{path}")
        if url.port == 8066:
            return self.push_proxy(request)
        node = "192.0.2.2" if url.host == "192.0.2.1" else self.listening(url.host)  # the proxy: app1
        headers = {"X-Version-Id": self.version_id(node)}
        ext = {"http_version": b"HTTP/2"} if url.host == "192.0.2.1" else {}

        def reply(status, body=None, content=None, **more):
            return httpx.Response(status, json=body, content=content, headers={**headers, **more}, extensions=ext)

        if path == "/api/v4/system/ping":
            if self.store_failures:  # the file store's own test fails (a store that just started)
                self.store_failures -= 1
                return reply(500, {"status": "UNHEALTHY", "database_status": "OK", "filestore_status": "UNHEALTHY"})
            return reply(
                200, {"status": "OK", "ActiveSearchBackend": self.search_backend if self.licensed else "database"}
            )
        if path == "/api/v4/users/login":
            body = json.loads(request.content)
            token = "admintoken" if body["login_id"] == "sysadmin" else "usertoken"
            return reply(200, {"id": body["login_id"]}, Token=token)
        if path == "/api/v4/users/logout":
            return reply(200, {"status": "OK"})
        if path == "/api/v4/teams/name/main":
            return reply(200, {"id": "team1"})
        if path == "/api/v4/teams/team1/channels/name/town-square":
            return reply(200, {"id": "chan1"})
        if path == "/api/v4/license/client":
            return reply(
                200,
                {
                    "IsLicensed": str(self.licensed).lower(),
                    "SkuShortName": "enterprise",
                    "ExpiresAt": "1830297600000",
                    **(self.features if self.licensed else {}),
                },
            )
        if path == "/api/v4/cluster/status":
            return reply(200, self.cluster(node))
        if path == "/api/v4/posts" and method == "POST":
            body = json.loads(request.content)
            post = {"id": f"post{len(self.posts)}", "message": body["message"], "channel_id": body["channel_id"]}
            self.posts[post["id"]] = post
            if "@mmdeploy-verify" in body["message"] and self.verify_user and self.push_taken:
                self.pushed += 1
            self.last_post_node = node
            return reply(201, post)
        if path.startswith("/api/v4/posts/"):
            post = self.posts.get(path.rsplit("/", 1)[1])
            return reply(200, post) if post else reply(404, {"id": "app.post.get.app_error"})
        if path == "/api/v4/files":
            content = request.content.split(b"\r\n\r\n", 2)[2].split(b"\r\n--", 1)[0]
            file_id = f"file{len(self.files)}"
            self.files[file_id] = (node, content)
            return reply(201, {"file_infos": [{"id": file_id}]})
        if path.startswith("/api/v4/files/"):
            where, content = self.files[path.rsplit("/", 1)[1]]
            if self.shared_files or where == node:
                return reply(200, content=content)
            return reply(404, {"id": "api.file.get_file.not_found"})
        if path == "/api/v4/teams/team1/posts/search":
            term = json.loads(request.content)["terms"]
            hits = [p["id"] for p in self.posts.values() if term in p["message"]] if self.indexed else []
            return reply(200, {"order": hits, "posts": {}})
        if path == "/api/v4/users/username/mmdeploy-verify":
            return (
                reply(200, {"id": "vuser"})
                if self.verify_user
                else reply(404, {"id": "app.user.missing_account.const"})
            )
        if path == "/api/v4/users" and method == "POST":
            self.verify_user = json.loads(request.content)
            return reply(201, {"id": "vuser"})
        if path in ("/api/v4/users/vuser/password", "/api/v4/users/vuser/patch"):
            return reply(200, {"id": "vuser"})
        if path == "/api/v4/teams/team1/members":
            return reply(201, {"team_id": "team1", "user_id": "vuser"})
        return reply(404, {"id": "api.no_route", "message": path})

    def push_proxy(self, request):
        if request.url.path == "/metrics" and self.push_metrics:
            n = self.pushed if request.url.host == "192.0.2.2" else 0
            return httpx.Response(
                200,
                text=f"# TYPE service_notifications_total counter\n"
                f'service_notifications_total{{platform="android",type="message",transport=""}} {n}\n',
            )
        return httpx.Response(404)

    # --- websockets ------------------------------------------------------------------------

    def ws_connect(self, url, headers):
        assert headers == {"Authorization": "Bearer admintoken"}
        return FakeSocket(self, self.listening(httpx.URL(url).host))


class FakeSocket:
    def __init__(self, site, address):
        self.site, self.address, self.sent_hello, self.seen = site, address, False, set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def recv(self, timeout):
        if not self.sent_hello:
            self.sent_hello = True
            return json.dumps({"event": "hello", "data": {}})
        for post in self.site.posts.values():
            if post["id"] not in self.seen and self.site.gossips(self.site.last_post_node, self.address):
                self.seen.add(post["id"])
                return json.dumps({"event": "posted", "data": {"post": json.dumps(post)}})
        raise TimeoutError


@pytest.fixture
def fake(write_inventory, tmp_path, monkeypatch):
    monkeypatch.setattr(mm, "CHECK_WAIT", 1.5)  # the bounded waits, short for a fake
    service = tmp_path / "service.json"
    service.write_text("{}")
    path = write_inventory(SITE.format(sha="a" * 64, service=service))
    inv = inventory.load(path)
    inv.secrets_path.write_text("mattermost_admin_password: s3cret-admin\n")
    inv.secrets_path.chmod(0o600)
    site = FakeSite()

    def checks():
        return mm.SiteChecks(inv, transport=httpx.MockTransport(site.handle), ws_connect=site.ws_connect, today=TODAY)

    site.checks, site.inv = checks, inv
    return site


def run_all(site) -> dict:
    """name -> result of every check the component declares, on a fresh SiteChecks."""
    checks = site.checks()
    names = {
        "versions": checks.versions,
        "license": checks.license,
        "members": checks.cluster_members,
        "hashes": checks.config_hashes,
        "every node": checks.post_on_every_node,
        "websocket": checks.cross_node_websocket,
        "file": checks.cross_node_file,
        "search": checks.search,
        "push": checks.push,
        "ping": checks.ping,
        "login": checks.login,
        "roundtrip": checks.post_roundtrip,
    }
    return {name: fn() for name, fn in names.items()}


def test_the_component_declares_the_cluster_checks(fake):
    names = [c.name for c in mm.Mattermost().checks(fake.inv)]
    assert "every app server in the cluster (cluster/status)" in names
    assert "websocket on app2 receives a post made on app1" in names
    assert "file uploaded on app1 downloads from app2" in names
    assert {
        "Mattermost version on every app server",
        "Enterprise license",
        "same config on every app server",
        "search finds a fresh post",
        "a mention reaches the push proxy",
    } <= set(names)


def test_a_healthy_licensed_cluster_passes(fake):
    results = run_all(fake)
    failed = {n: r for n, r in results.items() if r is not None and not isinstance(r, Info)}
    assert not failed, failed
    assert results["versions"].startswith(f"Mattermost {VERSION} (11.7 ESR): supported until 2027-05-15")
    assert results["license"] == "enterprise, expires 2028-01-01"
    assert results["members"] == "2 app servers in 'mmdeploy-chat.example.com': app1, app2"
    assert results["hashes"] == "c0ffee on app1, app2 (cluster/status)"
    assert results["search"].endswith("by opensearch") and "rose on app1" in results["push"]
    # The cross-node checks spoke to each app server directly (where it listens: its private
    # address), not only through the proxy.
    assert any(r.startswith("POST 10.0.0.2:8065/api/v4/files") for r in fake.requests)
    assert any(r.startswith("GET 10.0.0.3:8065/api/v4/files/") for r in fake.requests)
    assert any(r.startswith("GET 10.0.0.3:8065/api/v4/posts/") for r in fake.requests)


def test_a_node_with_another_cluster_name_fails_and_is_named(fake):
    fake.nodes["192.0.2.3"][3:5] = ["beef00", "green"]  # its own config, its own cluster
    results = run_all(fake)
    # Two nodes, each alone: nobody is the majority, both are named, with what each sees.
    assert results["members"].startswith(
        "the app servers do not form one cluster 'mmdeploy-chat.example.com' (app1 sees app1; app2 sees app2)"
    )
    assert "port 8074" in results["members"]
    assert results["hashes"] == "config differs on app1, app2 (cluster/status: app1 c0ffee, app2 beef00)"
    assert results["websocket"].startswith("app2 got no posted event for a post made on app1")
    assert "ClusterName" in results["websocket"]
    assert results["every node"] is None and results["file"] is None  # the database and S3 are shared


def test_without_a_license_features_are_reported_inactive_and_websocket_fails(fake):
    fake.licensed = False
    results = run_all(fake)
    assert isinstance(results["license"], Warn)
    assert results["license"].startswith("no license (mattermost.license_file): inactive: cluster mode")
    assert "search on OpenSearch" in results["license"] and "read replicas" not in results["license"]
    assert (
        results["members"] == "cluster mode is inactive without a license granting it (app1 sees no node; "
        "app2 sees no node)"
    )
    assert isinstance(results["search"], Warn) and "by database" in results["search"]
    assert results["hashes"] == "c0ffee on app1, app2 (X-Version-Id: the nodes form no cluster)"
    assert results["websocket"].startswith("app2 got no posted event")  # the quiet HA failure fails


def test_a_license_without_the_cluster_feature_is_a_warning_and_the_websocket_fails(fake):
    fake.features["Cluster"] = "false"
    results = run_all(fake)
    assert isinstance(results["license"], Warn) and "does not grant: cluster mode" in results["license"]
    assert results["websocket"] is not None and not isinstance(results["websocket"], (Info, Warn))


def test_different_versions_fail_naming_the_nodes(fake):
    fake.nodes["192.0.2.3"][2] = "11.7.14"
    result = fake.checks().versions()
    assert result == f"app servers run different versions: app1 {VERSION}, app2 11.7.14"


def test_version_summary_says_when_the_inventory_differs(fake):
    fake.nodes["192.0.2.2"][2] = fake.nodes["192.0.2.3"][2] = "10.5.1"
    result = fake.checks().versions()
    assert isinstance(result, Info) and "out of support since 2025-11-15; known-bad patch" in result
    assert result.endswith(f"(the inventory says {VERSION}: deploy to change it)")


def test_files_on_each_nodes_own_disk_fail(fake):
    fake.shared_files = False
    result = fake.checks().cross_node_file()
    assert result.startswith("file file0 uploaded on app1 is not served by app2: HTTP 404")
    assert "S3" in result


def test_search_that_finds_nothing_fails_within_the_limit(fake):
    fake.indexed = False
    result = fake.checks().search()
    assert "was not found within 2 s (search backend: opensearch)" in result


def test_licensed_search_on_the_database_fails(fake):
    fake.search_backend = "database"
    result = fake.checks().search()
    assert isinstance(result, str) and not isinstance(result, Warn) and "search hosts are not used" in result


def test_push_not_taken_fails(fake):
    fake.push_taken = False
    result = fake.checks().push()
    assert result.startswith("no push proxy took the notification of post")


def test_push_unobservable_is_a_warning(fake):
    fake.push_metrics = False
    fake.push_taken = False
    result = fake.checks().push()
    assert isinstance(result, Warn) and "enable pushproxy.metrics" in result


def test_push_verify_user_logs_in_as_a_phone_and_logs_out(fake):
    seen = []
    handle = fake.handle

    def spy(request):
        if request.url.path in ("/api/v4/users/login", "/api/v4/users/logout"):
            seen.append((request.url.path, json.loads(request.content or b"{}"), request.headers.get("Authorization")))
        return handle(request)

    checks = mm.SiteChecks(fake.inv, transport=httpx.MockTransport(spy), ws_connect=fake.ws_connect, today=TODAY)
    assert isinstance(checks.push(), Info)
    user_login = next(
        body for path, body, _ in seen if path.endswith("login") and body["login_id"] == "mmdeploy-verify"
    )
    assert user_login["device_id"].startswith("android_rn-v2:mmdeploy-verify-")
    assert ("/api/v4/users/logout", {}, "Bearer usertoken") in seen
    assert fake.verify_user["email"] == "mmdeploy-verify@chat.example.com"


def test_helpers():
    assert mm.parse_version_id("11.7.15.4567.0a1b2c.true") == ("11.7.15", "0a1b2c", True)
    assert mm.parse_version_id("11.7.15.4567.0a1b2c.false")[2] is False
    assert mm.parse_version_id("") is None and mm.parse_version_id("garbage") is None
    assert mm.differing({"a": "1", "b": "1", "c": "2"}) == ["c"]
    assert mm.differing({"a": "1", "b": "2"}) == ["a", "b"]
    assert mm.differing({"a": "1", "b": "1"}) == []
    text = (
        '# HELP service_notifications_total Number\nservice_notifications_total{platform="apple",type="message",'
        'transport=""} 2\nservice_notifications_total{platform="android",type="clear",transport=""} 3\n'
        'service_notifications_by_app_version_total{platform="android",app_version="2"} 9\n'
    )
    assert mm.push_total(text) == 5.0


def test_the_odd_node_of_three_is_named(fake, write_inventory, tmp_path):
    three = fake.inv.path.read_text().replace(
        "  - {name: job1,",
        "  - {name: app3, address: 192.0.2.6, private_address: 10.0.0.6, roles: [app]}\n  - {name: job1,",
    )
    path = write_inventory(three, "three.yml")
    inv = inventory.load(path)
    inv.secrets_path.write_text("mattermost_admin_password: s3cret-admin\n")
    inv.secrets_path.chmod(0o600)
    fake.nodes["192.0.2.6"] = ["app3", "10.0.0.6", VERSION, "c0ffee", "green"]
    checks = mm.SiteChecks(inv, transport=httpx.MockTransport(fake.handle), ws_connect=fake.ws_connect, today=TODAY)
    assert checks.cluster_members().startswith(
        "app3 not in the cluster 'mmdeploy-chat.example.com' of the others "
        "(app1 sees app1, app2; app2 sees app1, app2; app3 sees app3)"
    )
    assert checks.cross_node_websocket().startswith("app3 got no posted event for a post made on app1")


def test_ping_names_the_failing_status_and_waits_for_a_store_that_just_started(fake):
    checks = fake.checks()
    fake.store_failures = 2
    assert checks.ping(wait=0) == "ping: HTTP 500, failing: filestore_status UNHEALTHY"
    assert checks.ping(wait=10) is None  # the second failure, then OK, asked again every 2 s
