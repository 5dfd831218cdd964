"""Typed records of manifest sections, registered by the folders that define them.

The core knows no section's fields. Each ecosystem (:mod:`envcap.ecosystems`) registers
here how to read its section into its record, when the ecosystems package is imported
(which ``import envcap`` does), and :meth:`Manifest.record` looks it up. So the core
imports nothing above it, and a manifest pays for a record only when one is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_LOADERS: dict[str, Callable[[Any], Any]] = {}


def register(section: str, loader: Callable[[Any], Any]) -> None:
    """Make ``loader(section_dict)`` the way section ``section`` is read into its record."""
    _LOADERS[section] = loader


def load(section: str, data: Any) -> Any:
    """The record of section ``section`` holding ``data``; ``None`` for no section."""
    try:
        loader = _LOADERS[section]
    except KeyError:
        raise LookupError(f"no typed record is registered for section {section!r}") from None
    return None if data is None else loader(data)
