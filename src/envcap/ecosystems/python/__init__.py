"""The Python ecosystem: the interpreter and its distributions (probe, record, build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary_line(implementation: Any, version: Any, where: Any, count: int) -> str:
    return f"{implementation} {version}  {where}  {count} packages"


def describe(section: Mapping[str, Any]) -> str:
    """The summary line of a python section, read from the section itself: a summary is
    on the snapshot's path, which does not import the typed records (see record.py)."""
    return summary_line(section.get("implementation"), section.get("version"),
                        section.get("executable") or section.get("prefix"), len(section.get("packages") or ()))
