"""Ops: constructors of steps for the things a host is made of.

Each returns a Step (see step.py) whose check reads batched facts and whose apply runs one
script on the host.
"""

from .apt import Packages
from .command import NOW, Command, OneAtATime, started_since
from .archive import Binary, Unpacked
from .files import Directory, File, JsonSettings
from .sql import SQL
from .sysctl import Sysctl
from .systemd import Service, unit
from .users import Group, User

__all__ = [
    "Binary",
    "Packages",
    "Command",
    "OneAtATime",
    "NOW",
    "started_since",
    "Directory",
    "File",
    "JsonSettings",
    "Unpacked",
    "SQL",
    "Sysctl",
    "Service",
    "unit",
    "Group",
    "User",
]
