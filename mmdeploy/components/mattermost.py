"""Mattermost: the application servers (role app) and the job server (role jobserver).

Installed as Mattermost documents it: the live install in /opt/mattermost (bin, config,
data, logs, plugins, client) run by the system user `mattermost` under systemd. Each
release is unpacked side by side under /opt/mattermost-releases/<version> and copied into
/opt/mattermost without touching config, data, logs or plugins, so an upgrade keeps the
user's config and data and the previous release stays on disk for a rollback.

With several app servers (or always in the multi and cluster patterns) the servers form a
Mattermost cluster as its high availability docs describe: the same ClusterName on every
node, gossip on 8074 (TCP and UDP) at each host's private address, the documented kernel
and file limits, time kept by chrony. The services of those patterns are wired in when the
inventory has their hosts: S3 file storage, OpenSearch/Elasticsearch (bulk-indexed once by
the job server) and the push proxy, each at its internal balancer address (balancer.py).
Cluster mode, search and read replicas need an Enterprise license (mattermost.license_file):
without one everything is configured anyway, and `verify` says which features are inactive.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import re
import secrets as secrets_module
import shlex
from urllib.parse import quote

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from .. import balancer, releases
from ..artifacts import Artifact
from ..component import CONTROL, Check, Component, Context, Info, Metrics, Port, Role, Warn, live, settled
from ..dbtier import Topology, client_endpoints, engine_for, read_topology
from ..dbtier.component import DB_PASSWORD
from ..errors import MMDeployError, StepFailed
from ..grammar import Address, DomainList, Email, ReadableFile, Source, SysctlKey, SysctlValue, hostport
from ..inventory import Host, Inventory
from ..ops import (
    NOW,
    Command,
    Directory,
    File,
    Group,
    JsonSettings,
    OneAtATime,
    Packages,
    Service,
    Sysctl,
    Unpacked,
    User,
    started_since,
    unit,
)
from ..ops.exporter import env_file
from ..ops.secretfile import SecretFile
from ..remote import Remote
from ..secrets import Secret
from ..step import Change, Step, run_checked
from ..settings import Section

HOME = "/opt/mattermost"
RELEASES = "/opt/mattermost-releases"
CONFIG = f"{HOME}/config/config.json"
LICENSE = f"{HOME}/config/mattermost.mattermost-license"
SOCKET = "/var/tmp/mattermost_local.socket"
# Every mmctl call has its own time limit: the server behind the socket may wait on a
# database that does not answer.
MMCTL = f"timeout 20 {HOME}/bin/mmctl --local"
WAIT_FOR_SOCKET = (
    f"for i in $(seq 120); do test -S {SOCKET} && {MMCTL} user list >/dev/null 2>&1 && break; sleep 1; done\n"
)
# A restart waits this long for a clean stop, then kills: a server whose database died
# may never finish its in-flight requests. After a failover the wait is short (nothing
# it holds can complete); a start waits for the server's READY (schema migrations).
STOP_GRACE, STOP_GRACE_FAILOVER, START_LIMIT = 30, 1, 600
# mattermost.config_in_database: the units' environment (MM_CONFIG holds the DB password)
# and the keys mmdeploy owns, patched into the database config with mmctl.
ETC = "/etc/mattermost"
ENV_FILE = f"{ETC}/mattermost.env"
CONFIG_PATCH = f"{ETC}/config-patch.json"
# Every app server patches the one config in the database, at the same moment in a
# deploy. Mattermost stores each version in one transaction, and the second of two
# concurrent saves fails on the unique active row; asked again, the server finds the
# config already as patched and saves nothing. A config it refuses fails each time.
PATCH_SHARED_CONFIG = f"""\
for attempt in 1 2 3 4; do
  if {MMCTL} config patch {CONFIG_PATCH}; then break; fi
  if [ "$attempt" = 4 ]; then exit 1; fi
  sleep $((1 + RANDOM % 3))
done
"""
# What the server owns inside /opt/mattermost and a release copy must never overwrite.
PERSISTENT = ("config", "data", "logs", "plugins", "client/plugins")
GOSSIP_PORT = 8074
# Mattermost's high availability docs ("Configuration and compatibility"): more room for
# websocket connections on every app server. Left out of its list: vm.min_free_kbytes (2%
# of the host's memory: a per-machine figure), BBR/fq (a kernel module and qdisc) and the
# TCP buffer sizes (tuned for one 10 Gbit/s network). Changed: the ephemeral range starts
# at 20000, not 1025, above every port the servers mmdeploy puts on an app or job server
# listen on (node exporter 9100; on the job/monitoring host Prometheus, Alertmanager,
# Grafana, and with two storage hosts SeaweedFS's master and volume server, whose gRPC
# ports go up to 19333): a port in the range can be the local port of an outgoing
# connection, and a server restarted then cannot bind it until that connection ends (a
# SeaweedFS filer never listened). Still 45,000 ports, 1.6 times the kernel's default.
# Added: the ports Mattermost listens on are reserved, for a range set lower by hand.
HA_SYSCTL = {
    "net.ipv4.ip_local_port_range": "20000 65000",
    "net.ipv4.ip_local_reserved_ports": "8065,8067,8074",
    "net.ipv4.tcp_fin_timeout": "30",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_max_syn_backlog": "8192",
    "net.ipv4.tcp_slow_start_after_idle": "0",
}
# The same docs raise the open files to 65536 and processes to 8192; for a systemd service
# that is the unit's limits (limits.conf applies to login sessions only). The default unit
# keeps the install guide's 49152.
HA_LIMITS = {"nofile": 65536, "nproc": 8192}


class MattermostSettings(Section):
    version: str = Field(default=releases.DEFAULT_VERSION, pattern=r"^\d+\.\d+\.\d+$")
    edition: Literal["enterprise", "team"] = "enterprise"
    # The release archive: official URL unless a mirror or local file is given; the
    # sha256 is required (from the release page, or the mirror's .sha256 file).
    url: Source | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    fetch_on_host: bool = False  # hosts download the archive themselves instead of an upload
    port: int = Field(default=8065, ge=1, le=65535)
    metrics_port: int = Field(default=8067, ge=1, le=65535)
    # The Enterprise license, a file on the control machine: installed before the first
    # start, uploaded (mmctl license upload) when it changes later.
    license_file: ReadableFile | None = None
    require_email_verification: bool = False
    restrict_creation_to_domains: DomainList = ""  # comma-separated e-mail domains
    # Mattermost's user name rule: a letter, then letters, digits, ".", "-" or "_" (3-22).
    admin_username: str = Field(default="sysadmin", pattern=r"^[a-z][a-z0-9._-]{2,21}$")
    admin_email: Email = "sysadmin@example.com"
    team_name: str = Field(default="main", pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    # The config lives in the database (MM_CONFIG=<DSN>) instead of config.json: one
    # config for all servers, editable in the System Console on any of them. The multi and
    # cluster patterns turn it on (patterns.py).
    config_in_database: bool = False
    # Cluster mode (several app servers, or the multi/cluster pattern): only nodes with the
    # same name join; empty: derived from the site's domain, the same on every node.
    cluster_name: str = ""
    # Kernel settings for the app and job servers of a cluster ({} to leave the kernel alone).
    ha_sysctl: dict[SysctlKey, SysctlValue] = HA_SYSCTL
    # Deep-merged into config.json last: any of Mattermost's settings, e.g.
    # {"ServiceSettings": {"EnableCustomEmoji": true}}.
    config: dict = {}


class SMTPSettings(Section):
    """Outgoing mail. The password is a secret: MMDEPLOY_SECRET_SMTP_PASSWORD or the key
    smtp_password in the secrets file, never the inventory."""

    host: Address | Literal[""] = ""  # empty: e-mail notifications off
    port: int = Field(default=587, ge=1, le=65535)
    username: str = ""
    security: Literal["", "TLS", "STARTTLS"] = "STARTTLS"
    from_address: Email = "mattermost@example.com"


class TimeSettings(Section):
    """Time sync with chrony on the servers of a Mattermost cluster (its docs require it, so
    that posts are ordered alike on every node). No servers: Debian's NTP pool."""

    servers: list[Address] = []


ADMIN_PASSWORD = Secret("mattermost_admin_password", "the first system admin's password", max_bytes=72)
# Declared identically by the storage component, which creates the S3 user.
STORAGE_ACCESS_KEY = Secret(
    "storage_access_key", "the S3 access key of Mattermost's file storage bucket", pattern=r"[A-Za-z0-9._-]{3,128}"
)
STORAGE_SECRET_KEY = Secret("storage_secret_key", "the S3 secret key of Mattermost's file storage bucket")
# Keys the server generates on its first start when they are empty (server/public/model/
# config.go SetDefaults): with the config in files, each server would pick its own, and a
# public link or a value encrypted on one server would not work on another. Every server
# gets the first app server's (it keeps them), or these secrets on a fresh site.
AT_REST_KEY = Secret(
    "mattermost_at_rest_encrypt_key", "Mattermost's SqlSettings.AtRestEncryptKey, the same on every server"
)
PUBLIC_LINK_SALT = Secret(
    "mattermost_public_link_salt", "Mattermost's FileSettings.PublicLinkSalt, the same on every server"
)
SHARED_GENERATED = (
    ("SqlSettings", "AtRestEncryptKey", AT_REST_KEY),
    ("FileSettings", "PublicLinkSalt", PUBLIC_LINK_SALT),
)
SMTP_PASSWORD = Secret("smtp_password", "the SMTP server's password (never generated)", generate=False)


