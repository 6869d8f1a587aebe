"""Mattermost: the application servers (role app) and the job server (role jobserver).

Installed as Mattermost documents it: the live install in /opt/mattermost (bin, config,
data, logs, plugins, client) run by the system user `mattermost` under systemd. Each
release is unpacked side by side under /opt/mattermost-releases/<version> and copied into
/opt/mattermost without touching config, data, logs or plugins, so an upgrade keeps the
user's config and data and the previous release stays on disk for a rollback.
"""

from __future__ import annotations

import json
import shlex
from urllib.parse import quote

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ..artifacts import Artifact
from ..component import Check, Component, Context, Metrics, Role
from ..dbtier import Topology, read_topology
from ..dbtier.component import DB_PASSWORD
from ..errors import MMDeployError
from ..inventory import Host, Inventory
from ..ops import Command, Directory, File, Group, JsonSettings, Packages, Service, Unpacked, User, unit
from ..ops.secretfile import SecretFile
from ..secrets import Secret
from ..settings import Section

HOME = "/opt/mattermost"
RELEASES = "/opt/mattermost-releases"
CONFIG = f"{HOME}/config/config.json"
LICENSE = f"{HOME}/config/mattermost.mattermost-license"
SOCKET = "/var/tmp/mattermost_local.socket"
# Every mmctl call has its own time limit: the server behind the socket may wait on a
# database that does not answer.
MMCTL = f"timeout 20 {HOME}/bin/mmctl --local"
WAIT_FOR_SOCKET = (f"for i in $(seq 120); do test -S {SOCKET} && {MMCTL} user list >/dev/null 2>&1 && break; "
                   "sleep 1; done\n")
# A restart waits this long for a clean stop, then kills: a server whose database died
# may never finish its in-flight requests. After a failover the wait is short (nothing
# it holds can complete); a start waits for the server's READY (schema migrations).
STOP_GRACE, STOP_GRACE_FAILOVER, START_LIMIT = 30, 1, 600
# mattermost.config_in_database: the units' environment (MM_CONFIG holds the DB password)
# and the keys mmdeploy owns, patched into the database config with mmctl.
ETC = "/etc/mattermost"
ENV_FILE = f"{ETC}/mattermost.env"
CONFIG_PATCH = f"{ETC}/config-patch.json"
# What the server owns inside /opt/mattermost and a release copy must never overwrite.
PERSISTENT = ("config", "data", "logs", "plugins", "client/plugins")


