"""Load and validate an inventory (hosts/*.yml) into a typed model.

Everything that can be wrong with an inventory is found here, before any host is contacted,
and reported as one line per problem: `file[:line]: key.path: what was expected`.

Settings precedence, lowest first: built-in defaults (settings.py) < pattern defaults
(patterns.py) < inventory `settings:` < host `vars:` < CLI overrides (`--set key=value`).
This module needs neither Fabric nor the runner.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import safeyaml
from .errors import InventoryError
from .grammar import Address, FilePath, UnixUser
from .patterns import PATTERNS, role_problems

# The settings tree is assembled from the components' declarations (registry.py); this
# module imports the registry only inside load(), so the model needs neither Fabric nor the
# runner and the components can import the model.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SSHOptions(_Strict):
    user: UnixUser | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key: FilePath | None = None
    strict_host_keys: bool | None = None
    # known_hosts files besides ~/.ssh/known_hosts (relative to the inventory's folder).
    known_hosts: FilePath | None = None
    connect_timeout: float | None = Field(default=None, gt=0, le=300)


class HostEntry(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    address: Address
    private_address: Address | None = None
    roles: list[str] = Field(min_length=1)
    ssh: SSHOptions = SSHOptions()
    vars: dict[str, Any] = {}


class InventoryFile(_Strict):
    pattern: Literal["single", "multi", "cluster"]
    ssh: SSHOptions = SSHOptions()
    settings: dict[str, Any] = {}
    hosts: list[HostEntry] = Field(min_length=1)


@dataclass(frozen=True)
class SSH:
    user: str
    port: int
    key: Path | None
    strict_host_keys: bool
    connect_timeout: float
    known_hosts: Path | None = None


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # where the control machine reaches it over SSH
    private_address: str  # where the other hosts reach its services
    roles: tuple[str, ...]
    ssh: SSH
    settings: Any  # the registry's settings model, with this host's vars applied

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Inventory:
    path: Path
    pattern: str
    hosts: tuple[Host, ...]
    settings: Any  # the registry's settings model, without host vars

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if h.has(role)]

    @property
    def secrets_path(self) -> Path:
        # Next to the inventory, git-ignored by the *.secrets.yml rule.
        return self.path.with_name(self.path.stem + ".secrets.yml")


# --- loading ---------------------------------------------------------------------------


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Inventory:
    """Load, merge and validate; raise InventoryError listing every problem found."""
    from .registry import registry

    reg = registry()
    path = Path(path)
    label = str(path)
    if not path.exists():
        raise InventoryError([f"{label}: no such inventory file"])
    data, lines = _read_yaml(path, label)
    problems = _Problems(label, lines, reg.settings_model)

    cli = parse_overrides(overrides)

    try:
        raw = InventoryFile.model_validate(data)
    except ValidationError as e:
        problems.pydantic(e)
        raw = None
    # Each settings layer is validated alone first, so a problem names the layer it came
    # from; read from the raw data so they are reported even when the structure is wrong.
    if isinstance(data.get("settings"), dict):
        problems.settings_layer(data["settings"], ("settings",))
    for i, h in enumerate(data.get("hosts") if isinstance(data.get("hosts"), list) else []):
        if isinstance(h, dict) and isinstance(h.get("vars"), dict):
            problems.settings_layer(h["vars"], ("hosts", i, "vars"))
    cli_problems = _Problems("--set", {}, reg.settings_model)
    cli_problems.settings_layer(cli, ())
    problems.lines += cli_problems.lines
    if raw is None:
        raise InventoryError(problems.lines)

    pattern = PATTERNS[raw.pattern]

    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    private: dict[str, int] = {}
    unknown_roles = False
    for i, h in enumerate(raw.hosts):
        if h.name in names:
            problems.add(("hosts", i, "name"), f"duplicate host name '{h.name}' (also hosts[{names[h.name]}])")
        names.setdefault(h.name, i)
        # Where the other hosts reach it: two hosts there would get each other's traffic.
        reach = (h.private_address or h.address).lower()
        if reach in private:
            key = "private_address" if h.private_address else "address"
            problems.add(("hosts", i, key), f"duplicate private address '{reach}' (also hosts[{private[reach]}])")
        private.setdefault(reach, i)
        if h.address in addresses:
            problems.add(
                ("hosts", i, "address"),
                f"duplicate address '{h.address}' (also hosts[{addresses[h.address]}])",
            )
        addresses.setdefault(h.address, i)
        if len(set(h.roles)) != len(h.roles):
            problems.add(("hosts", i, "roles"), "a role is listed twice")
        for j, role in enumerate(h.roles):
            if role not in reg.roles:
                unknown_roles = True
                expected = (
                    " or ".join(map(repr, reg.roles))
                    if len(reg.roles) < 3
                    else ", ".join(map(repr, list(reg.roles)[:-1])) + f" or {list(reg.roles)[-1]!r}"
                )
                problems.add(("hosts", i, "roles", j), f"expected one of {expected}, got {role!r}")

    if not unknown_roles:  # an unknown role is the problem, not the count it leaves short
        for key, msg in role_problems(pattern, reg.roles.values(), [list(h.roles) for h in raw.hosts]):
            problems.add((key,), msg)

    ssh_defaults = raw.ssh
    resolved_ssh = []
    for i, h in enumerate(raw.hosts):
        ssh = _resolve_ssh(ssh_defaults, h.ssh, path.parent)
        if ssh.key is not None and not ssh.key.is_file():
            where = ("hosts", i, "ssh", "key") if h.ssh.key else ("ssh", "key")
            problems.add(where, f"SSH key file not found: {ssh.key}")
        if ssh.known_hosts is not None and not ssh.known_hosts.is_file():
            where = ("hosts", i, "ssh", "known_hosts") if h.ssh.known_hosts else ("ssh", "known_hosts")
            problems.add(where, f"known_hosts file not found: {ssh.known_hosts}")
        resolved_ssh.append(ssh)

    if problems.lines:
        raise InventoryError(problems.lines)

    base = merge(pattern.defaults, raw.settings)
    global_settings, global_problems = _settings(reg, merge(base, cli), problems, ("settings",), set())
    hosts = []
    for i, (h, ssh) in enumerate(zip(raw.hosts, resolved_ssh)):
        settings, _ = _settings(reg, merge(base, h.vars, cli), problems, ("hosts", i, "vars"), global_problems)
        hosts.append(
            Host(
                name=h.name,
                address=h.address,
                private_address=h.private_address or h.address,
                roles=tuple(h.roles),
                ssh=ssh,
                settings=settings,
            )
        )
    if problems.lines:
        raise InventoryError(problems.lines)
    result = Inventory(path=path, pattern=raw.pattern, hosts=tuple(hosts), settings=global_settings)
    # Rules on the layout as a whole (hosts, roles and settings together), from the components.
    for c in reg.components:
        for key, msg in c.validate_layout(result):
            problems.add(tuple(int(p) if p.isdigit() else p for p in key.split(".")), msg)
    if problems.lines:
        raise InventoryError(problems.lines)
    return result


def inventory_path(pattern: str | None, inventory: str | None, hosts_dir: Path = Path("hosts")) -> Path:
    """`--pattern P` means hosts/P.yml unless `--inventory` names a file."""
    if inventory:
        return Path(inventory)
    if not pattern:
        raise InventoryError(["give --pattern (single, multi, cluster) or --inventory FILE"])
    if "/" in pattern or pattern.endswith(".yml"):
        raise InventoryError([f"--pattern: expected a pattern name, got '{pattern}' (use --inventory for a file)"])
    return hosts_dir / f"{pattern}.yml"


def parse_overrides(items) -> dict:
    """`a.b=value` strings into a nested dict; values are read as YAML (bounded as an
    inventory is). Raises InventoryError naming the --set."""
    result: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", key):
            raise InventoryError([f"--set: expected key.path=value, got {item!r}"])
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InventoryError([f"--set: '{key}' conflicts with another --set"])
        node[parts[-1]] = safeyaml.parse(value, f"--set {key}")[0] if value else ""
    return result


# --- helpers ---------------------------------------------------------------------------


class _Problems:
    """Collects problems as `file[:line]: key.path: message` lines."""

    def __init__(self, label: str, lines: dict[tuple, int], settings_model: type[BaseModel]):
        self.label = label
        self.line_of = lines
        self.settings_model = settings_model
        self.lines: list[str] = []

    def add(self, loc: tuple, message: str) -> None:
        where = self.label
        for cut in range(len(loc), -1, -1):  # nearest enclosing key that has a line
            if loc[:cut] in self.line_of:
                where = f"{self.label}:{self.line_of[loc[:cut]]}"
                break
        key = _key_path(loc)
        line = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if line not in self.lines:  # a shared default (ssh.key) is reported once, not per host
            self.lines.append(line)

    def pydantic(self, error: ValidationError, prefix: tuple = (), model: type[BaseModel] | None = None) -> None:
        for err in error.errors():
            loc = prefix + tuple(err["loc"])
            self.add(loc, _explain(err, model or InventoryFile, loc[len(prefix) :]))

    def settings_layer(self, layer: dict, prefix: tuple) -> None:
        try:
            self.settings_model.model_validate(layer)
        except ValidationError as e:
            self.pydantic(e, prefix, self.settings_model)


def _explain(err: Mapping[str, Any], model: type[BaseModel], loc: tuple) -> str:
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (expected one of: {', '.join(known)})"
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected one of {expected}, got {given!r}"
    if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
        what = {
            "int_type": "an integer",
            "string_type": "a string",
            "bool_type": "true or false",
            "float_type": "a number",
            "list_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a mapping",
        }.get(kind, kind.removesuffix("_type"))
        return f"expected {what}, got {type(given).__name__} {given!r}"
    if kind == "string_pattern_mismatch":
        return f"{given!r} does not match the expected form {err['ctx']['pattern']}"
    if kind == "value_error":  # a grammar of grammar.py: its message says what was expected
        return f"{err['msg'].removeprefix('Value error, ')}, got {given!r}"
    return f"{err['msg'].lower()}, got {given!r}"


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys valid at `loc` inside `model`, for 'did you mean' hints."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_yaml(path: Path, label: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML (bounded, see safeyaml.py) and remember the line of every key path."""
    data, lines = safeyaml.read(path, label)
    if not isinstance(data, dict):
        raise InventoryError([f"{label}: expected a mapping with pattern, hosts and settings"])
    return data, lines


