"""Canonical JSON (RFC 8785) and the content ids built on it.

An id is ``sha256:`` followed by the hex digest of an object's canonical bytes, so the
same content always has the same id whatever key order or whitespace it was written with.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import rfc8785

ID_PREFIX = "sha256:"


def canonical_bytes(obj: Any) -> bytes:
    """Return the RFC 8785 (JCS) serialization of ``obj``."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ValueError(f"value cannot be canonicalized: {exc}") from exc


def compose_object(parts: Mapping[str, bytes]) -> bytes:
    """Canonical bytes of an object whose members are already canonical.

    JCS sorts members by their UTF-16 code units and writes no whitespace, so an object
    can be assembled from canonical members without serializing them again. This keeps
    three ids over overlapping sections to one serialization of each section.
    """
    keys = sorted(parts, key=lambda k: k.encode("utf-16-be"))
    pieces = [canonical_bytes(k) + b":" + parts[k] for k in keys]
    return b"{" + b",".join(pieces) + b"}"


def digest(data: bytes) -> str:
    """The id of some bytes: ``sha256:<hex>``."""
    return ID_PREFIX + hashlib.sha256(data).hexdigest()


def content_id(obj: Any) -> str:
    """The id of a JSON value: the digest of its canonical bytes."""
    return digest(canonical_bytes(obj))


def is_id(value: str) -> bool:
    hexpart = value[len(ID_PREFIX):] if value.startswith(ID_PREFIX) else ""
    return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
