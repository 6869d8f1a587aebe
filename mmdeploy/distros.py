"""The distributions mmdeploy deploys onto, and what differs between them: ONE map of
package names and versions per distribution, which components read instead of writing
a version or a package name into their own code.

A host's distribution comes from its facts (facts.HOST_FACTS["os"]: "<ID> <VERSION_ID>
<VERSION_CODENAME>" from /etc/os-release). Debian 12 and 13 run on the test bed; the
Ubuntu entries are checked by unit tests only (no Ubuntu archive is reachable here).
Each value is the distribution's own package (sources: packages.debian.org and
packages.ubuntu.com for the release named).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MMDeployError


@dataclass(frozen=True)
class Distro:
    id: str  # /etc/os-release ID: debian | ubuntu
    version: str  # VERSION_ID: "12", "24.04"
    codename: str  # VERSION_CODENAME: bookworm, noble
    postgresql: str  # the PostgreSQL major version the distribution ships (postgresql-<v>)
    mariadb: str  # the MariaDB series of mariadb-server
    mariadb_packages: tuple[str, ...]
    java: str  # a headless Java runtime for OpenSearch (17 or later)
    # Prometheus exporters by what they watch: the distribution's package names.
    exporters: tuple[tuple[str, str], ...]
    # The nginx exporter's series: 0.x takes -flags and -nginx.retries; 1.x takes
    # --flags and has no retries (it reports nginx_up 0 until nginx answers).
    nginx_exporter: str = "0.11"
    # The mysqld exporter's series: up to 0.14 it reads DATA_SOURCE_NAME; from 0.15 only a
    # my.cnf file (--config.my-cnf).
    mysqld_exporter: str = "0.14"

    @property
    def name(self) -> str:
        return f"{self.id} {self.version} ({self.codename})"

    def exporter(self, what: str) -> str:
        return dict(self.exporters)[what]

    @property
    def mysqld_exporter_reads_dsn(self) -> bool:
        major, minor = (int(p) for p in self.mysqld_exporter.split(".")[:2])
        return (major, minor) < (0, 15)

    def nginx_exporter_args(self, scrape_uri: str, address: str, port: int) -> str:
        from .ops.exporter import listen_flag

        if self.nginx_exporter.startswith("0."):
            # Go's flag package (one dash); retries: after a reboot it may start before nginx answers.
            return f"-nginx.scrape-uri={scrape_uri} -nginx.retries=10 {listen_flag(address, port, '-')}"
        return f"--nginx.scrape-uri={scrape_uri} {listen_flag(address, port)}"


_EXPORTERS = (
    ("node", "prometheus-node-exporter"),
    ("postgres", "prometheus-postgres-exporter"),
    ("mysqld", "prometheus-mysqld-exporter"),
    ("nginx", "prometheus-nginx-exporter"),
)
_MARIADB = ("mariadb-server", "mariadb-client")

DISTROS: dict[tuple[str, str], Distro] = {
    (d.id, d.version): d
    for d in (
        Distro(
            "debian",
            "12",
            "bookworm",
            postgresql="15",
            mariadb="10.11",
            mariadb_packages=_MARIADB,
            java="openjdk-17-jre-headless",
            exporters=_EXPORTERS,
        ),
        # trixie ships PostgreSQL 17, MariaDB 11.8 and OpenJDK 21 (no OpenJDK 17).
        Distro(
            "debian",
            "13",
            "trixie",
            postgresql="17",
            mariadb="11.8",
            mariadb_packages=_MARIADB,
            java="openjdk-21-jre-headless",
            exporters=_EXPORTERS,
            nginx_exporter="1.4",
            mysqld_exporter="0.17",
        ),
        Distro(
            "ubuntu",
            "22.04",
            "jammy",
            postgresql="14",
            mariadb="10.6",
            mariadb_packages=_MARIADB,
            java="openjdk-17-jre-headless",
            exporters=_EXPORTERS,
            nginx_exporter="0.10",
            mysqld_exporter="0.13",
        ),
        Distro(
            "ubuntu",
            "24.04",
            "noble",
            postgresql="16",
            mariadb="10.11",
            mariadb_packages=_MARIADB,
            java="openjdk-21-jre-headless",
            exporters=_EXPORTERS,
            nginx_exporter="0.11",
            mysqld_exporter="0.15",
        ),
    )
}


def parse_os(fact: str) -> tuple[str, str]:
    """(ID, VERSION_ID) from the os host fact ("debian 12 bookworm")."""
    parts = fact.split()
    if len(parts) < 2:
        raise MMDeployError(f"cannot tell the distribution from /etc/os-release (read {fact!r})")
    return parts[0], parts[1]


def of(fact: str) -> Distro:
    """The Distro of a host from its os fact; an unsupported one is refused by name."""
    key = parse_os(fact)
    if key not in DISTROS:
        known = ", ".join(d.name for d in DISTROS.values())
        raise MMDeployError(f"{key[0]} {key[1]} is not a supported distribution (supported: {known})")
    return DISTROS[key]


def shell_lookup(field: str) -> str:
    """A shell expression printing `field` of the host's distribution (empty when
    unknown), for scripts that must find it before any fact is read (a DB probe)."""
    arms = " ".join(f'"{d.id} {d.version}") echo {getattr(d, field)} ;;' for d in DISTROS.values())
    return f'$(. /etc/os-release; case "$ID $VERSION_ID" in {arms} esac)'
