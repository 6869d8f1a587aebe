"""What each distribution pattern of the founding report requires of an inventory.

`min_hosts` is the number of hosts that must carry each role; one host may carry several
roles (an all-in-one single-pattern host is valid). `defaults` is the pattern's settings
layer, between the built-in defaults and the inventory's own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("proxy", "app", "jobserver", "db", "search", "storage", "pushproxy", "monitoring")


@dataclass(frozen=True)
class Pattern:
    name: str
    users: str
    min_hosts: dict[str, int]
    defaults: dict = field(default_factory=dict)


PATTERNS = {
    p.name: p
    for p in (
        Pattern(
            "single",
            "< 2,000",
            {"proxy": 1, "app": 1, "db": 1, "jobserver": 1, "monitoring": 1},
            {"expected_users": 2000},
        ),
        Pattern(
            "multi",
            "2,000 - 10,000",
            {
                "proxy": 2, "app": 2, "db": 3, "jobserver": 1, "monitoring": 1,
                "search": 2, "storage": 2, "pushproxy": 2,
            },
            {"expected_users": 10000},
        ),
        Pattern(
            "cluster",
            "> 10,000",
            {
                # Distributed MinIO needs at least 4 drives; OpenSearch a 3-node quorum.
                "proxy": 2, "app": 3, "db": 3, "jobserver": 1, "monitoring": 1,
                "search": 3, "storage": 4, "pushproxy": 2,
            },
            {"expected_users": 50000},
        ),
    )
}


def role_problems(pattern: Pattern, host_roles: list[list[str]]) -> list[tuple[str, str]]:
    """(key path, problem) for each role the pattern needs more hosts for."""
    problems = []
    for role, needed in pattern.min_hosts.items():
        have = sum(role in roles for roles in host_roles)
        if have == 0:
            problems.append(
                ("hosts", f"pattern '{pattern.name}' needs a host with role '{role}', none has it")
            )
        elif have < needed:
            problems.append(
                (
                    "hosts",
                    f"pattern '{pattern.name}' needs at least {needed} hosts with role "
                    f"'{role}', found {have}",
                )
            )
    return problems