def _resolve_ssh(defaults: SSHOptions, host: SSHOptions, base: Path) -> SSH:
    def pick(name, fallback):
        value = getattr(host, name)
        if value is None:
            value = getattr(defaults, name)
        return fallback if value is None else value

    def local(value: str | None) -> Path | None:
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    return SSH(
        user=pick("user", "root"),
        port=pick("port", 22),
        key=local(pick("key", None)),
        strict_host_keys=pick("strict_host_keys", True),
        connect_timeout=pick("connect_timeout", 10.0),
        known_hosts=local(pick("known_hosts", None)),
    )


def merge(*layers: dict) -> dict:
    """Deep-merge mappings, later layers winning; anything but a mapping is replaced."""
    result: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = value
    return result


def _settings(reg, merged: dict, problems: _Problems, where: tuple, known: set) -> tuple[Any, set]:
    """Validate merged settings, then each component's rules across keys; problems already
    reported globally are not repeated per host."""
    model = reg.settings_model
    try:
        settings = model.model_validate(merged)
    except ValidationError as e:  # layers were valid alone; a merge can still clash
        problems.pydantic(e, where, model)
        return model(), set()
    found = {p for c in reg.components for p in c.validate(settings)}
    for key, msg in sorted(found - known):
        # "pushproxy.apple.0.topic": list indices as numbers, so the line and path are found.
        problems.add(where + tuple(int(p) if p.isdigit() else p for p in key.split(".")), msg)
    return settings, found
