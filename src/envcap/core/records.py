"""Typed records of manifest sections, registered by the folders that define them.

The core knows no section's fields, and imports nothing above it. A record class (an
ecosystem's, :mod:`envcap.ecosystems`) names its section in ``SECTION`` and reads it with
``from_dict``; :meth:`Manifest.record` makes one on first use, given the class (typed)
or the section's name. For the name to work, each ecosystem registers its class here when
the ecosystems package is imported, which ``import envcap`` does; nothing is imported for
a record until one is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol


class SectionRecord(Protocol):
    """What a section record class offers the core."""

    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Any, where: str = ...) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


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
