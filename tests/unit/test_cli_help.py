"""`inv --list` tells what each task does and its main flags; `inv --help TASK` documents
every flag. Checked on the real task collection (tasks.py)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402  (the project's tasks.py, beside the package)


def all_tasks(collection, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, f"{prefix}{name}.")


@pytest.mark.parametrize("name, task", list(all_tasks(tasks.ns)))
def test_every_task_says_what_it_does_and_documents_its_flags(name, task):
    first = (task.__doc__ or "").strip().splitlines()[0]
    assert first.endswith((".", ")")) and len(first) <= 110, f"{name}: {first!r}"
    params = [p for p in task.argspec(task.body).parameters if p != "c"]
    missing = [p for p in params if p not in (task.help or {})]
    assert not missing, f"inv {name}: flags without help: {missing}"


def test_inv_list_shows_the_new_tasks():
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in ("topology", "size", "k8s", "vagrant", "plan", "deploy", "db.status"):
        assert re.search(rf"^  {re.escape(name)}\s+\S", out, re.M), name
    assert "--json" in out and "--users N" in out
