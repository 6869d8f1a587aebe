"""YAML from files and flags an operator (or an attacker) wrote: bounded, and every
problem one line naming the file (and the line) instead of a traceback.

Refused: files over MAX_BYTES, bytes that are not UTF-8, characters YAML does not allow,
nesting deeper than MAX_DEPTH, documents whose aliases expand past MAX_NODES nodes (the
"billion laughs": a few lines that expand to gigabytes), keys that are not plain strings
(complex keys, numbers, booleans, null), duplicate keys, and more than one document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InventoryError

MAX_BYTES = 1 << 20  # an inventory of hundreds of hosts is a few tens of kilobytes
MAX_DEPTH = 64
MAX_NODES = 100_000  # after aliases are expanded

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


def read(path: Path, label: str | None = None) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file; (data, {key path: line}). Raises InventoryError."""
    label = label or str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise InventoryError([f"{label}: is a directory, expected a YAML file"]) from None
    except FileNotFoundError:
        raise InventoryError([f"{label}: no such file"]) from None
    except OSError as e:
        raise InventoryError([f"{label}: cannot read: {e.strerror}"]) from None
    if len(raw) > MAX_BYTES:
        raise InventoryError([f"{label}: larger than {MAX_BYTES // 1024} KiB; expected a YAML file of settings"])
    return parse(raw, label)


def parse(raw: bytes | str, label: str) -> tuple[Any, dict[tuple, int]]:
    """Parse one YAML document from bytes or text; (data, {key path: line})."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise InventoryError([f"{label}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})"]) from None
    else:
        text = raw
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InventoryError([f"{label}: larger than {MAX_BYTES // 1024} KiB"])
    try:
        _check_depth(text, label)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            lines: dict[tuple, int] = {}
            if node is None:
                return None, lines
            _walk(node, lines, label)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark else ""
        context = ""
        if e.context and e.context_mark and e.context_mark is not mark:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        raise InventoryError([f"{label}{where}: malformed YAML: {e.problem or e.context}{context}"]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise InventoryError([f"{label}:{line}: character {e.character!r} is not allowed in YAML"]) from None
    except yaml.YAMLError as e:
        raise InventoryError([f"{label}: malformed YAML: {e}"]) from None
    except RecursionError:
        raise InventoryError([f"{label}: nested too deeply (more than {MAX_DEPTH} levels)"]) from None
    return data, lines


def _check_depth(text: str, label: str) -> None:
    """Refuse deep nesting from the event stream (flat: no recursion) before the composer,
    which recurses once per level, sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise InventoryError([f"{label}:{line}: nested more than {MAX_DEPTH} levels deep"])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _walk(root: yaml.Node, lines: dict, label: str) -> None:
    """Record the line of every key path; refuse non-string and duplicate keys; count
    nodes as the aliases expand them (iteratively: a cycle or a bomb stops at the budget)."""
    from .inventory import _key_path

    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    seen_nodes = 0
    while stack:
        node, loc = stack.pop()
        seen_nodes += 1
        if seen_nodes > MAX_NODES:
            raise InventoryError(
                [
                    f"{label}:{root.start_mark.line + 1}: expands to more than {MAX_NODES} values "
                    "(aliases that multiply: refused)"
                ]
            )
        if len(loc) > MAX_DEPTH:  # aliases can nest deeper than the text does (a cycle: forever)
            raise InventoryError(
                [
                    f"{label}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep "
                    "(through aliases that multiply: refused)"
                ]
            )
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE:
                    stack.append((value_node, loc))
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                    raise InventoryError(
                        [f"{label}:{line}: {_key_path(loc) or 'top level'}: expected a plain string key, got {shown!r}"]
                    )
                key = key_node.value
                if key in seen:
                    raise InventoryError(
                        [f"{label}:{line}: {_key_path(loc + (key,))}: duplicate key (first at line {seen[key]})"]
                    )
                seen[key] = line
                lines[loc + (key,)] = line
                stack.append((value_node, loc + (key,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, loc + (i,)))
