"""Handlers survive an interrupted run: before a step that notifies handlers applies its
change, the host records them as pending (/var/lib/mmdeploy/pending/<host>.<component>.<handler>);
they are cleared once run. A run killed between a config change and its restart would
otherwise leave the service on the old config for good (the next run finds the file as
wanted and notifies nothing): the next run finds the record and runs the handler.
"""

from __future__ import annotations

import re
import shlex

from .facts import Fact
from .remote import Remote
from .step import run_checked

DIR = "/var/lib/mmdeploy/pending"
FACT = f"ls -1 {DIR} 2>/dev/null || true"


def _name(host: str, component: str, handler: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host}.{component}.{handler}")


def recorded(fact: Fact, host: str, component: str, handlers: dict) -> list[str]:
    """The handlers of `component` a previous run left pending on this host."""
    names = set(fact.out.split())
    return [h for h in handlers if _name(host, component, h) in names]


def record(remote: Remote, component: str, handlers: tuple[str, ...]) -> None:
    files = " ".join(shlex.quote(f"{DIR}/{_name(remote.host.name, component, h)}") for h in handlers)
    run_checked(remote, f"mkdir -p {DIR} && touch {files}", "record pending handlers", timeout=30)


def clear(remote: Remote, component: str, handlers: list[str]) -> None:
    files = " ".join(shlex.quote(f"{DIR}/{_name(remote.host.name, component, h)}") for h in handlers)
    run_checked(remote, f"rm -f {files}", "clear pending handlers", timeout=30)