@dataclass(frozen=True)
class DBView:
    """What the component builds on: the DB tier's decision, and whether this run
    re-points servers right after a failover (then a restart does not wait)."""

    topology: Topology
    failover: bool = False
    # The primary's stored password verifiers (a Fact of engine.account_probe), to make
    # sure the database takes db_password before the servers are switched to it.
    accounts: Any = None
    accounts_error: str = ""
    engine: Any = None  # the dbtier Engine that reads them
    # The first app server's own AtRestEncryptKey and PublicLinkSalt (see SHARED_GENERATED);
    # None: nothing to share (one server, or the config in the database).
    generated: dict[str, str] | None = None


class DatabaseAccepts(Step):
    """Mattermost is given a (changed) db_password only once the database takes it: the
    database components set it first; if that failed (a DB host down), switching the
    servers would lock them out at their next connection, so this host stops here with the
    old password still working."""

    def __init__(self, view: DBView, client: str, password: str):
        self.view, self.client, self.password = view, client, password
        self.engine = view.engine
        self.name = "database accepts db_password"

    def check(self, facts):
        if (
            self.view.accounts is not None
            and self.view.accounts.ok
            and self.engine.account_matches(self.view.accounts, "mmuser", self.client, self.password)
        ):
            return None
        why = self.view.accounts_error or "it does not take the current db_password yet"
        return Change(f"wait: {why} (the database components set it first)")

    def apply(self, remote, change):
        raise StepFailed(
            f"not switching Mattermost to db_password: the database primary "
            f"{self.view.topology.require_primary().name} does not take it "
            f"({change.summary}); the servers keep the password that works. Deploy the "
            f"database components (inv deploy --only {self.engine.name}), then this again"
        )


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


def clustered(inventory: Inventory) -> bool:
    """Cluster mode: more than one app server, or a pattern built for several."""
    return len(inventory.with_role("app")) > 1 or inventory.pattern in ("multi", "cluster")


def _cluster_nodes(inventory: Inventory) -> list[Host]:
    """The hosts that gossip: every app and job server, in cluster mode only."""
    if not clustered(inventory):
        return []
    return [h for h in inventory.hosts if h.has("app") or h.has("jobserver")]


def cluster_name(settings: Any) -> str:
    """The same on every node of a site (nodes with another name never join)."""
    return settings.mattermost.cluster_name or f"mmdeploy-{settings.domain}"


def read_generated(inventory: Inventory, view: Any) -> dict[str, str] | None:
    """The first app server's generated keys (SHARED_GENERATED) when several servers keep
    their config in files ({} when it has none yet); None when there is nothing to share.
    Read as a fact: its output is never logged."""
    servers = [h for h in inventory.hosts if h.has("app") or h.has("jobserver")]
    if len(servers) < 2 or inventory.settings.mattermost.config_in_database or not inventory.with_role("app"):
        return None
    probe = (
        f"jq -c '{{SqlSettings: .SqlSettings.AtRestEncryptKey, FileSettings: .FileSettings.PublicLinkSalt}}' {CONFIG}"
    )
    fact = view.facts(inventory.with_role("app")[0], [probe])[probe]
    try:
        found = json.loads(fact.out) if fact.ok else {}
    except ValueError:
        found = {}
    return {k: v for k, v in found.items() if isinstance(v, str) and v} if isinstance(found, dict) else {}


def dedicated_jobserver(inventory: Inventory) -> bool:
    """A job server host that is not also an app server: then app servers run no jobs."""
    return any(h.has("jobserver") and not h.has("app") for h in inventory.hosts)


def datasource(settings: Any, address: str, password: str) -> str:
    """The DSN Mattermost's SqlSettings takes, in the form its docs give per driver;
    `address` is "host:port" from dbtier.client_endpoints."""
    if settings.database.engine == "postgresql":  # a URL: the password percent-encoded
        return (
            f"postgres://mmuser:{quote(password, safe='')}@{address}/mattermost"
            "?sslmode=disable&connect_timeout=10&binary_parameters=yes"
        )
    # The MySQL driver's own form: it takes everything between the first ':' and the last
    # '@' (before the last '/') as the password, unescaped; so the password goes in as is.
    return f"mmuser:{password}@tcp({address})/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"


def listen_address(host: Host, port: int) -> str:
    """Where Mattermost listens on `host` (its API, its metrics): the private address, where
    the proxies and Prometheus reach it; on no other interface of the host."""
    return hostport(host.private_address, port)


