"""The typed settings every component reads.

Each field's default is the built-in default (the lowest precedence layer). A component
that needs a new setting adds it here, so that a typo in an inventory is caught as an
unknown key before any host is touched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    # forbid: an unknown key is almost always a typo; strict: "22" is not a port.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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


class DatabaseSettings(Section):
    engine: Literal["postgresql", "mysql"] = "postgresql"
    # Only read when engine is mysql: MariaDB or Oracle MySQL.
    flavor: Literal["mariadb", "mysql"] = "mariadb"
    # Oracle MySQL's release series (flavor mysql): its APT repository and statements.
    mysql_series: Literal["8.0", "8.4"] = "8.4"
    # PostgreSQL from the distribution's own packages (15 on Debian 12).
    postgresql_version: str = Field(default="15", pattern=r"^\d{2}$")
    # Commits wait for one replica (ANY 1) whenever there is one; false opts out.
    synchronous: bool = True
    # Memory the DB sizes itself for; unset: the host's total memory.
    memory_mb: int | None = Field(default=None, ge=256)
    # Addresses (IP or CIDR) allowed in as the Mattermost user besides the app and job hosts.
    extra_clients: list[str] = []


class TLSSettings(Section):
    mode: Literal["self-signed", "provided", "acme"] = "self-signed"
    cert: str | None = None
    key: str | None = None
    # acme: the address Let's Encrypt sends expiry notices to (none: registered without).
    acme_email: str | None = None


class NginxSettings(Section):
    """The NGINX proxy in front of the app servers (components/nginx.py)."""

    # The largest request body, i.e. file upload, as an nginx size.
    client_max_body_size: str = Field(default="50M", pattern=r"^\d+[kKmMgG]?$")
    # Raw directives added to the HTTPS server block, e.g. "add_header X-Robots-Tag none;".
    extra: str = ""
    # Loopback port of nginx's stub_status page, which the nginx exporter reads.
    status_port: int = Field(default=8090, ge=1, le=65535)


class GrafanaDashboard(Section):
    id: int = Field(ge=1)
    # A grafana.com revision; "latest" is fetched once and then kept in the local cache.
    revision: int | Literal["latest"] = "latest"
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    url: str | None = None  # a mirror or local file instead of grafana.com


class MonitoringSettings(Section):
    """Prometheus, the exporters and Grafana (components/prometheus.py, exporters.py,
    grafana.py)."""

    # Grafana from Grafana's APT repository on the monitoring host.
    grafana: bool = True
    scrape_interval: str = Field(default="15s", pattern=r"^\d+[smh]$")
    # The DB user the postgres/mysqld exporter logs in as, with the secret
    # db_monitoring_password; the database components create it.
    db_user: str = Field(default="mmmonitor", pattern=r"^[a-z_][a-z0-9_]{0,31}$")
    # Mattermost's official dashboards: performance monitoring v2, KPI metrics, bonus metrics.
    dashboards: list[GrafanaDashboard] = [GrafanaDashboard(id=i) for i in (15582, 2539, 2545)]


class DemoSettings(Section):
    """A small component (package, user, templates, unit, service, handler) that exercises
    every op; the test bed and the no-op benchmark deploy it."""

    enabled: bool = False
    port: int = Field(default=8080, ge=1, le=65535)
    message: str = "mmdeploy demo"
    # Extra templated files, so a benchmark can ask for a component of N steps.
    extra_files: int = Field(default=0, ge=0, le=1000)


class Settings(Section):
    domain: str = "mattermost.example.com"
    # Sizing hint the patterns set (2k / 10k / 50k); components size caches and pools from it.
    expected_users: int = Field(default=2000, ge=1)
    # An apt proxy such as apt-cacher-ng (http://host:3142); written on every host.
    apt_proxy: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    mattermost: MattermostSettings = MattermostSettings()
    database: DatabaseSettings = DatabaseSettings()
    tls: TLSSettings = TLSSettings()
    nginx: NginxSettings = NginxSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    demo: DemoSettings = DemoSettings()
    smtp: SMTPSettings = SMTPSettings()


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def cross_check(settings: Settings) -> list[tuple[str, str]]:
    """Rules that span several keys; returns (key path, problem)."""
    problems = []
    mm_major = version_tuple(settings.mattermost.version)[:1] or (0,)
    if settings.database.engine == "mysql" and mm_major[0] >= 11:
        problems.append(
            (
                "database.engine",
                f"mysql is not supported by Mattermost {settings.mattermost.version} "
                "(v11 removed MySQL; use postgresql, or mattermost.version <= 10.11)",
            )
        )
    if settings.tls.mode == "provided" and not (settings.tls.cert and settings.tls.key):
        problems.append(("tls", "mode 'provided' needs both tls.cert and tls.key"))
    return problems
