"""The distribution patterns of the founding report.

A pattern is a name, the user count it is for, and its settings layer (between the
built-in defaults and the inventory's own settings). How many hosts of each role it needs
is declared by the component that owns the role (component.Role.min_hosts); one host may
carry several roles (an all-in-one single-pattern host is valid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Pattern:
    name: str
    users: str
    defaults: dict = field(default_factory=dict)


PATTERNS = {
    p.name: p
    for p in (
        Pattern("single", "< 2,000", {"expected_users": 2000}),
        # Several app servers share one config: in the database, as Mattermost's HA docs recommend.
        Pattern("multi", "2,000 - 10,000", {"expected_users": 10000, "mattermost": {"config_in_database": True}}),
        # No human in the failover loop: Patroni moves the DB primary by itself.
        Pattern(
            "cluster",
            "> 10,000",
            {"expected_users": 50000, "mattermost": {"config_in_database": True}, "database": {"ha": "patroni"}},
        ),
    )
}


def role_problems(pattern: Pattern, roles: Iterable, host_roles: list[list[str]]) -> list[tuple[str, str]]:
    """(key path, problem) for each declared role (component.Role) the pattern needs more
    hosts for."""
    problems = []
    for role in roles:
        needed = role.min_hosts.get(pattern.name, 0)
        have = sum(role.name in r for r in host_roles)
        if needed and have == 0:
            problems.append(("hosts", f"pattern '{pattern.name}' needs a host with role '{role.name}', none has it"))
        elif have < needed:
            problems.append(
                (
                    "hosts",
                    f"pattern '{pattern.name}' needs at least {needed} hosts with role '{role.name}', found {have}",
                )
            )
    return problems