def config(ctx: Context, primary: str, replicas: list[str]) -> dict:
    """The keys of config.json mmdeploy owns on this host (the server keeps the rest)."""
    s, mm, host = ctx.settings, ctx.settings.mattermost, ctx.host
    password = ctx.secrets.get(DB_PASSWORD)
    runs_jobs = host.has("jobserver") or not dedicated_jobserver(ctx.inventory)
    smtp = s.smtp
    smtp_password = ctx.secrets.optional(SMTP_PASSWORD) or ""
    wanted: dict[str, Any] = {
        "ServiceSettings": {
            "SiteURL": f"https://{s.domain}",
            "ListenAddress": listen_address(host, mm.port),
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
        "MetricsSettings": {"Enable": True, "ListenAddress": listen_address(host, mm.metrics_port)},
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
        "LogSettings": {
            "EnableConsole": True,
            "ConsoleLevel": "INFO",
            "EnableFile": True,
            "FileLocation": f"{HOME}/logs",
        },
        "JobSettings": {"RunJobs": runs_jobs, "RunScheduler": runs_jobs},
        "ClusterSettings": {
            "Enable": clustered(ctx.inventory),
            "ClusterName": cluster_name(s),
            "GossipPort": GOSSIP_PORT,
            # The other nodes reach this one at its private address (UseIPAddress would pick
            # the first non-loopback interface, which on a host with several may be the wrong one).
            "AdvertiseAddress": host.private_address,
            "UseIPAddress": True,
        },
        "PluginSettings": {"Directory": f"{HOME}/plugins", "ClientDirectory": f"{HOME}/client/plugins"},
    }
    if mm.license_file:
        wanted["ServiceSettings"]["LicenseFileLocation"] = LICENSE
    from ..inventory import merge

    return merge(wanted, services(ctx), mm.config)


def services(ctx: Context) -> dict:
    """The keys for the multi pattern's services, for each of them the inventory has hosts
    for: S3 file storage, search, push proxy, all at their internal balancer address."""
    s, inventory = ctx.settings, ctx.inventory
    wanted: dict = {}
    storage = inventory.with_role("storage") and balancer.endpoint(inventory, "storage")
    if storage:
        st = getattr(s, "storage", None)
        wanted["FileSettings"] = {
            "DriverName": "amazons3",
            "AmazonS3Endpoint": f"{storage[0]}:{storage[1]}",
            "AmazonS3Bucket": getattr(st, "bucket", "mattermost"),
            "AmazonS3Region": getattr(st, "region", "us-east-1"),
            "AmazonS3PathPrefix": "",
            # Plain HTTP: the storage tier is reached through the internal balancer on the
            # site's private network, which does not terminate TLS; the S3 requests are still
            # signed (SigV4), so they cannot be forged or replayed there.
            "AmazonS3SSL": bool(getattr(st, "ssl", False)),
            "AmazonS3SignV2": False,
            "AmazonS3AccessKeyId": ctx.secrets.get(STORAGE_ACCESS_KEY),
            "AmazonS3SecretAccessKey": ctx.secrets.get(STORAGE_SECRET_KEY),
        }
    search = inventory.with_role("search") and balancer.endpoint(inventory, "search")
    if search:
        se = getattr(s, "search", None)
        wanted["ElasticsearchSettings"] = {
            "ConnectionURL": f"http://{search[0]}:{search[1]}",
            "Backend": getattr(se, "engine", "opensearch"),
            "EnableIndexing": True,
            "EnableSearching": True,
            "EnableAutocomplete": True,
            "IndexPrefix": getattr(se, "index_prefix", ""),
        }
        if se is not None and hasattr(se, "replicas_for"):
            # Mattermost creates its indexes itself: with as many replicas as the search
            # tier keeps (one node's loss loses no index; a single node stays green).
            replicas = se.replicas_for(len(inventory.with_role("search")))
            wanted["ElasticsearchSettings"].update(
                {f"{kind}IndexReplicas": replicas for kind in ("Post", "Channel", "User")}
            )
    push = inventory.with_role("pushproxy") and balancer.endpoint(inventory, "pushproxy")
    if push:
        wanted["EmailSettings"] = {
            "SendPushNotifications": True,
            "PushNotificationServer": f"http://{push[0]}:{push[1]}",
        }
    return wanted


# Mattermost's own secret-bearing settings: those its model's Config.Sanitize() replaces
# with a fake value before showing a config (server/public/model/config.go), whether
# mmdeploy set them or the server generated them (AtRestEncryptKey, PublicLinkSalt).
SECRET_SETTINGS = (
    ("LdapSettings", "BindPassword"),
    ("FileSettings", "PublicLinkSalt"),
    ("FileSettings", "AmazonS3SecretAccessKey"),
    ("FileSettings", "ExportAmazonS3SecretAccessKey"),
    ("FileSettings", "AzureAccessKey"),
    ("FileSettings", "ExportAzureAccessKey"),
    ("EmailSettings", "SMTPPassword"),
    ("GitLabSettings", "Secret"),
    ("GoogleSettings", "Secret"),
    ("Office365Settings", "Secret"),
    ("OpenIdSettings", "Secret"),
    ("SqlSettings", "AtRestEncryptKey"),
    ("ElasticsearchSettings", "Password"),
    ("MessageExportSettings", "GlobalRelaySettings", "SMTPPassword"),
    ("ServiceSettings", "SplitKey"),
    ("ServiceSettings", "GoogleDeveloperKey"),
    ("ServiceSettings", "GiphySdkKey"),
    ("CacheSettings", "RedisPassword"),
)
# Data sources: only their password is masked (as Sanitize's PartiallyRedactDataSources),
# so a plan still shows which database a server is pointed at.
DATA_SOURCES = (("SqlSettings", "DataSource"),)
DATA_SOURCE_LISTS = (("SqlSettings", "DataSourceReplicas"), ("SqlSettings", "DataSourceSearchReplicas"))
# A plugin's settings are secret when its manifest says so, which mmdeploy cannot read:
# every plugin setting whose name suggests a secret is masked.
SECRET_NAME = re.compile(r"secret|password|passwd|token|key|salt|credential", re.I)
MASK = "********"


def mask_dsn(dsn: str) -> str:
    """A data source with its password masked: postgres://user:****@host/db, or the MySQL
    driver's user:****@tcp(host)/db (mysql:// prefixed in MM_CONFIG); anything else whole."""
    if not isinstance(dsn, str) or not dsn:
        return dsn
    m = re.match(r"^(postgres(?:ql)?://)([^/?#]*)@(.*)$", dsn, re.S)
    if m:
        user = m.group(2).split(":", 1)[0]
        return f"{m.group(1)}{user}:{MASK}@{m.group(3)}"
    body, prefix = (dsn[8:], "mysql://") if dsn.startswith("mysql://") else (dsn, "")
    slash = body.rfind("/")
    at = body.rfind("@", 0, slash) if slash > 0 else -1
    if at > 0 and "://" not in body:
        return f"{prefix}{body[:at].split(':', 1)[0]}:{MASK}{body[at:]}"
    return MASK


def _get(config: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


def _put(config: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def mask_config(config: dict, before: dict | None = None) -> dict:
    """A copy of a config.json with every secret masked. Given `before` (the config it
    replaces), a secret that differs from it shows as changed, never as its value."""
    out = json.loads(json.dumps(config))

    def masked(path: tuple, value: Any, shown: Any) -> Any:
        changed = before is not None and _get(before, path) != value
        return f"{shown} (changed)" if changed and isinstance(shown, str) else shown

    for path in SECRET_SETTINGS:
        value = _get(config, path)
        if isinstance(value, str) and value:
            _put(out, path, masked(path, value, MASK))
    for path in DATA_SOURCES:
        value = _get(config, path)
        if isinstance(value, str):
            _put(out, path, mask_dsn(value))
    for path in DATA_SOURCE_LISTS:
        value = _get(config, path)
        if isinstance(value, list):
            _put(out, path, [mask_dsn(v) for v in value])
    lag = _get(config, ("SqlSettings", "ReplicaLagSettings"))
    if isinstance(lag, list):
        for i, item in enumerate(lag):
            if isinstance(item, dict) and isinstance(item.get("DataSource"), str):
                out["SqlSettings"]["ReplicaLagSettings"][i]["DataSource"] = mask_dsn(item["DataSource"])
    plugins = _get(config, ("PluginSettings", "Plugins"))
    if isinstance(plugins, dict):
        for plugin, settings in plugins.items():
            if not isinstance(settings, dict):
                continue
            for key, value in settings.items():
                if SECRET_NAME.search(key) and value not in ("", None):
                    key_path: tuple = ("PluginSettings", "Plugins", plugin, key)
                    _put(out, key_path, masked(key_path, value, MASK))
    return out


def restart(unit_name: str, grace: int) -> Command:
    """Restart within bounds: a clean stop for `grace` seconds, else killed; the start
    waits for the server's READY for at most START_LIMIT seconds."""
    return Command(
        f"restart {unit_name}",
        f"""\
set -e
if ! timeout {grace} systemctl stop {unit_name}; then
  echo "{unit_name} did not stop within {grace} s: killed" >&2
  systemctl kill --signal=SIGKILL {unit_name} || true
  timeout 30 systemctl stop {unit_name}
fi
timeout {START_LIMIT} systemctl start {unit_name} || {{ echo "{unit_name} was not ready within {START_LIMIT} s" >&2; exit 1; }}
""",
        timeout=grace + START_LIMIT + 60,
    )


def activate_script(version: str) -> str:
    """Copy the release unpacked in RELEASES/<version> into the live install, never its
    config/data/logs/plugins; remember which release is live (.mmdeploy-release holds its
    sha256, .mmdeploy-version its version). The same for a deploy, an upgrade and a
    rollback. --ignore-times: two releases may hold same-size files with the same mtime
    (reproducible builds), which rsync's quick check would skip."""
    release = f"{RELEASES}/{version}"
    return (
        f"set -e\ntest -f {release}/.mmdeploy-sha256 || {{ echo 'release {version} is not on this host "
        f"({release})' >&2; exit 1; }}\n"
        f"rsync -a --ignore-times --delete {' '.join(f'--exclude=/{p}' for p in PERSISTENT)} "
        f"--exclude=/.mmdeploy-sha256 --exclude=/.mmdeploy-previous {release}/ {HOME}/\n"
        f"for d in {' '.join(PERSISTENT)}; do install -d -o mattermost -g mattermost -m 0750 {HOME}/$d; done\n"
        f"test -e {CONFIG} || install -o mattermost -g mattermost -m 0600 {release}/config/config.json {CONFIG}\n"
        f"chown -R mattermost:mattermost {HOME}\n"
        f"cp {release}/.mmdeploy-sha256 {HOME}/.mmdeploy-release\n"
        f"echo {version} > {HOME}/.mmdeploy-version\n"
    )


# NGINX takes back an app server it marked failed after fail_timeout (templates/nginx).
NGINX_FAIL_TIMEOUT = 10


class AppRestart(OneAtATime):
    """A restart handler of an app server beside others: one app server at a time, and the
    next one stops only once NGINX sends requests to this one again (its fail_timeout), so
    the site keeps answering. A server this run started (a first deploy) served nobody: it
    restarts at once, without the lock or the wait."""

    def __init__(self, command: Command, unit: str, started_after: int, key: str):
        super().__init__(
            f"{command.name} (one app server at a time)",
            f"{command.script}\nsleep {NGINX_FAIL_TIMEOUT}\n",
            key=key,
            timeout=command.timeout + NGINX_FAIL_TIMEOUT,
        )
        self.command = command
        self.fresh = started_since(unit, started_after)

    def apply(self, remote: Remote, change: Change) -> None:
        if remote.run(self.fresh, timeout=30, what="did this run start the server").ok:
            self.command.apply(remote, change)
        else:
            super().apply(remote, change)


def rolling(ctx: Context, command: Command) -> Command:
    """`command` (a restart) as an AppRestart with several app servers; as it is on the job
    server, with one app server, and right after a failover (every server then points at a
    dead primary: all restart at once)."""
    if not ctx.host.has("app") or len(ctx.inventory.with_role("app")) < 2 or ctx.shared.failover:
        return command
    started_after = int(ctx.facts.get([NOW])[NOW].out.strip() or 0)
    return AppRestart(command, unit_name(ctx.host), started_after, f"{ctx.inventory.path.resolve()}:mattermost-apps")


def unit_name(host: Host) -> str:
    return "mattermost" if host.has("app") else "mattermost-jobserver"


class MattermostRelease(Component):
    """The release unpacked, with the packages and the user it needs, on every app and job
    server. None of it depends on another host, so a cold deploy fetches and unpacks it
    while the database and the storage come up (issue #14); the mattermost component, which
    waits for those, activates it. `--only mattermost` brings it along (part_of)."""

    name = "mattermost-release"
    roles = ("app", "jobserver")
    after = ("base",)
    together = False  # each server unpacks its own copy
    part_of = "mattermost"

    def steps(self, ctx: Context):
        s, mm = ctx.settings, ctx.settings.mattermost
        return [
            Packages("rsync", "curl", "jq"),
            Group("mattermost"),
            User("mattermost", home=HOME),
            Directory(RELEASES),
            Unpacked(artifact(s), f"{RELEASES}/{mm.version}", fetch_on_host=mm.fetch_on_host),
        ]


class Mattermost(Component):
    """config.json (or the database config), units and services of every app and job
    server, and the release activated. Follows the database: re-applied after a failover."""

    name = "mattermost"
    roles = ("app", "jobserver")
    owns_roles = (
        Role(
            "app",
            "Mattermost app servers (in cluster mode when there are several)",
            {"single": 1, "multi": 2, "cluster": 3},
        ),
        Role("jobserver", "the Mattermost job server", {"single": 1, "multi": 1, "cluster": 1}),
    )
    settings = {"mattermost": MattermostSettings, "smtp": SMTPSettings, "time": TimeSettings}
    secrets = (DB_PASSWORD, SMTP_PASSWORD, STORAGE_ACCESS_KEY, STORAGE_SECRET_KEY, AT_REST_KEY, PUBLIC_LINK_SALT)
    metrics = (Metrics("mattermost", lambda s: s.mattermost.metrics_port),)
    ports = (
        # Users come through NGINX; besides the proxies only the other Mattermost servers
        # (they wait for the first one's first start) and verify's direct checks.
        # The job server serves no API: only app servers listen on the port.
        Port(
            "mattermost",
            lambda h: h.settings.mattermost.port,
            ("proxy", "app", "jobserver", CONTROL),
            why="NGINX on the proxies; the other servers (first start); verify from the control machine",
            when=lambda h: h.has("app"),
        ),
        # Gossip only in cluster mode (a single app server with a job server has none).
        Port("cluster gossip", GOSSIP_PORT, ("app", "jobserver"), on=lambda inv: _cluster_nodes(inv)),
        Port("cluster gossip", GOSSIP_PORT, ("app", "jobserver"), proto="udp", on=lambda inv: _cluster_nodes(inv)),
    )
    # The bucket and the push proxies exist before Mattermost first starts (its start-up
    # checks the file store); in multi and cluster it reaches the database, the S3
    # gateways and the push proxies through the internal balancer and its address.
    after = (
        "base",
        "mattermost-release",
        "postgresql-replication",
        "mysql-replication",
        "seaweedfs",
        "minio",
        "pushproxy",
        "haproxy",
        "keepalived-start",
    )
    follows_db = True

    def validate(self, settings):
        path = settings.mattermost.license_file
        if path and not os.path.isfile(os.path.expanduser(path)):
            return [("mattermost.license_file", f"no such file on this machine: {path}")]
        return []

    def warnings(self, inventory, today):
        """Release-support warnings, once per distinct version the inventory deploys."""
        found: list[str] = []
        for host in self.hosts(inventory):
            s = host.settings
            for w in releases.warnings(s.mattermost.version, today, s.database.engine):
                if w not in found:
                    found.append(w)
        return found

    def prepare(self, inventory, view):
        topology = read_topology(inventory, view)
        engine = engine_for(inventory.settings.database)
        try:
            primary = topology.require_primary()
            accounts = view.facts(primary, [engine.account_probe()])[engine.account_probe()]
            error = "" if accounts.ok else f"its accounts could not be read on {primary.name}"
        except MMDeployError as e:
            accounts, error = None, str(e)
        return DBView(
            topology, accounts=accounts, accounts_error=error, engine=engine, generated=read_generated(inventory, view)
        )

    def after_failover(self, topology: Topology) -> DBView:
        return DBView(topology, failover=True)

    def build_facts(self, host):
        return [CAN_SET_TIME, NOW]  # time_sync(), in cluster mode; rolling()

    def steps(self, ctx: Context):
        view: DBView = ctx.shared
        s, mm, host = ctx.settings, ctx.settings.mattermost, ctx.host
        if not_installed_in_failover(ctx):
            return []
        release = f"{RELEASES}/{mm.version}"
        restart = ("restart",)
        ha = clustered(ctx.inventory)
        # The release, its packages and user are in place (mattermost-release, applied first).
        steps: list[Step] = [
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
                license_text = open(os.path.expanduser(mm.license_file), "rb").read()
            except OSError as e:
                raise MMDeployError(f"settings.mattermost.license_file: cannot read {mm.license_file}: {e}") from None
            # In place before the first start, which stores it in the database; a server
            # that already has one there ignores the file: the "license" handler uploads it.
            steps.append(
                File(
                    LICENSE,
                    license_text,
                    owner="mattermost",
                    group="mattermost",
                    mode="0600",
                    notify=("license", *restart) if host.has("app") else restart,
                )
            )
        if not view.failover:  # a failover changes no password: nothing to wait for
            client = ctx.host.private_address
            if s.database.engine == "mysql":
                from .mysql.flavor import client_host

                client = client_host(client)
            steps.append(DatabaseAccepts(view, client, ctx.secrets.get(DB_PASSWORD)))
        if ha and not view.failover:  # a failover only re-points: nothing here changes then
            steps += [Sysctl(key, value) for key, value in mm.ha_sysctl.items()]
            steps += time_sync(ctx)
        wanted = wanted_config(ctx)
        if mm.config_in_database:
            steps += self._config_in_database(ctx, wanted)
        else:
            steps.append(
                JsonSettings(
                    CONFIG,
                    wanted,
                    owner="mattermost",
                    group="mattermost",
                    mode="0600",
                    notify=restart,
                    mask=mask_config,
                )
            )
        env_file = ENV_FILE if mm.config_in_database else ""
        limits = HA_LIMITS if ha else {"nofile": 49152, "nproc": None}
        name = unit_name(host)
        command = "" if host.has("app") else " jobserver"  # a dedicated job server
        steps.append(
            unit(
                f"{name}.service",
                ctx.render("mattermost/mattermost.service.j2", command=command, env_file=env_file, **limits),
                notify=restart,
            )
        )
        first = ctx.inventory.with_role("app")[0]
        if host != first and not view.failover:
            steps.append(first_start_after(first, name))
        steps.append(Service(name))
        return steps

    def checks(self, inventory):
        if not inventory.with_role("proxy"):
            return []
        site = SiteChecks(inventory)
        checks = [
            Check("HTTPS ping through NGINX over HTTP/2", site.ping),
            Check(f"login as {site.mm.admin_username}", site.login),
            Check("post created through the API and read back", site.post_roundtrip),
            Check("websocket upgrade through NGINX", site.websocket),
            Check("Mattermost version on every app server", site.versions),
            Check("Enterprise license", site.license),
        ]
        if len(site.apps) > 1:
            checks += [
                Check("every app server in the cluster (cluster/status)", site.cluster_members),
                Check("same config on every app server", site.config_hashes),
                Check("post written through the proxy readable on every app server", site.post_on_every_node),
                Check(
                    f"websocket on {', '.join(h.name for h in site.apps[1:])} receives a post made on "
                    f"{site.apps[0].name}",
                    site.cross_node_websocket,
                ),
                Check(
                    f"file uploaded on {site.apps[0].name} downloads from {', '.join(h.name for h in site.apps[1:])}",
                    site.cross_node_file,
                ),
            ]
        if inventory.with_role("search"):
            checks.append(Check("search finds a fresh post", site.search))
        if inventory.with_role("pushproxy"):
            checks.append(Check("a mention reaches the push proxy", site.push))
        return checks

    def handlers(self, ctx: Context):
        name = unit_name(ctx.host)
        grace = stop_grace(ctx)
        handlers = {}
        if ctx.host.has("app"):
            # Before the restart, which starts the features the new license grants.
            handlers["license"] = Command(
                "upload the license", f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} license upload {LICENSE}\n", timeout=180
            )
        handlers["restart"] = rolling(ctx, restart(name, grace))
        if ctx.settings.mattermost.config_in_database and ctx.host.has("app"):
            # Listeners and SqlSettings are read at start-up: restart after the patch.
            again = restart(name, STOP_GRACE)
            handlers["patch-config"] = rolling(
                ctx,
                Command(
                    "patch the database config",
                    f"set -e\n{WAIT_FOR_SOCKET}{PATCH_SHARED_CONFIG}{again.script}",
                    timeout=again.timeout + 180,
                ),
            )
        handlers["restart chrony"] = Command("restart chrony", "systemctl try-restart chrony", timeout=60)
        return handlers

    def _config_in_database(self, ctx: Context, wanted: dict) -> list:
        """MM_CONFIG=<DSN> for the units from a root-only environment file, and the keys
        mmdeploy owns as a 0600 patch file that `mmctl --local config patch` applies when it
        changes. The database config is shared by all servers, so what differs per host
        (which one runs the jobs, the address it gossips at and listens on) goes into the
        environment, which Mattermost overrides on top of the stored config without saving
        it."""
        env, wanted = split_for_database(wanted)
        steps = [
            Directory(ETC, mode="0755"),
            # A systemd EnvironmentFile: double-quoted, backslash and quote escaped.
            SecretFile(ENV_FILE, env_file("components/mattermost", **env).split("\n", 1)[1], notify=("restart",)),
        ]
        if ctx.host.has("app"):  # a job server has no local socket; the app servers patch
            steps.append(
                SecretFile(CONFIG_PATCH, json.dumps(wanted, indent=2, sort_keys=True) + "\n", notify=("patch-config",))
            )
        return steps


FIRST_START_WAIT = 300


def not_installed_in_failover(ctx: Context) -> bool:
    """A failover re-points servers, it does not install them: a host never deployed has
    nothing to re-point."""
    return ctx.shared.failover and not ctx.facts.get([f"test -f {CONFIG}"])[f"test -f {CONFIG}"].ok


def stop_grace(ctx: Context) -> int:
    return STOP_GRACE_FAILOVER if ctx.shared.failover else STOP_GRACE


def wanted_config(ctx: Context) -> dict:
    """The config keys mmdeploy sets on this host's server (ctx.shared: the DBView)."""
    view: DBView = ctx.shared
    primary, replicas = client_endpoints(ctx.inventory, view.topology)
    wanted = config(ctx, primary, replicas)
    if view.generated is not None:  # one key and salt for every server
        for section, key, secret in SHARED_GENERATED:
            wanted.setdefault(section, {})[key] = view.generated.get(section) or ctx.secrets.get(secret)
    return wanted


def split_for_database(wanted: dict) -> tuple[dict, dict]:
    """(the units' environment, the patch for the database config) of a config in the
    database: what differs per host goes into the environment."""
    wanted = copy.deepcopy(wanted)  # the caller's copy stays whole
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
        "MM_CLUSTERSETTINGS_ADVERTISEADDRESS": wanted["ClusterSettings"].pop("AdvertiseAddress"),
        "MM_SERVICESETTINGS_LISTENADDRESS": wanted["ServiceSettings"].pop("ListenAddress"),
        "MM_METRICSSETTINGS_LISTENADDRESS": wanted["MetricsSettings"].pop("ListenAddress"),
    }
    if not jobs:
        del wanted["JobSettings"]
    return env, wanted


def first_start_after(first: Host, unit_name: str) -> Command:
    """The other servers start for the first time only once the first app server answers:
    its first start creates the schema and the database config, and two servers creating
    them at once collide (PostgreSQL: duplicate key on pg_type for the Configurations
    table). As Mattermost's HA guide builds a cluster: one server first, then the others.
    Skipped whenever this server already runs (every later deploy, a failover re-point)."""
    url = f"http://{first.private_address}:{first.settings.mattermost.port}/api/v4/system/ping"
    return Command(
        f"first start after {first.name}",
        f"for i in $(seq {FIRST_START_WAIT // 2}); do curl -fsS -m 5 -o /dev/null {url} && exit 0; sleep 2; done\n"
        f"echo '{first.name} did not answer {url} within {FIRST_START_WAIT} s: it starts first' >&2; exit 1\n",
        unless=f"systemctl is-active {unit_name} >/dev/null",
        timeout=FIRST_START_WAIT + 120,
    )


# chrony refuses to start where the clock cannot be set (ConditionCapability=CAP_SYS_TIME:
# a container, whose clock is its host's); there it is installed but never started.
CAN_SET_TIME = 'test $(( 0x$(sed -n "s/^CapBnd:[[:space:]]*//p" /proc/self/status) >> 25 & 1 )) = 1'
CHRONY_CONF = "/etc/chrony/chrony.conf"


def time_sync(ctx: Context) -> list[Step]:
    """chrony from Debian; time.servers replace Debian's pool."""
    servers = ctx.settings.time.servers
    steps: list[Step] = [Packages("chrony")]
    if servers:
        steps.append(
            File(CHRONY_CONF, ctx.render("mattermost/chrony.conf.j2", servers=servers), notify=("restart chrony",))
        )
    if ctx.facts.get([CAN_SET_TIME])[CAN_SET_TIME].ok:
        steps.append(Service("chrony"))
    return steps


class MattermostAdmin(Component):
    """The first system admin and team, on the first app server, once Mattermost runs
    (after the mattermost component's restart): the only part of a deploy that needs the
    database through Mattermost, so re-pointing after a failover never waits on it."""

    name = "mattermost-admin"
    roles = ("app",)
    secrets = (ADMIN_PASSWORD,)
    # Its prepare() reads whose backups the repository holds, as set up by then.
    after = ("mattermost", "backup-repository")

    def hosts(self, inventory):
        return inventory.with_role("app")[:1]

    def prepare(self, inventory, view) -> bool:
        """Whether the site's data is to come from `inv restore`: the backup repository
        holds another PostgreSQL cluster's backups (new DB hosts, deployed afresh)."""
        from .backup import configured, owner_seen

        return configured(inventory) and owner_seen(inventory, view).other

    def steps(self, ctx: Context):
        if ctx.shared is True:  # no admin or team in a database the restore replaces (components/backup.py warns)
            return []
        mm = ctx.settings.mattermost
        user, team = shlex.quote(mm.admin_username), shlex.quote(mm.team_name)
        return [
            FirstAdmin(mm.admin_username, mm.admin_email, ctx.secrets.get(ADMIN_PASSWORD)),
            Command(
                f"team {mm.team_name}",
                f"set -e\n{WAIT_FOR_SOCKET}{MMCTL} team create --name {team} --display-name {team}\n"
                f"{MMCTL} team users add {team} {user}\n",
                unless=f"{MMCTL} team list 2>/dev/null | grep -w {team} >/dev/null",
            ),
        ]


# What a dedicated job server last restarted for: the sha256 of the database config patch.
PATCHED_MARKER = f"{ETC}/config-patch.sha256"


class MattermostJobServerConfig(Component):
    """A dedicated job server restarts once the app servers stored a changed config patch
    in the database. Its settings read at start-up (metrics, SQL, jobs) come from the
    stored config, which the app servers patch in the mattermost component's handlers,
    while the job server has already (re)started in its own (it has no local socket to
    patch through); Mattermost applies such settings only at a restart. Runs after the
    mattermost component on every host, so the patch is stored by then."""

    name = "mattermost-jobserver-config"
    roles = ("jobserver",)
    after = ("mattermost",)
    follows_db = True  # a failover changes the stored replicas and DataSource

    def hosts(self, inventory):
        if not inventory.settings.mattermost.config_in_database:
            return []
        return [h for h in inventory.with_role("jobserver") if not h.has("app")]

    # The same view of the database tier as the mattermost component's (read once: facts
    # are cached for the run).
    prepare = Mattermost.prepare
    after_failover = Mattermost.after_failover

    def steps(self, ctx: Context):
        if not_installed_in_failover(ctx):
            return []
        _env, patch = split_for_database(wanted_config(ctx))
        digest = hashlib.sha256(json.dumps(patch, sort_keys=True).encode()).hexdigest()
        return [File(PATCHED_MARKER, digest + "\n", mode="0600", notify=("restart",))]

    def handlers(self, ctx: Context):
        grace = stop_grace(ctx)
        return {"restart": restart(unit_name(ctx.host), grace)}


ADMIN_MARKER = f"{ETC}/admin-password.sha256"


def fingerprint(username: str, password: str, salt: str) -> str:
    """What the admin marker holds: a salted SHA-256 of the password the user was given."""
    return hashlib.sha256(f"{salt}\0{username}\0{password}".encode()).hexdigest()


class FirstAdmin(Step):
    """The first system admin with the password of the secrets file, through Mattermost's
    local-mode API over its root-only socket (what mmctl --local speaks): mmctl takes a
    password only on its command line, so the JSON bodies go to curl on standard input.

    Whether it is done is read from a root-only marker holding a salted fingerprint of the
    password set (read as a fact, whose output is never logged): a run stopped anywhere
    between creating the user and setting its password is finished by the next, and a
    changed mattermost_admin_password is applied."""

    timeout = 240  # waits for the socket (up to 120 s), then a few API calls

    def __init__(self, username: str, email: str, password: str):
        self.username, self.email, self.password = username, email, password
        self.name = f"first admin {username}"
        self._probe = f"cat {ADMIN_MARKER}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts):
        fact = facts[self._probe]
        user, salt, digest = (fact.out.split() + ["", "", ""])[:3] if fact.ok else ("", "", "")
        if user == self.username and hmac.compare_digest(digest, fingerprint(self.username, self.password, salt)):
            return None
        if user == self.username:
            return Change("set the password (changed in the secrets)")
        return Change("create (or finish) the user and set its password")

    def apply(self, remote, change):
        salt = secrets_module.token_hex(16)
        marker = f"{self.username} {salt} {fingerprint(self.username, self.password, salt)}"
        created = json.dumps({"username": self.username, "email": self.email, "password": self.password})
        new = json.dumps({"new_password": self.password})
        script = f"""\
set -e
umask 077
{WAIT_FOR_SOCKET}call() {{  # METHOD PATH, the JSON body on standard input: never on a command line
  curl -sS --fail-with-body --max-time 20 --unix-socket {SOCKET} -X "$1" -H 'Content-Type: application/json' \\
    --data-binary @- "http://localhost$2"
}}
# An unknown user is a 404 whose error body has an "id" too: only a user's id counts.
id=$(curl -sS --max-time 20 --unix-socket {SOCKET} http://localhost/api/v4/users/username/{self.username} \\
  | jq -r 'select(.username == "{self.username}") | .id')
if [ -z "$id" ]; then
  id=$(call POST /api/v4/users <<'MMDEPLOY_JSON' | jq -r .id
{created}
MMDEPLOY_JSON
)
else
  call PUT "/api/v4/users/$id/password" >/dev/null <<'MMDEPLOY_JSON'
{new}
MMDEPLOY_JSON
fi
call PUT "/api/v4/users/$id/roles" >/dev/null <<'MMDEPLOY_JSON'
{{"roles": "system_user system_admin"}}
MMDEPLOY_JSON
install -d -m 0755 {ETC}
printf '%s\\n' '{marker}' > {ADMIN_MARKER}.tmp
mv -f {ADMIN_MARKER}.tmp {ADMIN_MARKER}
"""
        # The log shows the script without the bodies and the fingerprint.
        logged = (
            script.replace(created, "(the user as JSON, with its password)")
            .replace(new, "(the new password as JSON)")
            .replace(marker, f"{self.username} (salted fingerprint)")
        )
        run_checked(remote, script, self.name, log_as=logged, timeout=self.timeout)


BULK_INDEX = "elasticsearch_post_indexing"
LOCAL_API = f"curl -sS -m 20 --unix-socket {SOCKET} http://localhost/api/v4"


class MattermostSearchIndex(Component):
    """Once, after the first deploy with search hosts: the bulk indexing job, which the job
    server runs, so the posts written before search was wired in are found too. Asked for
    through the local-mode API (POST /api/v4/jobs) on the first app server; never again once
    such a job is pending, running or done."""

    name = "mattermost-search-index"
    roles = ("app",)
    after = ("mattermost",)

    def hosts(self, inventory):
        return inventory.with_role("app")[:1] if inventory.with_role("search") else []

    def steps(self, ctx: Context):
        if balancer.endpoint(ctx.inventory, "search") is None:
            return []  # search hosts, but no component serving them (yet): nothing to index into
        done = '.[] | select(.status == "pending" or .status == "in_progress" or .status == "success")'
        return [
            Command(
                "bulk index the posts into search",
                f"set -e\n{WAIT_FOR_SOCKET}"
                f"{LOCAL_API}/jobs -X POST -H 'Content-Type: application/json' "
                f'-d \'{{"type": "{BULK_INDEX}"}}\' | jq -e .id >/dev/null\n',
                unless=f"{LOCAL_API}/jobs/type/{BULK_INDEX} | jq -e '[{done}] | length > 0' >/dev/null",
                timeout=300,
            )
        ]


# --- verify: only Mattermost's real API v4, through the NGINX proxy and on each node --------

# Every wait in a check is bounded: a cluster that does not gossip must fail, not hang.
CHECK_WAIT = 15.0
VERIFY_USER = "mmdeploy-verify"  # the user whose phone `verify` pretends to be (push check)


def parse_version_id(header: str) -> tuple[str, str, bool] | None:
    """X-Version-Id, as every response carries it: VERSION.BUILD.CONFIGHASH.LICENSED
    (e.g. 11.7.15.1234.ab12....true) -> (version, config hash, licensed)."""
    parts = header.split(".")
    if len(parts) < 6 or not all(p.isdigit() for p in parts[:3]):
        return None
    return ".".join(parts[:3]), parts[-2], parts[-1] == "true"


def differing(values: dict[str, str]) -> list[str]:
    """The names whose value differs from the most common one (all of them on a tie)."""
    counts: dict[str, int] = {}
    for v in values.values():
        counts[v] = counts.get(v, 0) + 1
    top = max(counts.values(), default=0)
    if list(counts.values()).count(top) > 1:
        return sorted(values)
    common = next(v for v, n in counts.items() if n == top)
    return sorted(name for name, v in values.items() if v != common)


class SiteChecks:
    """End-to-end checks of a deployed site, run from the control machine: through NGINX
    (ping over HTTP/2, login, a post written and read back, a websocket hello) and, for a
    cluster, on each app server directly at its port (same version and config, a post seen
    everywhere, a websocket event and a file across nodes), search and push.

    `transport` (an httpx transport) and `ws_connect` replace the network in unit tests."""

    def __init__(self, inventory: Inventory, *, transport=None, ws_connect=None, today=None):
        from datetime import date

        from ..secrets import Redactor, Secrets

        self.inventory = inventory
        # Through a proxy and on the app servers that verify did not find down (a dead
        # node is reported once, as down; the site is checked on the others).
        proxies = inventory.with_role("proxy")
        self.proxy = (live(proxies) or proxies)[0]
        self.base = f"https://{self.proxy.address}"
        self.all_apps = inventory.with_role("app")
        self.apps = live(self.all_apps) or self.all_apps
        s = inventory.settings
        self.domain, self.mm = s.domain, s.mattermost
        # The test bed's certificate is self-signed by mmdeploy: nothing to verify it against.
        self.verify_tls = s.tls.mode != "self-signed"
        self.password = Secrets(inventory.secrets_path, Redactor()).existing(ADMIN_PASSWORD)
        self.token: str | None = None
        self.transport, self.ws_connect = transport, ws_connect or _ws_connect
        self.today = today or date.today()
        self._license: dict | None = None
        self._status: dict[str, list[dict]] | None = None
        self._channel: tuple[str, str] | None = None

    def client(self):
        import httpx

        return httpx.Client(
            http2=True,
            verify=self.verify_tls,
            timeout=10,
            transport=self.transport,
            headers={"Host": self.domain, "X-Requested-With": "XMLHttpRequest"},
        )

    def node_client(self):
        """Plain HTTP to the app servers' own port, as NGINX reaches them."""
        import httpx

        return httpx.Client(timeout=10, transport=self.transport, headers={"X-Requested-With": "XMLHttpRequest"})

    @staticmethod
    def node(host: Host) -> str:
        """The app server's own port, where it listens (its private address)."""
        return f"http://{listen_address(host, host.settings.mattermost.port)}"

    def ping(self, wait: float = CHECK_WAIT) -> str | None:
        """Ping with the server's own health (database, file store): right after a deploy a
        store that has just started may fail its first test, so a failing answer is asked
        again for up to `wait` seconds; the problem names the failing statuses."""

        def once() -> str | None:
            with self.client() as c:
                r = c.get(f"{self.base}/api/v4/system/ping", params={"get_server_status": "true"})
            if r.http_version != "HTTP/2":
                return f"ping answered over {r.http_version}, expected HTTP/2"
            try:
                body = r.json()
            except ValueError:
                body = {}
            if r.status_code == 200 and body.get("status") == "OK":
                return None
            failing = {k: v for k, v in body.items() if k.endswith("_status") and v != "OK"} if body else {}
            return f"ping: HTTP {r.status_code}" + (
                f", failing: {', '.join(f'{k} {v}' for k, v in sorted(failing.items()))}"
                if failing
                else f" {r.text[:200]}"
            )

        return settled(once, wait)

    def login(self) -> str | None:
        if not self.password:
            return "no admin password in the secrets file (was the site deployed by mmdeploy?)"
        with self.client() as c:
            r = c.post(
                f"{self.base}/api/v4/users/login", json={"login_id": self.mm.admin_username, "password": self.password}
            )
        if r.status_code != 200 or not r.headers.get("Token"):
            return f"login as {self.mm.admin_username}: HTTP {r.status_code} {r.text[:200]}"
        self.token = r.headers["Token"]
        return None

    def _auth(self) -> dict:
        if not self.token and (problem := self.login()):
            raise MMDeployError(problem)
        return {"Authorization": f"Bearer {self.token}"}

    def _town_square(self, c) -> tuple[str, str]:
        """(team id, channel id) of the team's town-square, where the checks post."""
        if self._channel is None:
            auth = self._auth()
            team = c.get(f"{self.base}/api/v4/teams/name/{self.mm.team_name}", headers=auth)
            if team.status_code != 200:
                raise MMDeployError(f"team {self.mm.team_name}: HTTP {team.status_code}")
            channel = c.get(f"{self.base}/api/v4/teams/{team.json()['id']}/channels/name/town-square", headers=auth)
            if channel.status_code != 200:
                raise MMDeployError(f"channel town-square: HTTP {channel.status_code}")
            self._channel = team.json()["id"], channel.json()["id"]
        return self._channel

    def _post(self, c, base: str, message: str) -> dict:
        """Create a post in town-square through `base` (the proxy or one node)."""
        _, channel = self._town_square(c)
        r = c.post(f"{base}/api/v4/posts", headers=self._auth(), json={"channel_id": channel, "message": message})
        if r.status_code != 201:
            raise MMDeployError(f"create post at {base}: HTTP {r.status_code} {r.text[:200]}")
        return r.json()

    def post_roundtrip(self) -> str | None:
        import time

        with self.client() as c:
            message = f"mmdeploy verify {time.time():.0f}"
            created = self._post(c, self.base, message)
            # A replica may lag a moment behind the primary; read until it has the post.
            for _ in range(20):
                got = c.get(f"{self.base}/api/v4/posts/{created['id']}", headers=self._auth())
                if got.status_code == 200 and got.json().get("message") == message:
                    return None
                time.sleep(0.25)
        return f"post {created['id']} could not be read back: HTTP {got.status_code}"

    def websocket(self) -> str | None:
        """The upgrade through NGINX over TLS, with websockets' asyncio client: its sync
        client reads the TLS socket in a thread of its own while the handshake request is
        written from another, and about 1 upgrade in 100 never reached NGINX (on the test
        bed 3 of 200 in a row, each then held until NGINX's 60 s header timeout; the
        asyncio client, one thread: 0 of 400)."""
        import asyncio
        import json
        import ssl

        from websockets.asyncio.client import connect

        auth = self._auth()
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        url = f"wss://{self.proxy.address}/api/v4/websocket"

        async def first_event() -> dict:
            async with connect(url, ssl=context, additional_headers=auth, open_timeout=10) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

        try:
            event = asyncio.run(first_event())
        except Exception as e:  # handshake refused, timeout, TLS error: all are the finding
            return f"websocket upgrade at {url}: {type(e).__name__}: {e}"
        return None if event.get("event") == "hello" else f"websocket: expected a hello event, got {event}"

    # --- the version, the license, the cluster ------------------------------------------

    def _version_ids(self) -> tuple[dict[str, tuple[str, str, bool]], list[str]]:
        """X-Version-Id of every app server, asked directly: {name: (version, hash, licensed)}."""
        import httpx

        found, problems = {}, []
        with self.node_client() as c:
            for h in self.apps:
                try:
                    r = c.get(f"{self.node(h)}/api/v4/system/ping")
                except httpx.HTTPError as e:
                    problems.append(f"{h.name} ({self.node(h)}): {type(e).__name__}: {e}")
                    continue
                parsed = parse_version_id(r.headers.get("X-Version-Id", ""))
                if parsed is None:
                    problems.append(f"{h.name}: HTTP {r.status_code} without a Mattermost X-Version-Id")
                else:
                    found[h.name] = parsed
        return found, problems

    def versions(self) -> str | None:
        """The running version (from the servers, not the inventory) and its support status;
        fails only when the app servers disagree or do not answer."""
        found, problems = self._version_ids()
        if problems:
            return "; ".join(problems)
        versions = {name: v[0] for name, v in found.items()}
        if len(set(versions.values())) > 1:
            return "app servers run different versions: " + ", ".join(f"{n} {v}" for n, v in sorted(versions.items()))
        version = next(iter(versions.values()))
        text = releases.summary(version, self.today)
        if version != self.mm.version:
            text += f" (the inventory says {self.mm.version}: deploy to change it)"
        return Info(text)

    def _license_info(self) -> dict:
        if self._license is None:
            with self.client() as c:
                r = c.get(f"{self.base}/api/v4/license/client", params={"format": "old"}, headers=self._auth())
            if r.status_code != 200:
                raise MMDeployError(f"license/client: HTTP {r.status_code} {r.text[:200]}")
            self._license = r.json()
        return self._license

    def _needs(self) -> dict[str, str]:
        """License feature -> what this site loses without it."""
        needs = {}
        if len(self.all_apps) > 1:
            needs["Cluster"] = (
                f"cluster mode (the {len(self.all_apps)} app servers run alone: no shared websocket events or caches)"
            )
        if self.inventory.with_role("search"):
            needs["Elasticsearch"] = "search on OpenSearch/Elasticsearch (the database answers searches)"
        if len(self.inventory.with_role("db")) > 1:
            needs[""] = "read replicas (every read goes to the primary)"
        return needs

    def licensed_for(self, feature: str) -> bool:
        lic = self._license_info()
        return lic.get("IsLicensed") == "true" and (not feature or lic.get(feature) == "true")

    def license(self) -> str | None:
        """Which Enterprise features the site has: a warning, never a failure."""
        lic = self._license_info()
        lost = [what for feature, what in self._needs().items() if not self.licensed_for(feature)]
        if lic.get("IsLicensed") != "true":
            inactive = "; ".join(lost) if lost else "none this site uses"
            return Warn(f"no license (mattermost.license_file): inactive: {inactive}")
        from datetime import datetime, timezone

        expires = datetime.fromtimestamp(int(lic.get("ExpiresAt", "0")) / 1000, timezone.utc).date()
        head = f"{lic.get('SkuShortName') or 'licensed'}, expires {expires}"
        if lost:
            return Warn(f"{head}; the license does not grant: {'; '.join(lost)}")
        return Info(head)

    def _cluster_views(self) -> dict[str, list[dict]]:
        """GET /api/v4/cluster/status on every app server itself: each node's view of its
        cluster (a node in another cluster sees only that one)."""
        if self._status is None:
            import httpx

            views = {}
            with self.node_client() as c:
                for h in self.apps:
                    try:
                        r = c.get(f"{self.node(h)}/api/v4/cluster/status", headers=self._auth())
                    except httpx.HTTPError as e:
                        raise MMDeployError(f"cluster/status on {h.name}: {type(e).__name__}: {e}") from None
                    if r.status_code != 200:
                        raise MMDeployError(f"cluster/status on {h.name}: HTTP {r.status_code} {r.text[:200]}")
                    views[h.name] = r.json() or []
            self._status = views
        return self._status

    def _members(self, view: list[dict]) -> dict[str, dict]:
        """The app servers a cluster/status answer lists (by gossip address, else name)."""
        found = {}
        for h in self.apps:
            for info in view:
                if info.get("ipaddress") == h.private_address or info.get("hostname") == h.name:
                    found[h.name] = info
        return found

    def cluster_members(self) -> str | None:
        """Every app server sees every other in its cluster/status: one cluster. Servers
        that have just started find each other within a discovery round (ClusterDiscovery,
        every few seconds): a licensed cluster gets 2 x CHECK_WAIT to form."""
        import time

        everyone = sorted(h.name for h in self.apps)
        name = cluster_name(self.inventory.settings)
        deadline = time.monotonic() + 2 * CHECK_WAIT
        while True:
            views = {n: self._members(view) for n, view in self._cluster_views().items()}
            formed = all(sorted(v) == everyone for v in views.values())
            if formed or not self.licensed_for("Cluster") or time.monotonic() > deadline:
                break
            time.sleep(2)
            self._status = None  # ask again
        if formed:
            versions = {n: info.get("version", "") for n, info in next(iter(views.values())).items()}
            if len(set(versions.values())) > 1:
                return "cluster nodes run different versions: " + ", ".join(
                    f"{n} {v}" for n, v in sorted(versions.items())
                )
            return Info(f"{len(everyone)} app servers in {name!r}: {', '.join(everyone)}")
        seen = "; ".join(f"{n} sees {', '.join(sorted(v)) or 'no node'}" for n, v in sorted(views.items()))
        if not self.licensed_for("Cluster"):
            return Warn(f"cluster mode is inactive without a license granting it ({seen})")
        # The largest group that sees alike is the cluster; the others are named (all on a tie).
        odd = differing({n: ",".join(sorted(v)) for n, v in views.items()})
        head = (
            f"the app servers do not form one cluster {name!r}"
            if len(odd) == len(views)
            else f"{', '.join(odd)} not in the cluster {name!r} of the others"
        )
        return (
            f"{head} ({seen}): check ClusterName on each server and that port {GOSSIP_PORT} (TCP and UDP) "
            "is open between them"
        )

    def config_hashes(self) -> str | None:
        """The same effective config on every app server: the cluster's config hashes when
        the app servers form one cluster, else the hash each node's X-Version-Id carries."""
        views = {name: self._members(view) for name, view in self._cluster_views().items()}
        own = {name: v[name] for name, v in views.items() if name in v}  # each node's own entry
        if len(own) == len(views):
            hashes = {name: info.get("config_hash", "") for name, info in own.items()}
            source = "cluster/status"
        else:
            found, problems = self._version_ids()
            if problems:
                return "; ".join(problems)
            hashes = {name: v[1] for name, v in found.items()}
            source = "X-Version-Id: the nodes form no cluster"
        odd = differing(hashes)
        if odd:
            return (
                f"config differs on {', '.join(odd)} ({source}: "
                + ", ".join(f"{n} {hashes[n][:12]}" for n in sorted(hashes))
                + ")"
            )
        return Info(f"{next(iter(hashes.values()))[:12]} on {', '.join(sorted(hashes))} ({source})")

    # --- across the nodes -----------------------------------------------------------------

    def post_on_every_node(self) -> str | None:
        import time

        with self.client() as c:
            post = self._post(c, self.base, f"mmdeploy verify: every node {time.time():.0f}")
        waiting = {h.name: h for h in self.apps}
        deadline = time.monotonic() + CHECK_WAIT
        last: dict[str, str] = {}
        with self.node_client() as c:
            while waiting and time.monotonic() < deadline:
                for name, h in list(waiting.items()):
                    r = c.get(f"{self.node(h)}/api/v4/posts/{post['id']}", headers=self._auth())
                    if r.status_code == 200 and r.json().get("id") == post["id"]:
                        del waiting[name]
                    else:
                        last[name] = f"HTTP {r.status_code}"
                if waiting:
                    time.sleep(0.5)
        if waiting:
            return f"post {post['id']} not readable within {CHECK_WAIT:.0f} s on " + ", ".join(
                f"{n} ({last.get(n, '?')})" for n in sorted(waiting)
            )
        return None

    def cross_node_websocket(self) -> str | None:
        """A client on every other app server receives the `posted` event of a post made on
        the first: the event crosses the cluster by gossip. Nodes that do not form a cluster
        (another ClusterName, no license, port 8074 closed) serve every request but never
        pass events on; this is how that quiet failure shows."""
        import json
        import time
        from contextlib import ExitStack

        auth = self._auth()
        source, listeners = self.apps[0], self.apps[1:]
        problems = []
        with ExitStack() as stack, self.node_client() as c:
            sockets = {}
            for h in listeners:
                url = f"{self.node(h).replace('http://', 'ws://', 1)}/api/v4/websocket"
                try:
                    ws = stack.enter_context(self.ws_connect(url, auth))
                    hello = json.loads(ws.recv(timeout=10))
                except Exception as e:
                    problems.append(f"{h.name}: websocket at {url}: {type(e).__name__}: {e}")
                    continue
                if hello.get("event") != "hello":
                    problems.append(f"{h.name}: expected a hello event, got {hello}")
                    continue
                sockets[h.name] = ws
            if not sockets:
                return "; ".join(problems)
            post = self._post(c, self.node(source), f"mmdeploy verify: websocket across nodes {time.time():.0f}")
            deadline = time.monotonic() + CHECK_WAIT
            for name, ws in sockets.items():
                if not _await_posted(ws, post["id"], deadline):
                    problems.append(
                        f"{name} got no posted event for a post made on {source.name} within "
                        f"{CHECK_WAIT:.0f} s (the nodes do not form one cluster: check the license, "
                        f"ClusterName and port {GOSSIP_PORT} between them)"
                    )
        return "; ".join(problems) or None

    def cross_node_file(self) -> str | None:
        """A file uploaded on the first app server downloads from every other one: the file
        store is shared (S3), not each server's own disk."""
        import secrets
        import time

        source = self.apps[0]
        content = f"mmdeploy verify {time.time():.0f} {secrets.token_hex(16)}\n".encode()
        with self.node_client() as c:
            _, channel = self._town_square(c)
            r = c.post(
                f"{self.node(source)}/api/v4/files",
                headers=self._auth(),
                data={"channel_id": channel},
                files={"files": ("mmdeploy-verify.txt", content, "text/plain")},
            )
            if r.status_code != 201:
                return f"upload on {source.name}: HTTP {r.status_code} {r.text[:200]}"
            file_id = r.json()["file_infos"][0]["id"]
            problems = []
            for h in self.apps[1:]:
                got = c.get(f"{self.node(h)}/api/v4/files/{file_id}", headers=self._auth())
                if got.status_code != 200 or got.content != content:
                    problems.append(f"{h.name}: HTTP {got.status_code}")
        if problems:
            return (
                f"file {file_id} uploaded on {source.name} is not served by "
                + ", ".join(problems)
                + " (each server keeps its own files: the file store must be shared, S3)"
            )
        return None

    # --- search and push ------------------------------------------------------------------

    def search(self) -> str | None:
        import secrets
        import time

        term = f"mmdeployverify{secrets.token_hex(6)}"
        with self.client() as c:
            team, _ = self._town_square(c)
            post = self._post(c, self.base, f"search check {term}")
            ping = c.get(f"{self.base}/api/v4/system/ping")
            backend = ping.json().get("ActiveSearchBackend", "database") if ping.status_code == 200 else "?"
            started, found = time.monotonic(), False
            while time.monotonic() - started < CHECK_WAIT:  # an index refreshes about every second
                r = c.post(
                    f"{self.base}/api/v4/teams/{team}/posts/search",
                    headers=self._auth(),
                    json={"terms": term, "is_or_search": False},
                )
                if r.status_code == 200 and post["id"] in (r.json().get("order") or []):
                    found = True
                    break
                time.sleep(1)
        if not found:
            return f"a post with {term!r} was not found within {CHECK_WAIT:.0f} s (search backend: {backend})"
        took = f"found in {time.monotonic() - started:.1f} s by {backend}"
        if backend in ("opensearch", "elasticsearch"):
            return Info(took)
        if self.licensed_for("Elasticsearch"):
            return f"{took}: the search hosts are not used (check ElasticsearchSettings and the search tier)"
        return Warn(f"{took}: OpenSearch/Elasticsearch is inactive without a license granting it")

    def push(self) -> str | None:
        """A mention of a user whose session has a phone (a device id) makes Mattermost send
        a push notification through the push proxies. Seen on the proxies' own counter
        (service_notifications_total, with pushproxy.metrics) and, on mmdeploy's test
        stand-in, in its record of what it received."""
        import secrets
        import time

        # The push proxy's apps with credentials (its settings, read through the model).
        pp = getattr(self.inventory.settings, "pushproxy", None)
        kinds = [app.type for app in [*getattr(pp, "apple", []), *getattr(pp, "android", [])]]
        if not kinds:
            return Warn("not tested: no APNs or FCM credentials (pushproxy.apple, pushproxy.android)")
        proxies = live(self.inventory.with_role("pushproxy"))  # not those verify found down
        nonce = secrets.token_hex(6)
        user_token = None
        counted, increased, recorded = {}, False, None
        with self.client() as c:
            try:
                user_id, user_token = self._verify_user(c, f"{kinds[0]}-v2:mmdeploy-verify-{nonce}")
                before = self._push_counts(proxies)
                post = self._post(c, self.base, f"@{VERIFY_USER} push check {nonce}")
                deadline = time.monotonic() + CHECK_WAIT
                while time.monotonic() < deadline:
                    counted = self._push_counts(proxies)
                    increased = sum(counted.values()) > sum(before.values())
                    recorded = self._push_recorded(proxies, post["id"])
                    if increased or recorded:
                        break
                    time.sleep(0.5)
            finally:
                if user_token:  # no device sessions pile up across runs
                    c.post(f"{self.base}/api/v4/users/logout", headers={"Authorization": f"Bearer {user_token}"})
        if recorded:
            return Info(f"{recorded} recorded the notification for post {post['id']}")
        if increased:
            by = [n for n in counted if counted[n] > before.get(n, 0)]
            return Info(f"service_notifications_total rose on {', '.join(by)}")
        if not counted and recorded is None:
            return Warn(
                "cannot observe the push proxies from here: enable pushproxy.metrics and let this "
                f"machine reach port {getattr(pp, 'port', 8066)} of {', '.join(h.name for h in proxies)}"
            )
        return (
            f"no push proxy took the notification of post {post['id']} within {CHECK_WAIT:.0f} s "
            "(EmailSettings.PushNotificationServer, the balancer, the proxies' credentials)"
        )

    def _push_counts(self, proxies: list[Host]) -> dict[str, float]:
        """service_notifications_total of each proxy that answers /metrics."""
        import httpx

        counts = {}
        with httpx.Client(timeout=5, transport=self.transport) as c:
            for h in proxies:
                try:
                    r = c.get(f"http://{h.address}:{h.settings.pushproxy.port}/metrics")
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    counts[h.name] = push_total(r.text)
        return counts

    def _push_recorded(self, proxies: list[Host], post_id: str) -> str | None:
        """The proxy whose record lists `post_id` (mmdeploy's test stand-in only: the real
        proxy has no such endpoint); "" when none does, None when no proxy keeps a record."""
        import httpx

        seen_record = False
        with httpx.Client(timeout=5, transport=self.transport) as c:
            for h in proxies:
                try:
                    r = c.get(f"http://{h.address}:{h.settings.pushproxy.port}/api/v1/received")
                except httpx.HTTPError:
                    continue
                if r.status_code != 200 or r.headers.get("X-Mmdeploy-Standin") != "pushproxy":
                    continue
                seen_record = True
                if any((i.get("notification") or {}).get("post_id") == post_id for i in r.json().get("received", [])):
                    return h.name
        return "" if seen_record else None

    def _verify_user(self, c, device_id: str) -> tuple[str, str]:
        """The verify user (created once, new random password each run), in the team, with
        push on for every mention whatever its status; logged in as a phone with `device_id`."""
        import secrets

        auth, base = self._auth(), self.base
        password = secrets.token_urlsafe(18) + "aA1!"
        r = c.get(f"{base}/api/v4/users/username/{VERIFY_USER}", headers=auth)
        if r.status_code == 200:
            user_id = r.json()["id"]
            r = c.put(f"{base}/api/v4/users/{user_id}/password", headers=auth, json={"new_password": password})
        else:
            r = c.post(
                f"{base}/api/v4/users",
                headers=auth,
                json={"username": VERIFY_USER, "email": f"{VERIFY_USER}@{self.domain}", "password": password},
            )
            user_id = r.json().get("id", "") if r.status_code == 201 else ""
        if r.status_code not in (200, 201):
            raise MMDeployError(f"verify user {VERIFY_USER}: HTTP {r.status_code} {r.text[:200]}")
        team, _ = self._town_square(c)
        r = c.post(f"{base}/api/v4/teams/{team}/members", headers=auth, json={"team_id": team, "user_id": user_id})
        if r.status_code not in (200, 201):
            raise MMDeployError(f"add {VERIFY_USER} to {self.mm.team_name}: HTTP {r.status_code} {r.text[:200]}")
        props = {"push": "mention", "push_status": "online", "desktop": "mention", "email": "false", "channel": "true"}
        r = c.put(f"{base}/api/v4/users/{user_id}/patch", headers=auth, json={"notify_props": props})
        if r.status_code != 200:
            raise MMDeployError(f"{VERIFY_USER} notification settings: HTTP {r.status_code} {r.text[:200]}")
        r = c.post(
            f"{base}/api/v4/users/login", json={"login_id": VERIFY_USER, "password": password, "device_id": device_id}
        )
        if r.status_code != 200 or not r.headers.get("Token"):
            raise MMDeployError(f"login as {VERIFY_USER}: HTTP {r.status_code} {r.text[:200]}")
        return user_id, r.headers["Token"]


def push_total(metrics: str) -> float:
    """service_notifications_total of a push proxy's /metrics, all labels summed."""
    total = 0.0
    for line in metrics.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == "service_notifications_total":
            total += float(line.rsplit(" ", 1)[1])
    return total


def _ws_connect(url: str, headers: dict):
    from websockets.sync.client import connect

    return connect(url, additional_headers=headers, open_timeout=10)


def _await_posted(ws, post_id: str, deadline: float) -> bool:
    """Read events until the `posted` event of `post_id`, or the deadline."""
    import json
    import time

    while (left := deadline - time.monotonic()) > 0:
        try:
            event = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            return False
        except Exception:
            return False
        if event.get("event") == "posted":
            try:
                if json.loads(event["data"]["post"]).get("id") == post_id:
                    return True
            except (KeyError, TypeError, ValueError):
                continue
    return False


COMPONENTS = [
    MattermostRelease(),
    Mattermost(),
    MattermostAdmin(),
    MattermostJobServerConfig(),
    MattermostSearchIndex(),
]
