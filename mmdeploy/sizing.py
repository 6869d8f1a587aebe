"""How big to go: for N users, the pattern and, per role, the host count, CPUs, memory
and disk; and a starting inventory with placeholders for the addresses.

Where each figure comes from is written next to it:
- PATTERN: the founding report's Table 1 (the three patterns and their user ranges, also
  in docs and DESIGN.md): single < 2,000, multi 2,000-10,000, cluster > 10,000, and
  which roles each pattern has and how many of each at least (the components' Role
  declarations carry those minimums; the registry is asked, not a copy).
- MM_<N>: Mattermost's published reference architectures, "Scale Mattermost up to N
  users" (docs.mattermost.com, linked from "Scaling for enterprise"; each tier names the
  page its figures were read from): nodes and vCPU/memory of the application servers,
  the database writer and readers, the Elasticsearch/OpenSearch nodes and the proxy.
- MM_STORAGE: the same pages' "Lifetime storage" method: 600-800 MB for the server
  with its database, plus users x MB per user per month x 12 months x a 1-2x safety
  factor (medium usage: 5-25 MB per user per month).
- ESTIMATE: mmdeploy's own figure where Mattermost publishes none (the push proxy, the
  S3 storage nodes' CPU and memory, Prometheus, disks other than file storage); the
  reason is given beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yaml

from .errors import InventoryError


@dataclass(frozen=True)
class Shape:
    nodes: int
    cpus: int
    memory_gib: int


@dataclass(frozen=True)
class Tier:
    """One reference architecture of Mattermost's: up to `users` concurrent users."""

    users: int
    app: Shape
    db_writer: Shape
    db_readers: Shape
    search: Shape
    proxy: Shape
    source: str  # the page the figures were read from


_PREVIEW = "http://mattermost-docs-preview-pulls.s3-website-us-east-1.amazonaws.com"
# Mattermost's reference architectures (MM_<N>), as published on the page named in each.
TIERS = (
    # MM_200: 1 app 2/4, writer 2/16, no reader, no search, proxy 16/64.
    Tier(
        200,
        Shape(1, 2, 4),
        Shape(1, 2, 16),
        Shape(0, 2, 16),
        Shape(0, 4, 32),
        Shape(1, 16, 64),
        "https://docs.mattermost.com/administration-guide/scale/scale-to-200-users.html",
    ),
    # MM_2000: 2 app 2/4, writer 2/16, 1 reader 2/16, 2 search 4/32, proxy 16/64.
    Tier(
        2000,
        Shape(2, 2, 4),
        Shape(1, 2, 16),
        Shape(1, 2, 16),
        Shape(2, 4, 32),
        Shape(1, 16, 64),
        "https://docs.mattermost.com/scale/scale-to-2000-users.html",
    ),
    # MM_25000 (no page between 2,000 and 25,000 is published): 2 app 8/16, writer 8/64,
    # 1 reader 8/64; its page lists no search or proxy: MM_30000's.
    Tier(
        25000,
        Shape(2, 8, 16),
        Shape(1, 8, 64),
        Shape(1, 8, 64),
        Shape(4, 8, 64),
        Shape(1, 16, 64),
        "https://docs-staging.mattermost.com/scale/scale-to-25000-users.html",
    ),
    # MM_30000: 2 app 8/16, writer 8/64, 1 reader 8/64, 4 search 8/64, proxy 16/64.
    Tier(
        30000,
        Shape(2, 8, 16),
        Shape(1, 8, 64),
        Shape(1, 8, 64),
        Shape(4, 8, 64),
        Shape(1, 16, 64),
        "https://docs.mattermost.com/deployment-guide/scale/scale-to-30000-users",
    ),
    # MM_50000: 5 app 8/16, writer 8/64, 4 readers 8/64, 4 search 8/64, proxy 16/64.
    Tier(
        50000,
        Shape(5, 8, 16),
        Shape(1, 8, 64),
        Shape(4, 8, 64),
        Shape(4, 8, 64),
        Shape(1, 16, 64),
        f"{_PREVIEW}/8164/scale/scale-to-50000-users.html",
    ),
    # MM_80000: 4 app 16/32, writer 16/128, 3 readers 16/128, 4 search 8/64, proxy 16/64.
    Tier(
        80000,
        Shape(4, 16, 32),
        Shape(1, 16, 128),
        Shape(3, 16, 128),
        Shape(4, 8, 64),
        Shape(1, 16, 64),
        f"{_PREVIEW}/8470/administration-guide/scale/scale-to-80000-users.html",
    ),
    # MM_100000: 6 app 16/32, writer 16/128, 5 readers 16/128, 4 search 8/64, proxy 16/64.
    Tier(
        100000,
        Shape(6, 16, 32),
        Shape(1, 16, 128),
        Shape(5, 16, 128),
        Shape(4, 8, 64),
        Shape(1, 16, 64),
        "https://docs.mattermost.com/administration-guide/scale/scale-to-100000-users.html",
    ),
)

