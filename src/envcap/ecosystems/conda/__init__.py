"""The conda ecosystem: one environment's conda-meta records (probe, record, build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary_line(prefix: Any, count: int) -> str:
    return f"{prefix}  {count} packages"


def describe(section: Mapping[str, Any]) -> str:
    """The summary line of a conda section, read from the section itself: a summary is
    on the snapshot's path, which does not import the typed records (see record.py)."""
    return summary_line(section.get("prefix"), len(section.get("packages") or ()))
