"""The settings model's core: the keys every deployment has, and the base of every
component's settings section.

A component declares its own section (its pydantic model, whose field defaults are the
built-in defaults) next to its code; registry.py assembles the whole settings tree from
those declarations, so that a typo in an inventory is caught as an unknown key before any
host is touched.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .grammar import URL, Hostname, control_characters


class Section(BaseModel):
    # forbid: an unknown key is almost always a typo; strict: "22" is not a port.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _one_line(cls, value: Any, info: ValidationInfo) -> Any:
        """Every string (and list of strings) of a section is one line without control
        characters: a newline would start a new line in the config file or script it lands
        in. A field that takes several lines says so: json_schema_extra={"multiline": True}."""
        field = cls.model_fields.get(info.field_name or "")
        extra = field.json_schema_extra if field is not None else None
        if isinstance(extra, dict) and extra.get("multiline"):
            return value
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and control_characters(item):
                raise ValueError(
                    "expected a single line without control characters, found " + ", ".join(control_characters(item))
                )
        return value


class CoreSettings(Section):
    domain: Hostname = "mattermost.example.com"
    # Sizing hint the patterns set (2k / 10k / 50k); components size caches and pools from it.
    expected_users: int = Field(default=2000, ge=1)
    # An apt proxy such as apt-cacher-ng (http://host:3142); written on every host.
    apt_proxy: URL | None = Field(default=None, pattern=r"^https?://[^/]+/?$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