# PATTERN (Table 1): the user ranges of the three patterns, each pattern's upper bound
# inclusive: single below 2,000, multi 2,000 to 10,000, cluster above 10,000.
PATTERN_LIMITS = (("single", 1999), ("multi", 10000), ("cluster", None))
# PATTERN: the single pattern has one each of search, file storage and push proxy (Table
# 1's shape; the role declarations make them optional there, the report draws them).
SINGLE_EXTRAS = {"search": 1, "storage": 1, "pushproxy": 1}

# MM_STORAGE: a server with its database, before any user data (upper end of 600-800 MB).
BASE_GIB = 0.8
SAFETY = 1.5  # MM_STORAGE: "a 1-2x safety factor"; the middle of it.
# ESTIMATE: the OS, packages and logs of any host.
SYSTEM_DISK_GIB = 20
# ESTIMATE: database rows (posts, reactions, indexes) grow far slower than files: a tenth.
DB_SHARE = 0.1
# ESTIMATE: a search index is about the size of the posts it indexes: the database's share.
SEARCH_SHARE = 0.1


@dataclass
class RoleSize:
    role: str
    hosts: int
    cpus: int
    memory_gib: int
    disk_gib: int
    source: str

    def line(self) -> str:
        return f"{self.hosts} x {self.cpus} vCPU, {self.memory_gib} GiB, {self.disk_gib} GiB disk"


@dataclass
class Recommendation:
    users: int
    pattern: str
    tier: Tier
    mb_per_user_month: float
    roles: list[RoleSize] = field(default_factory=list)

    def role(self, name: str) -> RoleSize:
        return next(r for r in self.roles if r.role == name)

    def table(self) -> str:
        rows = [("role", "hosts", "vCPU", "memory", "disk", "source")]
        rows += [
            (r.role, str(r.hosts), str(r.cpus), f"{r.memory_gib} GiB", f"{r.disk_gib} GiB", r.source)
            for r in self.roles
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows)


def pattern_for(users: int) -> str:
    for name, limit in PATTERN_LIMITS:
        if limit is None or users <= limit:
            return name
    raise AssertionError("unreachable")


def tier_for(users: int) -> Tier:
    """The smallest reference architecture for at least `users` (the largest beyond it)."""
    return next((t for t in TIERS if users <= t.users), TIERS[-1])


def recommend(users: int, mb_per_user_month: float = 15.0) -> Recommendation:
    """The pattern and per-role sizes for `users` concurrent users; `mb_per_user_month`
    is the file upload rate (MM_STORAGE: low 1-5, medium 5-25, high 25-100)."""
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise InventoryError([f"--users: expected a whole number of users, at least 1, got {users!r}"])
    if mb_per_user_month <= 0:
        raise InventoryError([f"--mb-per-user-month: expected a positive number, got {mb_per_user_month!r}"])
    from .registry import registry

    pattern = pattern_for(users)
    tier = tier_for(users)
    minimum = {name: role.min_hosts.get(pattern, 0) for name, role in registry().roles.items()}
    # MM_STORAGE: a year of files.
    files_gib = math.ceil(BASE_GIB + users * mb_per_user_month * 12 * SAFETY / 1024)
    db_gib = SYSTEM_DISK_GIB + math.ceil(files_gib * DB_SHARE)
    src = f"Mattermost {tier.users}-user reference architecture ({tier.source})"
    rec = Recommendation(users, pattern, tier, mb_per_user_month)

    def add(role: str, hosts: int, cpus: int, memory: int, disk: int, source: str) -> None:
        rec.roles.append(RoleSize(role, max(hosts, minimum.get(role, 0)), cpus, memory, disk, source))

    add("proxy", tier.proxy.nodes, tier.proxy.cpus, tier.proxy.memory_gib, SYSTEM_DISK_GIB, f"proxy: {src}")
    add(
        "app",
        tier.app.nodes if pattern != "single" else 1,
        tier.app.cpus,
        tier.app.memory_gib,
        SYSTEM_DISK_GIB,
        f"application: {src}" + ("; one server in the single pattern (Table 1)" if pattern == "single" else ""),
    )
    # A job server is a Mattermost server running the jobs: sized as an application server.
    add("jobserver", 1, tier.app.cpus, tier.app.memory_gib, SYSTEM_DISK_GIB, f"application: {src}")
    # The database: the writer plus its readers (replicas), each sized as the writer.
    add(
        "db",
        tier.db_writer.nodes + tier.db_readers.nodes,
        tier.db_writer.cpus,
        tier.db_writer.memory_gib,
        db_gib,
        f"RDS writer/readers: {src}; disk: ESTIMATE (a tenth of the files, plus the system)",
    )
    search = tier.search if tier.search.nodes else Shape(1, 4, 32)  # MM_2000's node when the tier has none
    search_hosts = SINGLE_EXTRAS["search"] if pattern == "single" else search.nodes
    add(
        "search",
        search_hosts,
        search.cpus,
        search.memory_gib,
        SYSTEM_DISK_GIB + math.ceil(files_gib * SEARCH_SHARE),
        f"Elasticsearch nodes: {src}; disk: ESTIMATE",
    )
    # ESTIMATE: S3 storage nodes (SeaweedFS) need little CPU; every node holds a full copy.
    add(
        "storage",
        SINGLE_EXTRAS["storage"] if pattern == "single" else 0,
        2,
        4,
        SYSTEM_DISK_GIB + files_gib,
        f"disk: lifetime storage, {mb_per_user_month:g} MB/user/month x 12 x {SAFETY} "
        f"(docs.mattermost.com scale pages); CPU/memory: ESTIMATE",
    )
    # ESTIMATE: the push proxy relays notifications to Apple/Google: a small Go service.
    add(
        "pushproxy",
        SINGLE_EXTRAS["pushproxy"] if pattern == "single" else 0,
        1,
        1,
        SYSTEM_DISK_GIB,
        "ESTIMATE (a small relay; Mattermost publishes no figure)",
    )
    # ESTIMATE: Prometheus keeps 15 days of samples of every target by default.
    add(
        "monitoring",
        1,
        2 if pattern == "single" else 4,
        4 if pattern == "single" else 8,
        SYSTEM_DISK_GIB + 10 * (1 if pattern == "single" else 3),
        "ESTIMATE (Prometheus, 15 days of samples)",
    )
    return rec


