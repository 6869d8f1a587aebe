"""What the end-to-end modules measure (seconds, counts), by module, printed at the end of
the run with or without -s, so that CI's log carries the figures too. Under pytest-xdist
each worker sends its figures to the controller, which prints them all (tests/conftest.py)."""

import json

_FIGURES: dict[str, dict] = {}


def figures(title: str) -> dict:
    """A module's figures; the summary at the end of the run prints them under `title`."""
    return _FIGURES.setdefault(title, {})


def measured() -> dict[str, dict]:
    return {title: values for title, values in _FIGURES.items() if values}


def merge(more: dict[str, dict]) -> None:
    for title, values in more.items():
        figures(title).update(values)


def lines() -> list[str]:
    out = []
    for title, values in measured().items():
        out.append(f"{title}:")
        out += [f"  {name}: {json.dumps(value)}" for name, value in values.items()]
    return out
