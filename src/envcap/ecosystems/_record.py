"""What every ecosystem's section record shares: reading a section's fields by type,
and writing them back exactly as they came.

A record is a view of a section that is already part of a manifest's ids, so
``to_dict(from_dict(section))`` must give the section's canonical bytes back. Two things
make that hold for any section this schema major allows, not only for the ones envcap
writes today: a key the section lacks is remembered as lacking (``omitted``), and a key
this envcap does not know (a later minor version's addition) is kept as it was
(``extra``). A value of the wrong type is refused with the field path that holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from ..core.errors import ManifestError

NOTHING: Mapping[str, Any] = MappingProxyType({})
NONE_OMITTED: frozenset[str] = frozenset()


def nothing() -> Mapping[str, Any]:
    """The default of a record's mapping fields (a shared empty, read-only mapping)."""
    return NOTHING

T = TypeVar("T")


class Fields:
    """The fields of one section or item, read by type and named by path."""

    __slots__ = ("data", "known", "where")

    def __init__(self, data: Any, where: str, known: Iterable[str]) -> None:
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where} must be an object, not {_kind(data)}")
        self.data = data
        self.where = where
        self.known = tuple(known)

    def omitted(self) -> frozenset[str]:
        missing = [k for k in self.known if k not in self.data]
        return frozenset(missing) if missing else NONE_OMITTED

    def extra(self) -> Mapping[str, Any]:
        unknown = {k: v for k, v in self.data.items() if k not in self.known}
        return MappingProxyType(unknown) if unknown else NOTHING

    def text(self, key: str) -> str | None:
        """A string field; ``None`` when absent or null."""
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{self.where}.{key} must be a string, not {_kind(value)}")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise ManifestError(f"{self.where}.{key} must be true, false or null, not {_kind(value)}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        items = self._list(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ManifestError(f"{self.where}.{key}[{i}] must be a string, not {_kind(item)}")
        return tuple(items)

    def text_map(self, key: str) -> Mapping[str, str]:
        if key not in self.data:
            return NOTHING
        value = self.data[key]
        if not isinstance(value, Mapping):
            raise ManifestError(f"{self.where}.{key} must be an object, not {_kind(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise ManifestError(f"{self.where}.{key}.{name} must be a string, not {_kind(item)}")
        return MappingProxyType(dict(value))

    def items(self, key: str) -> list[tuple[str, Any]]:
        """(path, value) of each element of a list field."""
        return [(f"{self.where}.{key}[{i}]", item) for i, item in enumerate(self._list(key))]

    def _list(self, key: str) -> list[Any]:
        if key not in self.data:
            return []
        value = self.data[key]
        if not isinstance(value, list | tuple):
            raise ManifestError(f"{self.where}.{key} must be an array, not {_kind(value)}")
        return list(value)


def written(values: dict[str, Any], omitted: frozenset[str], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields as its section held them: omitted keys left out, extra ones back."""
    for key in omitted:
        values.pop(key, None)
    if extra:
        values.update(extra)
    return values


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
