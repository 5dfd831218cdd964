"""Text that is safe to print: what a manifest, a run or a store hands the terminal.

Hostnames, labels, notes, command lines and package names come from other machines and
other people. Printed raw, an escape sequence in one of them can rewrite the screen, a
carriage return can hide what precedes it, and a direction override can make text read
as something else. :func:`terminal_safe` escapes every character that
``str.isprintable`` rejects (control and format characters, line and paragraph
separators), the way ``repr`` does, and leaves all other text, non-ASCII included, as is.
"""

from __future__ import annotations

from typing import Any


def terminal_safe(value: Any, limit: int | None = None) -> str:
    """``value`` as one printable line; ``limit`` shortens it (with "...") to that many characters."""
    text = value if isinstance(value, str) else str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
