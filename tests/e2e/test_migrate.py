"""MySQL family -> PostgreSQL on the test bed (issue 12): the single pattern on MariaDB with
users, a team and its channels, posts and a file; `inv db.migrate --to postgresql --dry-run`
changes nothing the site uses; `inv db.migrate --to postgresql` moves it, every table's
count and checksum match, every server is cut over, verify passes and everything is there
on PostgreSQL; `inv db.status` shows the PostgreSQL tier; MariaDB is left read-only. The
database passwords are hostile ones (tests/e2e/hostile.py).

Mattermost does not support migrating from MariaDB (its tooling is for MySQL): this is
mmdeploy's route, vouched for by the comparison (see the README)."""

import re
import time

import httpx
import pytest

import mmdeploy
from mmdeploy.components.mattermost import ADMIN_PASSWORD
from mmdeploy.secrets import Redactor, Secrets

from .conftest import figures, inv, on
from .hostile import hostile, write_secrets

pytestmark = pytest.mark.e2e
MARIADB = ["monitoring.grafana=false", "database.engine=mysql", "database.flavor=mariadb", "database.memory_mb=512"]
FIGURES = figures("MariaDB -> PostgreSQL migration (pgloader)")


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


class Client:
    def __init__(self, inventory):
        proxy = inventory.with_role("proxy")[0]
        self.base = f"https://{proxy.address}/api/v4"
        self.http = httpx.Client(
            http2=True,
            verify=False,
            timeout=15,
            headers={"Host": inventory.settings.domain, "X-Requested-With": "XMLHttpRequest"},
        )
        password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
        r = self.http.post(f"{self.base}/users/login", json={"login_id": "sysadmin", "password": password})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.headers['Token']}"

    def get(self, path):
        r = self.http.get(self.base + path)
        return r.json() if r.status_code == 200 else None

    def post(self, path, **kw):
        r = self.http.post(self.base + path, **kw)
        assert r.status_code in (200, 201), f"{path}: HTTP {r.status_code} {r.text}"
        return r.json()


def hostile_db_secrets(path: str) -> None:
    """Database passwords with '@', ':', quotes and the rest, as an earlier module may leave
    them: pgloader's connection string has a grammar of its own. test_failover_app's MariaDB
    site writes the same ones, so that this module finds them on the bed it shares."""
    write_secrets(path, {k: v for k, v in hostile("m").items() if k != "mattermost_admin_password"})


@pytest.fixture(scope="module")
def site(bed, standin_release):
    # The MariaDB site test_failover_app leaves (tests/conftest.py SHARED_BEDS), or a fresh one.
    path = str(bed("single", share="single-mariadb"))
    hostile_db_secrets(path)
    overrides = standin_release("10.11.4") + MARIADB
    inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    inventory = mmdeploy.load(path, overrides)
    c = Client(inventory)
    data = {
        "user": c.post("/users", json={"email": "ada@example.com", "username": "ada", "password": "Passw0rd!ada"}),
        "team": c.post("/teams", json={"name": "migrated", "display_name": "Migrated", "type": "O"}),
    }
    main = c.get("/teams/name/main")
    square = c.get(f"/teams/{main['id']}/channels/name/town-square")
    data["channel"] = c.get(f"/teams/{data['team']['id']}/channels/name/town-square")
    content = b"a file that must survive the migration\n" * 50
    upload = c.post("/files", files={"files": ("notes.txt", content, "text/plain")}, data={"channel_id": square["id"]})
    file_id = upload["file_infos"][0]["id"]
    data["posts"] = [
        c.post("/posts", json={"channel_id": square["id"], "message": "with a file", "file_ids": [file_id]}),
        c.post("/posts", json={"channel_id": data["channel"]["id"], "message": "in the new team\nline 2"}),
        c.post("/posts", json={"channel_id": square["id"], "message": "tab\there, quote ' and \\ back"}),
    ]
    data["file"] = (file_id, content)
    return path, overrides, data


def test_dry_run_changes_nothing_the_site_uses(site):
    path, overrides, _ = site
    t0 = time.monotonic()
    dry = inv("db.migrate", "--to", "postgresql", "--dry-run", "--inventory", path, *sets(overrides), check=False)
    FIGURES["dry run"] = round(time.monotonic() - t0, 1)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: ready to migrate" in dry.stdout
    assert "pgloader --dry-run: connections and the load file are good" in dry.stdout
    assert '"DriverName": "mysql"' in on("app1", "cat /opt/mattermost/config/config.json")
    c = Client(mmdeploy.load(path, overrides))
    assert c.get("/users/username/ada")
    assert on("db1", "mysql -NB -e 'SELECT @@global.read_only'").strip() == "0"


def test_migrate_moves_everything_and_cuts_over(site):
    path, overrides, data = site
    t0 = time.monotonic()
    result = inv("db.migrate", "--to", "postgresql", "--inventory", path, *sets(overrides), check=False)
    FIGURES["migration (whole command)"] = round(time.monotonic() - t0, 1)
    assert result.returncode == 0, result.stdout + result.stderr
    tables = re.findall(r"^  (ok  |DIFF) (\w+)\s+(\d+) -> (\d+)", result.stdout, re.M)
    assert tables and all(t[0] == "ok  " and t[2] == t[3] for t in tables), result.stdout
    names = {t[1] for t in tables}
    assert {"Users", "Teams", "Channels", "Posts", "FileInfo", "Sessions"} <= names
    m = re.search(r"([\d.]+) s without Mattermost; pgloader ([\d.]+) s", result.stdout)
    FIGURES["migration downtime"], FIGURES["pgloader"] = float(m[1]), float(m[2])
    pg = overrides + ["database.engine=postgresql"]
    assert '"DriverName": "postgres"' in on("app1", "cat /opt/mattermost/config/config.json")
    assert '"DriverName": "postgres"' in on("job1", "cat /opt/mattermost/config/config.json")
    verify = inv("verify", "--inventory", path, *sets(pg), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    status = inv("db.status", "--inventory", path, *sets(pg))
    assert "timeline" in status.stdout and "streaming" in status.stdout, status.stdout
    assert on("db1", "mysql -NB -e 'SELECT @@global.read_only'").strip() == "1"  # kept for a rollback
    c = Client(mmdeploy.load(path, pg))
    assert c.get("/users/username/ada")["email"] == "ada@example.com"
    assert c.get("/teams/name/migrated")["id"] == data["team"]["id"]
    assert c.get(f"/channels/{data['channel']['id']}")["team_id"] == data["team"]["id"]
    for post in data["posts"]:
        got = c.get(f"/posts/{post['id']}")
        assert got and got["message"] == post["message"], (post, got)
    file_id, content = data["file"]
    assert c.http.get(f"{c.base}/files/{file_id}").content == content
    assert c.get(f"/posts/{data['posts'][0]['id']}")["file_ids"] == [file_id]
    fresh = c.post("/posts", json={"channel_id": data["channel"]["id"], "message": "written on PostgreSQL"})
    assert (
        on(
            "db1",
            "cd /tmp && runuser -u postgres -- psql -XAtq -d mattermost -c "
            f"\"select message from posts where id = '{fresh['id']}'\"",
        ).strip()
        == "written on PostgreSQL"
    )