class MattermostSettings(Section):
    version: str = Field(default="10.11.4", pattern=r"^\d+\.\d+\.\d+$")
    edition: Literal["enterprise", "team"] = "enterprise"
    # The release archive: official URL unless a mirror or local file is given; the
    # sha256 is required (from the release page, or the mirror's .sha256 file).
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    fetch_on_host: bool = False  # hosts download the archive themselves instead of an upload
    port: int = Field(default=8065, ge=1, le=65535)
    metrics_port: int = Field(default=8067, ge=1, le=65535)
    license_file: str | None = None  # path on the control machine (Enterprise features)
    require_email_verification: bool = False
    restrict_creation_to_domains: str = ""  # comma-separated e-mail domains
    admin_username: str = "sysadmin"
    admin_email: str = "sysadmin@example.com"
    team_name: str = Field(default="main", pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    # The config lives in the database (MM_CONFIG=<DSN>) instead of config.json: one
    # config for all servers, editable in the System Console on any of them.
    config_in_database: bool = False
    # Deep-merged into config.json last: any of Mattermost's settings, e.g.
    # {"ServiceSettings": {"EnableCustomEmoji": true}}.
    config: dict = {}


class SMTPSettings(Section):
    """Outgoing mail. The password is a secret: MMDEPLOY_SECRET_SMTP_PASSWORD or the key
    smtp_password in the secrets file, never the inventory."""

    host: str = ""  # empty: e-mail notifications off
    port: int = Field(default=587, ge=1, le=65535)
    username: str = ""
    security: Literal["", "TLS", "STARTTLS"] = "STARTTLS"
    from_address: str = "mattermost@example.com"


ADMIN_PASSWORD = Secret("mattermost_admin_password", "the first system admin's password")
SMTP_PASSWORD = Secret("smtp_password", "the SMTP server's password (never generated)", generate=False)


@dataclass(frozen=True)
class DBView:
    """What the component builds on: the DB tier's decision, and whether this run
    re-points servers right after a failover (then a restart does not wait)."""

    topology: Topology
    failover: bool = False


def release_url(version: str, edition: str) -> str:
    """The official download URL of a release (the team edition has its own archive)."""
    name = "mattermost" if edition == "enterprise" else "mattermost-team"
    return f"https://releases.mattermost.com/{version}/{name}-{version}-linux-amd64.tar.gz"


def artifact(settings: Any) -> Artifact:
    mm = settings.mattermost
    if not mm.sha256:
        raise MMDeployError(
            "settings.mattermost.sha256 is required: the SHA-256 of the release archive "
            f"(published with {release_url(mm.version, mm.edition)})"
        )
    return Artifact("mattermost", mm.version, mm.url or release_url(mm.version, mm.edition), mm.sha256)


def dedicated_jobserver(inventory: Inventory) -> bool:
    """A job server host that is not also an app server: then app servers run no jobs."""
    return any(h.has("jobserver") and not h.has("app") for h in inventory.hosts)


def datasource(settings: Any, db: Host, password: str) -> str:
    """The DSN Mattermost's SqlSettings takes, in the form its docs give per driver."""
    pw = quote(password, safe="")
    if settings.database.engine == "postgresql":
        return (f"postgres://mmuser:{pw}@{db.private_address}:5432/mattermost"
                "?sslmode=disable&connect_timeout=10&binary_parameters=yes")
    return (f"mmuser:{pw}@tcp({db.private_address}:3306)/mattermost"
            "?charset=utf8mb4,utf8&writeTimeout=30s")


def config(ctx: Context, primary: Host, replicas: list[Host]) -> dict:
    """The keys of config.json mmdeploy owns on this host (the server keeps the rest)."""
    s, mm, host = ctx.settings, ctx.settings.mattermost, ctx.host
    password = ctx.secrets.get(DB_PASSWORD)
    runs_jobs = host.has("jobserver") or not dedicated_jobserver(ctx.inventory)
    apps = ctx.inventory.with_role("app")
    smtp = s.smtp
    smtp_password = ctx.secrets.optional(SMTP_PASSWORD) or ""
    wanted = {
        "ServiceSettings": {
            "SiteURL": f"https://{s.domain}",
            "ListenAddress": f":{mm.port}",
            # mmctl --local (first admin, team) over a root-only unix socket.
            "EnableLocalMode": True,
            "LocalModeSocketLocation": SOCKET,
        },
        "SqlSettings": {
            "DriverName": "postgres" if s.database.engine == "postgresql" else "mysql",
            "DataSource": datasource(s, primary, password),
            "DataSourceReplicas": [datasource(s, r, password) for r in replicas],
        },
        "FileSettings": {"DriverName": "local", "Directory": f"{HOME}/data/"},
        "MetricsSettings": {"Enable": True, "ListenAddress": f":{mm.metrics_port}"},
        "EmailSettings": {
            "SendEmailNotifications": bool(smtp.host),
            "RequireEmailVerification": mm.require_email_verification,
            "SMTPServer": smtp.host,
            "SMTPPort": str(smtp.port),
            "SMTPUsername": smtp.username,
            "SMTPPassword": smtp_password,
            "EnableSMTPAuth": bool(smtp.username),
            "ConnectionSecurity": smtp.security,
            "FeedbackEmail": smtp.from_address,
        },
        "TeamSettings": {"RestrictCreationToDomains": mm.restrict_creation_to_domains},
        "LogSettings": {"EnableConsole": True, "ConsoleLevel": "INFO", "EnableFile": True,
                        "FileLocation": f"{HOME}/logs"},
        "JobSettings": {"RunJobs": runs_jobs, "RunScheduler": runs_jobs},
        "ClusterSettings": {"Enable": len(apps) > 1, "ClusterName": f"mmdeploy-{s.domain}"},
        "PluginSettings": {"Directory": f"{HOME}/plugins", "ClientDirectory": f"{HOME}/client/plugins"},
    }
    if mm.license_file:
        wanted["ServiceSettings"]["LicenseFileLocation"] = LICENSE
    from ..inventory import merge

    return merge(wanted, mm.config)


def restart(unit_name: str, grace: int) -> Command:
    """Restart within bounds: a clean stop for `grace` seconds, else killed; the start
    waits for the server's READY for at most START_LIMIT seconds."""
    return Command(f"restart {unit_name}", f"""\
set -e
if ! timeout {grace} systemctl stop {unit_name}; then
  echo "{unit_name} did not stop within {grace} s: killed" >&2
  systemctl kill --signal=SIGKILL {unit_name} || true
  timeout 30 systemctl stop {unit_name}
fi
timeout {START_LIMIT} systemctl start {unit_name} || {{ echo "{unit_name} was not ready within {START_LIMIT} s" >&2; exit 1; }}
""", timeout=grace + START_LIMIT + 60)


def activate_script(version: str) -> str:
    """Copy the release unpacked in RELEASES/<version> into the live install, never its
    config/data/logs/plugins; remember which release is live (.mmdeploy-release holds its
    sha256, .mmdeploy-version its version). The same for a deploy, an upgrade and a
    rollback. --ignore-times: two releases may hold same-size files with the same mtime
    (reproducible builds), which rsync's quick check would skip."""
    release = f"{RELEASES}/{version}"
    return (f"set -e\ntest -f {release}/.mmdeploy-sha256 || {{ echo 'release {version} is not on this host "
            f"({release})' >&2; exit 1; }}\n"
            f"rsync -a --ignore-times --delete {' '.join(f'--exclude=/{p}' for p in PERSISTENT)} "
            f"--exclude=/.mmdeploy-sha256 --exclude=/.mmdeploy-previous {release}/ {HOME}/\n"
            f"for d in {' '.join(PERSISTENT)}; do install -d -o mattermost -g mattermost -m 0750 {HOME}/$d; done\n"
            f"test -e {CONFIG} || install -o mattermost -g mattermost -m 0600 {release}/config/config.json {CONFIG}\n"
            f"chown -R mattermost:mattermost {HOME}\n"
            f"cp {release}/.mmdeploy-sha256 {HOME}/.mmdeploy-release\n"
            f"echo {version} > {HOME}/.mmdeploy-version\n")


def unit_name(host: Host) -> str:
    return "mattermost" if host.has("app") else "mattermost-jobserver"


class Mattermost(Component):
    """The release, config.json (or the database config), units and services of every app
    and job server. Follows the database: re-applied after a failover."""

    name = "mattermost"
    roles = ("app", "jobserver")
    owns_roles = (Role("app", "Mattermost app servers (in cluster mode when there are several)",
                       {"single": 1, "multi": 2, "cluster": 3}),
                  Role("jobserver", "the Mattermost job server", {"single": 1, "multi": 1, "cluster": 1}))
    settings = {"mattermost": MattermostSettings, "smtp": SMTPSettings}
    secrets = (DB_PASSWORD, SMTP_PASSWORD)
    metrics = (Metrics("mattermost", lambda s: s.mattermost.metrics_port),)
    after = ("base", "postgresql-replication", "mysql-replication")
    follows_db = True

    def prepare(self, inventory, view):
        return DBView(read_topology(inventory, view))

    def after_failover(self, topology: Topology) -> DBView:
        return DBView(topology, failover=True)

    def steps(self, ctx: Context):
        view: DBView = ctx.shared
        primary, replicas = view.topology.require_primary(), view.topology.readers
        s, mm, host = ctx.settings, ctx.settings.mattermost, ctx.host
        if view.failover and not ctx.facts.get([f"test -f {CONFIG}"])[f"test -f {CONFIG}"].ok:
            return []  # never deployed here: a failover re-points servers, it does not install them
        release = f"{RELEASES}/{mm.version}"
        restart = ("restart",)
        steps = [
            Packages("rsync", "curl", "jq"),
            Group("mattermost"),
            User("mattermost", home=HOME),
            Directory(RELEASES),
            Unpacked(artifact(s), release, fetch_on_host=mm.fetch_on_host),
            Directory(HOME, owner="mattermost", group="mattermost", mode="0755"),
            # The release's files into the live install (see activate_script).
            Command(
                f"activate release {mm.version}",
                activate_script(mm.version),
                unless=f"cmp -s {release}/.mmdeploy-sha256 {HOME}/.mmdeploy-release",
                notify=restart,
            ),
        ]
        if mm.license_file:
            try:
                license_text = open(mm.license_file, "rb").read()
            except OSError as e:
                raise MMDeployError(f"settings.mattermost.license_file: cannot read {mm.license_file}: {e}") from None
            steps.append(File(LICENSE, license_text, owner="mattermost", group="mattermost", mode="0600",
                              notify=restart))
        wanted = config(ctx, primary, replicas)
        if mm.config_in_database:
            steps += self._config_in_database(ctx, wanted)
        else:
            steps.append(JsonSettings(CONFIG, wanted, owner="mattermost", group="mattermost", mode="0600",
                                      notify=restart))
        env_file = ENV_FILE if mm.config_in_database else ""
        if host.has("app"):
            steps += [unit("mattermost.service", ctx.render("mattermost/mattermost.service.j2", command="",
                                                            env_file=env_file), notify=restart),
                      Service("mattermost")]
        else:  # a dedicated job server
            steps += [unit("mattermost-jobserver.service",
                           ctx.render("mattermost/mattermost.service.j2", command=" jobserver", env_file=env_file),
                           notify=restart),
                      Service("mattermost-jobserver")]
        return steps

    def checks(self, inventory):
        if not inventory.with_role("proxy"):
            return []
        site = SiteChecks(inventory)
        return [
            Check("HTTPS ping through NGINX over HTTP/2", site.ping),
            Check(f"login as {site.mm.admin_username}", site.login),
            Check("post created through the API and read back", site.post_roundtrip),
            Check("websocket upgrade through NGINX", site.websocket),
        ]

    def handlers(self, ctx: Context):
        name = unit_name(ctx.host)
        grace = STOP_GRACE_FAILOVER if ctx.shared.failover else STOP_GRACE
        handlers = {"restart": restart(name, grace)}
        if ctx.settings.mattermost.config_in_database and ctx.host.has("app"):
            # Listeners and SqlSettings are read at start-up: restart after the patch.
            again = restart(name, STOP_GRACE)
            handlers["patch-config"] = Command(
                "patch the database config",
                f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} config patch {CONFIG_PATCH}\n{again.script}",
                timeout=again.timeout + 180)
        return handlers

    def _config_in_database(self, ctx: Context, wanted: dict) -> list:
        """MM_CONFIG=<DSN> for the units from a root-only environment file, and the keys
        mmdeploy owns as a 0600 patch file that `mmctl --local config patch` applies when it
        changes. The database config is shared by all servers, so what differs per host
        (which one runs the jobs) goes into the environment, which Mattermost overrides
        on top of the stored config without saving it."""
        jobs, dsn = wanted["JobSettings"], wanted["SqlSettings"]["DataSource"]
        env = {
            # Mattermost tells a database store from a file by the DSN's scheme.
            "MM_CONFIG": dsn if wanted["SqlSettings"]["DriverName"] == "postgres" else "mysql://" + dsn,
            # As Mattermost's docs advise: after a failover the stored DataSource still names
            # the old primary until the patch lands, and the server must start to take it.
            "MM_SQLSETTINGS_DATASOURCE": dsn,
            # mmctl --local on first start, before the patch has set it in the database.
            "MM_SERVICESETTINGS_ENABLELOCALMODE": "true",
            "MM_JOBSETTINGS_RUNJOBS": str(jobs.pop("RunJobs")).lower(),
            "MM_JOBSETTINGS_RUNSCHEDULER": str(jobs.pop("RunScheduler")).lower(),
        }
        if not jobs:
            del wanted["JobSettings"]
        steps = [Directory(ETC, mode="0755"),
                 SecretFile(ENV_FILE, "".join(f'{k}="{v}"\n' for k, v in env.items()), notify=("restart",))]
        if ctx.host.has("app"):  # a job server has no local socket; the app servers patch
            steps.append(SecretFile(CONFIG_PATCH, json.dumps(wanted, indent=2, sort_keys=True) + "\n",
                                    notify=("patch-config",)))
        return steps


