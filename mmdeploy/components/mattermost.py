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

from ..artifacts import Artifact
from ..component import Component, Context
from ..errors import MMDeployError
from ..inventory import Host, Inventory
from ..ops import Command, Directory, File, Group, JsonSettings, Packages, Service, Unpacked, User, unit
from ..ops.secretfile import SecretFile
from ..settings import Settings

HOME = "/opt/mattermost"
RELEASES = "/opt/mattermost-releases"
CONFIG = f"{HOME}/config/config.json"
LICENSE = f"{HOME}/config/mattermost.mattermost-license"
SOCKET = "/var/tmp/mattermost_local.socket"
MMCTL = f"{HOME}/bin/mmctl --local"
WAIT_FOR_SOCKET = f"for i in $(seq 120); do test -S {SOCKET} && {MMCTL} user list >/dev/null 2>&1 && break; sleep 1; done\n"
# mattermost.config_in_database: the units' environment (MM_CONFIG holds the DB password)
# and the keys mmdeploy owns, patched into the database config with mmctl.
ETC = "/etc/mattermost"
ENV_FILE = f"{ETC}/mattermost.env"
CONFIG_PATCH = f"{ETC}/config-patch.json"
# What the server owns inside /opt/mattermost and a release copy must never overwrite.
PERSISTENT = ("config", "data", "logs", "plugins", "client/plugins")


def release_url(version: str, edition: str) -> str:
    """The official download URL of a release (the team edition has its own archive)."""
    name = "mattermost" if edition == "enterprise" else "mattermost-team"
    return f"https://releases.mattermost.com/{version}/{name}-{version}-linux-amd64.tar.gz"


def artifact(settings: Settings) -> Artifact:
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


def datasource(settings: Settings, db: Host, password: str) -> str:
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
    password = ctx.secrets.get("db_password")
    runs_jobs = host.has("jobserver") or not dedicated_jobserver(ctx.inventory)
    apps = ctx.inventory.with_role("app")
    smtp = s.smtp
    smtp_password = ctx.secrets.optional("smtp_password") or ""
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


class Mattermost(Component):
    name = "mattermost"
    after = ("base", "postgresql-replication", "mysql-replication")

    def hosts(self, inventory):
        return [h for h in inventory.hosts if h.has("app") or h.has("jobserver")]

    def prepare(self, inventory, view):
        from .. import dbtier

        return dbtier.live_topology(inventory, view)

    def steps(self, ctx: Context):
        primary, replicas = ctx.shared
        s, mm, host = ctx.settings, ctx.settings.mattermost, ctx.host
        release = f"{RELEASES}/{mm.version}"
        restart = ("restart",)
        steps = [
            Packages("rsync", "curl", "jq"),
            Group("mattermost"),
            User("mattermost", home=HOME),
            Directory(RELEASES),
            Unpacked(artifact(s), release, fetch_on_host=mm.fetch_on_host),
            Directory(HOME, owner="mattermost", group="mattermost", mode="0755"),
            # The release's files into the live install, never its config/data/logs/plugins.
            # --ignore-times: two releases may hold same-size files with the same mtime
            # (reproducible builds), which rsync's quick check would skip.
            Command(
                f"activate release {mm.version}",
                f"set -e\nrsync -a --ignore-times --delete {' '.join(f'--exclude=/{p}' for p in PERSISTENT)} "
                f"--exclude=/.mmdeploy-sha256 {release}/ {HOME}/\n"
                f"for d in {' '.join(PERSISTENT)}; do install -d -o mattermost -g mattermost -m 0750 {HOME}/$d; done\n"
                f"test -e {CONFIG} || install -o mattermost -g mattermost -m 0600 {release}/config/config.json {CONFIG}\n"
                f"chown -R mattermost:mattermost {HOME}\n"
                f"cp {release}/.mmdeploy-sha256 {HOME}/.mmdeploy-release\n",
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
        if host.has("app") and host.name == ctx.inventory.with_role("app")[0].name:
            steps += self._first_admin_and_team(ctx)
        return steps

    def checks(self, inventory):
        from ..component import Check

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
        name = "mattermost" if ctx.host.has("app") else "mattermost-jobserver"
        handlers = {"restart": Command(f"restart {name}", f"systemctl restart {name}")}
        if ctx.settings.mattermost.config_in_database and ctx.host.has("app"):
            # Listeners and SqlSettings are read at start-up: restart after the patch.
            handlers["patch-config"] = Command(
                "patch the database config",
                f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} config patch {CONFIG_PATCH}\nsystemctl restart {name}\n")
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

    def _first_admin_and_team(self, ctx: Context):
        """The first system admin and team, with real `mmctl --local` commands. mmctl takes
        a password only on its command line, so the user is created with a throwaway one
        and the real password is set as a bcrypt hash: no secret in the process list."""
        import bcrypt

        mm = ctx.settings.mattermost
        user, team = shlex.quote(mm.admin_username), shlex.quote(mm.team_name)
        password = ctx.secrets.get("mattermost_admin_password")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
        return [
            Command(
                f"first admin {mm.admin_username}",
                f"set -e\n{WAIT_FOR_SOCKET}"
                f"{MMCTL} user create --email {shlex.quote(mm.admin_email)} --username {user} "
                f"--password \"$(head -c 24 /dev/urandom | base64)\" --system-admin\n"
                f"{MMCTL} user change-password {user} --hashed --password {shlex.quote(hashed)}\n",
                unless=f"{MMCTL} user list 2>/dev/null | grep -qw {user}",
            ),
            Command(
                f"team {mm.team_name}",
                f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} team create --name {team} --display-name {team}\n"
                f"{MMCTL} team users add {team} {user}\n",
                unless=f"{MMCTL} team list 2>/dev/null | grep -qw {team}",
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
        self.password = Secrets(inventory.secrets_path, Redactor()).optional("mattermost_admin_password")
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
