"""A Prometheus exporter from Debian's packages (prometheus-<name>-exporter): its settings
in /etc/default/<unit> in place before the package starts it (otherwise it starts without
them, fails, and hits systemd's start limit), the package, the running service, and a
handler that restarts it when the settings change."""

from __future__ import annotations

from ..grammar import hostport
from ..step import Step
from .command import Command
from .apt import Packages
from .files import File
from .secretfile import SecretFile
from .systemd import Service
from .users import Group, User


def exporter_steps(unit: str, env: str, secret: bool = True, files: tuple[Step, ...] = ()) -> list[Step]:
    """Steps for the exporter `unit` with the EnvironmentFile text `env` (see env_file).
    A secret one (a DSN with a password) is owned and moded as the package sets it.
    `files`: more files it reads (a password file), made once its user exists."""
    path, notify = f"/etc/default/{unit}", (restart_handler(unit),)
    if secret:
        settings: Step = SecretFile(path, env, owner="prometheus", group="prometheus", mode="0640", notify=notify)
    else:
        settings = File(path, env, notify=notify)
    # The packages' own user, made first so the settings file can be owned by it.
    return [
        Group("prometheus"),
        User("prometheus", home="/var/lib/prometheus"),
        *files,
        settings,
        Packages(unit),
        Service(unit),
    ]


def restart_handler(unit: str) -> str:
    return f"restart {unit}"


def exporter_handlers(*units: str) -> dict[str, Step]:
    return {restart_handler(u): Command(f"restart {u}", f"systemctl restart {u}") for u in units}


def listen_flag(address: str, port: int, dash: str = "--") -> str:
    """Where the exporter listens: the host's private `address`, where the monitoring host
    scrapes it, instead of every interface (the packages' default). `dash`: the flag's
    prefix in the exporter's flag style."""
    return f"{dash}web.listen-address={hostport(address, port)}"


def env_file(component: str, **values: str) -> str:
    """A systemd EnvironmentFile: double-quoted values with \\ and \" escaped."""
    lines = [f"# Managed by mmdeploy ({component})."]
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"
