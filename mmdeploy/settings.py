"""The settings model's core: the keys every deployment has, and the base of every
component's settings section.

A component declares its own section (its pydantic model, whose field defaults are the
built-in defaults) next to its code; registry.py assembles the whole settings tree from
those declarations, so that a typo in an inventory is caught as an unknown key before any
host is touched.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    # forbid: an unknown key is almost always a typo; strict: "22" is not a port.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CoreSettings(Section):
    domain: str = "mattermost.example.com"
    # Sizing hint the patterns set (2k / 10k / 50k); components size caches and pools from it.
    expected_users: int = Field(default=2000, ge=1)
    # An apt proxy such as apt-cacher-ng (http://host:3142); written on every host.
    apt_proxy: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