class MattermostAdmin(Component):
    """The first system admin and team, on the first app server, once Mattermost runs
    (after the mattermost component's restart): the only part of a deploy that needs the
    database through Mattermost, so re-pointing after a failover never waits on it."""

    name = "mattermost-admin"
    roles = ("app",)
    secrets = (ADMIN_PASSWORD,)
    after = ("mattermost",)

    def hosts(self, inventory):
        return inventory.with_role("app")[:1]

    def steps(self, ctx: Context):
        """The first system admin and team, with real `mmctl --local` commands. mmctl takes
        a password only on its command line, so the user is created with a throwaway one
        and the real password is set as a bcrypt hash: no secret in the process list."""
        import bcrypt

        mm = ctx.settings.mattermost
        user, team = shlex.quote(mm.admin_username), shlex.quote(mm.team_name)
        password = ctx.secrets.get(ADMIN_PASSWORD)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
        return [
            Command(
                f"first admin {mm.admin_username}",
                f"set -e\n{WAIT_FOR_SOCKET}"
                f"{MMCTL} user create --email {shlex.quote(mm.admin_email)} --username {user} "
                f"--password \"$(head -c 24 /dev/urandom | base64)\" --system-admin\n"
                f"{MMCTL} user change-password {user} --hashed --password {shlex.quote(hashed)}\n",
                unless=f"{MMCTL} user list 2>/dev/null | grep -w {user} >/dev/null",
            ),
            Command(
                f"team {mm.team_name}",
                f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} team create --name {team} --display-name {team}\n"
                f"{MMCTL} team users add {team} {user}\n",
                unless=f"{MMCTL} team list 2>/dev/null | grep -w {team} >/dev/null",
            ),
        ]