PLACEHOLDER = "<address of {name}>"


def host_names(rec: Recommendation) -> list[tuple[str, list[str], RoleSize]]:
    """(name, roles, size) per host. The single pattern's job server also runs
    monitoring (Table 1: "job and monitoring host"); elsewhere monitoring shares the job
    server's host too, as in the example inventories."""
    prefix = {
        "proxy": "proxy",
        "app": "app",
        "jobserver": "job",
        "db": "db",
        "search": "search",
        "storage": "storage",
        "pushproxy": "push",
    }
    monitoring = rec.role("monitoring")
    hosts = []
    for size in rec.roles:
        if size.role == "monitoring":
            continue
        for i in range(1, size.hosts + 1):
            if size.role == "jobserver" and i == 1:  # both on one host: room for both
                both = RoleSize(
                    "jobserver",
                    1,
                    size.cpus + monitoring.cpus,
                    size.memory_gib + monitoring.memory_gib,
                    max(size.disk_gib, monitoring.disk_gib),
                    "job server + monitoring",
                )
                hosts.append((f"{prefix[size.role]}{i}", ["jobserver", "monitoring"], both))
            else:
                hosts.append((f"{prefix[size.role]}{i}", [size.role], size))
    return hosts


def inventory(rec: Recommendation, domain: str = "chat.example.com") -> str:
    """A starting inventory: the hosts with their roles and placeholders for their
    addresses (it is refused until they are filled in), sizes as comments."""
    lines = [
        f"# Written by `inv size --users {rec.users}`: the {rec.pattern} pattern for {rec.users:,} users.",
        "# Fill in every <address of ...> (where this machine reaches the host over SSH) and,",
        "# where the hosts talk over another network, add private_address. Then:",
        "#   inv plan --inventory THIS_FILE",
        "# Sizes per role (vCPU, memory, disk) and where each figure comes from:",
        *(f"#   {r.role:<10} {r.line()}  [{r.source}]" for r in rec.roles),
        "",
    ]
    document = {
        "pattern": rec.pattern,
        "ssh": {"user": "root", "port": 22, "strict_host_keys": True},
        "settings": {"domain": domain, "expected_users": rec.users},
        "hosts": [],
    }
    text = "\n".join(lines) + yaml.safe_dump({k: v for k, v in document.items() if k != "hosts"}, sort_keys=False)
    text += "hosts:\n"
    for name, roles, size in host_names(rec):
        text += (
            f"  - name: {name}    # {size.cpus} vCPU, {size.memory_gib} GiB memory, {size.disk_gib} GiB disk\n"
            f'    address: "{PLACEHOLDER.format(name=name)}"\n'
            f"    roles: [{', '.join(roles)}]\n"
        )
    return text
