"""PostgreSQL's paths, sizing and rendered settings (pure, unit-tested).

Paths follow Debian's layout (cluster `main` of version V):
  /etc/postgresql/V/main (config)   /var/lib/postgresql/V/main (data)   postgresql@V-main
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import distros
from ...errors import MMDeployError
from ...inventory import Host, Inventory

DATABASE, USER, REPLICATION_USER = "mattermost", "mmuser", "replicator"
PGPASS = "/var/lib/postgresql/.pgpass"
# Outside the data directory, so neither pg_basebackup nor pg_rewind copies it.
FENCED = "/var/lib/postgresql/mmdeploy-fenced"
TOPOLOGY = "mmdeploy-topology.conf"
SLOT_KEEP_MB = 8192


@dataclass(frozen=True)
class Paths:
    version: str

    @property
    def conf(self) -> str:
        return f"/etc/postgresql/{self.version}/main"

    @property
    def data(self) -> str:
        return f"/var/lib/postgresql/{self.version}/main"

    @property
    def bin(self) -> str:
        return f"/usr/lib/postgresql/{self.version}/bin"

    @property
    def unit(self) -> str:
        return f"postgresql@{self.version}-main"


def version(host: Host, os_fact: str | None) -> str:
    """database.postgresql_version when set, else the version the host's distribution
    ships (distros.py), from its os fact."""
    configured = host.settings.database.postgresql_version
    if configured:
        return configured
    if not os_fact:
        raise MMDeployError(f"{host.name}: PostgreSQL version unknown (set database.postgresql_version)")
    return distros.of(os_fact).postgresql


def paths(host: Host, os_fact: str | None = None) -> Paths:
    return Paths(version(host, os_fact))


# The version in a shell script that runs before any fact is read (the node probe):
# $PGV, set by PROBE_VERSION from the setting or the host's /etc/os-release.
SHELL_PATHS = Paths("$PGV")


def shell_version(host: Host) -> str:
    """`PGV=...`: the configured version, else the distribution's (distros.shell_lookup)."""
    configured = host.settings.database.postgresql_version
    return f"PGV={configured}" if configured else f"PGV={distros.shell_lookup('postgresql')}"


def slot_name(host: Host) -> str:
    return host.name.replace("-", "_")  # slot names allow [a-z0-9_] only


def sizing(memory_mb: int) -> dict:
    """Memory settings after Mattermost's database guidance: about 1024 connections on a
    dedicated DB server (SqlSettings.MaxOpenConns of several app servers), the planner told
    that about 65% of memory caches data, work_mem 16 MB; fewer connections and smaller
    work_mem on small hosts. shared_buffers at 25% (20% below 12 GB) is PostgreSQL's own
    advice."""
    gb = memory_mb / 1024
    if gb >= 12:
        connections, work_mem, share = 1024, 16, 0.25
    elif gb >= 4:
        connections, work_mem, share = 500, 8, 0.20
    else:
        connections, work_mem, share = 200, 4, 0.20
    return {
        "memory_mb": memory_mb,
        "max_connections": connections,
        "shared_buffers_mb": max(128, int(memory_mb * share)),
        "effective_cache_size_mb": max(256, int(memory_mb * 0.65)),
        "work_mem_mb": work_mem,
        "maintenance_work_mem_mb": max(64, min(1024, memory_mb // 16)),
        "slot_keep_mb": SLOT_KEEP_MB,
    }


def sync_names(replicas: list[Host], synchronous: bool) -> str:
    if not synchronous or not replicas:
        return ""
    return "ANY 1 (" + ", ".join(sorted(h.name for h in replicas)) + ")"


def conninfo(primary: Host, application_name: str | None = None, dbname: str | None = None) -> str:
    parts = [
        f"host={primary.private_address}",
        "port=5432",
        f"user={REPLICATION_USER}",
        f"passfile={PGPASS}",
        "connect_timeout=5",
    ]
    if application_name:
        parts.append(f"application_name={application_name}")
    if dbname:
        parts.append(f"dbname={dbname}")
    return " ".join(parts)


def topology_conf(host: Host, primary: Host, replicas: list[Host]) -> str:
    """This node's place in the replication topology. Written by deploy and by failover /
    rejoin alike, so that a deploy after a failover finds nothing to change."""
    lines = [
        "# Managed by mmdeploy (deploy, failover-db, db.rejoin): the replication topology.",
        f"# mmdeploy-primary: {primary.name}",
    ]
    if host.name == primary.name:
        names = sync_names(replicas, host.settings.database.synchronous)
        lines.append(f"synchronous_standby_names = '{names}'")
    else:
        lines.append(f"primary_conninfo = '{conninfo(primary, application_name=host.name)}'")
        lines.append(f"primary_slot_name = '{slot_name(host)}'")
    return "\n".join(lines) + "\n"


def hba_addresses(inventory: Inventory, host: Host) -> tuple[list[str], list[str]]:
    """(Mattermost clients, replication peers) as pg_hba addresses."""

    def cidr(address: str) -> str:
        return address if "/" in address else f"{address}/32"

    clients = [cidr(h.private_address) for h in inventory.hosts if h.has("app") or h.has("jobserver")]
    clients += [cidr(a) for a in host.settings.database.extra_clients]
    peers = [cidr(h.private_address) for h in inventory.with_role("db") if h.name != host.name]
    return list(dict.fromkeys(clients)), peers