# --- verify: only Mattermost's real API v4, through the NGINX proxy -----------------------


class SiteChecks:
    """End-to-end checks of a deployed site, run from the control machine through NGINX:
    ping over HTTP/2, login, a post written and read back, a websocket hello."""

    def __init__(self, inventory: Inventory):
        from ..secrets import Redactor, Secrets

        self.inventory = inventory
        self.proxy = inventory.with_role("proxy")[0]
        self.base = f"https://{self.proxy.address}"
        s = inventory.settings
        self.domain, self.mm = s.domain, s.mattermost
        # The test bed's certificate is self-signed by mmdeploy: nothing to verify it against.
        self.verify_tls = s.tls.mode != "self-signed"
        self.password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
        self.token: str | None = None

    def client(self):
        import httpx

        return httpx.Client(http2=True, verify=self.verify_tls, timeout=10,
                            headers={"Host": self.domain, "X-Requested-With": "XMLHttpRequest"})

    def ping(self) -> str | None:
        with self.client() as c:
            r = c.get(f"{self.base}/api/v4/system/ping", params={"get_server_status": "true"})
        if r.http_version != "HTTP/2":
            return f"ping answered over {r.http_version}, expected HTTP/2"
        if r.status_code != 200 or r.json().get("status") != "OK":
            return f"ping: HTTP {r.status_code} {r.text[:200]}"
        return None

    def login(self) -> str | None:
        if not self.password:
            return "no admin password in the secrets file (was the site deployed by mmdeploy?)"
        with self.client() as c:
            r = c.post(f"{self.base}/api/v4/users/login",
                       json={"login_id": self.mm.admin_username, "password": self.password})
        if r.status_code != 200 or not r.headers.get("Token"):
            return f"login as {self.mm.admin_username}: HTTP {r.status_code} {r.text[:200]}"
        self.token = r.headers["Token"]
        return None

    def post_roundtrip(self) -> str | None:
        import time

        if not self.token and (problem := self.login()):
            return problem
        auth = {"Authorization": f"Bearer {self.token}"}
        with self.client() as c:
            team = c.get(f"{self.base}/api/v4/teams/name/{self.mm.team_name}", headers=auth)
            if team.status_code != 200:
                return f"team {self.mm.team_name}: HTTP {team.status_code}"
            channel = c.get(f"{self.base}/api/v4/teams/{team.json()['id']}/channels/name/town-square", headers=auth)
            if channel.status_code != 200:
                return f"channel town-square: HTTP {channel.status_code}"
            message = f"mmdeploy verify {time.time():.0f}"
            created = c.post(f"{self.base}/api/v4/posts", headers=auth,
                             json={"channel_id": channel.json()["id"], "message": message})
            if created.status_code != 201:
                return f"create post: HTTP {created.status_code} {created.text[:200]}"
            # A replica may lag a moment behind the primary; read until it has the post.
            for _ in range(20):
                got = c.get(f"{self.base}/api/v4/posts/{created.json()['id']}", headers=auth)
                if got.status_code == 200 and got.json().get("message") == message:
                    return None
                time.sleep(0.25)
        return f"post {created.json()['id']} could not be read back: HTTP {got.status_code}"

    def websocket(self) -> str | None:
        import json
        import ssl

        from websockets.sync.client import connect

        if not self.token and (problem := self.login()):
            return problem
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        url = f"wss://{self.proxy.address}/api/v4/websocket"
        try:
            with connect(url, ssl=context, additional_headers={"Authorization": f"Bearer {self.token}"},
                         open_timeout=10) as ws:
                event = json.loads(ws.recv(timeout=10))
        except Exception as e:  # handshake refused, timeout, TLS error: all are the finding
            return f"websocket upgrade at {url}: {type(e).__name__}: {e}"
        return None if event.get("event") == "hello" else f"websocket: expected a hello event, got {event}"


COMPONENTS = [Mattermost(), MattermostAdmin()]
