"""The system-packages ecosystem: dpkg, rpm and apk (probe, record, build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary_line(manager: Any, count: int) -> str:
    return f"{manager}  {count} packages"


def describe(section: Mapping[str, Any]) -> str:
    """The summary line of a system section, read from the section itself: a summary is
    on the snapshot's path, which does not import the typed records (see record.py)."""
    return summary_line(section.get("manager"), len(section.get("packages") or ()))
