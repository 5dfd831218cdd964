"""Canonical JSON (RFC 8785) and the content ids built on it.

An id is ``sha256:`` followed by the hex digest of an object's canonical bytes, so the
same content always has the same id whatever key order or whitespace it was written with.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Mapping

try:
    # The interpreter's own SHA-256. hashlib would load OpenSSL for the same digest,
    # which costs more than a snapshot spends hashing (3.12 renamed the module).
    if sys.version_info >= (3, 12):
        from _sha2 import sha256  # type: ignore[import-not-found]
    else:
        from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - an interpreter without them
    from hashlib import sha256

ID_PREFIX = "sha256:"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
# Outside string literals, a float is the only token with a digit right before ".", "e"
# or "E"; an integer of 16 or more digits may lie outside JSON's exact range.
_NOT_PLAIN = re.compile(r"\d[.eE]|\d{16}")


def canonical_bytes(obj: Any, *, plain: bool = False) -> bytes:
    """Return the RFC 8785 (JCS) serialization of ``obj``.

    ``plain``: the caller knows that ``obj`` holds no float and no integer of 16 or more
    digits (a document :func:`envcap.core.structure.parse` read and found none in), so
    that only the ASCII check is left to make: for a manifest of 1,000 packages the scan
    for numbers outside string literals costs more than the serialization itself.
    """
    # For ASCII text without floats, RFC 8785 and json.dumps with sorted keys and no
    # whitespace agree byte for byte: both escape exactly '"', '\\' and control
    # characters (\b \t \n \f \r short, the rest as lowercase \u00xx), print integers
    # plainly, and UTF-16 and code-point key order coincide for ASCII keys. That is every
    # manifest in practice, and json's C encoder is several times faster than the pure
    # Python rfc8785 encoder, which handles everything else.
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value cannot be canonicalized: {exc}") from exc
    if text.isascii() and (plain or not _NOT_PLAIN.search(_STRINGS.sub("", text))):
        return text.encode("ascii")
    return _rfc8785(obj)


def _rfc8785(obj: Any) -> bytes:
    import rfc8785

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


# Above this size (one input, or all that a process has hashed) OpenSSL's SHA-256 (through
# hashlib) is worth loading: it hashes several times faster than the interpreter's own.
_LARGE = 1 << 20


_hashed = 0  # bytes hashed by the interpreter's SHA-256 in this process so far
_openssl: Any = None


def digest(data: bytes) -> str:
    """The id of some bytes: ``sha256:<hex>``.

    OpenSSL's SHA-256 is loaded for a large input, or once this process has hashed
    about as much in total (a command that reads thousands of store objects): from then
    on it hashes everything, since loading it cost less than it saves."""
    global _hashed, _openssl
    if _openssl is None:
        _hashed += len(data)
        if _hashed <= _LARGE:
            digest: str = sha256(data).hexdigest()  # typed: below 3.12 the module has no stubs
            return ID_PREFIX + digest
        import hashlib

        _openssl = hashlib.sha256
    hexdigest: str = _openssl(data).hexdigest()
    return ID_PREFIX + hexdigest


def content_id(obj: Any) -> str:
    """The id of a JSON value: the digest of its canonical bytes."""
    return digest(canonical_bytes(obj))


def is_id(value: str) -> bool:
    hexpart = value[len(ID_PREFIX):] if value.startswith(ID_PREFIX) else ""
    return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
