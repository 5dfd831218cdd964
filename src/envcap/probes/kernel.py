"""The running kernel: release, build string and machine architecture."""

from __future__ import annotations

import os

from . import PLATFORM, Finding, Probe
from .context import Context


def parse_proc_version(text: str) -> dict[str, str | None]:
    """Split ``/proc/version`` ("Linux version 6.1.0-18-amd64 (...) #1 SMP ...")."""
    words = text.split()
    release = words[2] if len(words) > 2 and words[:2] == ["Linux", "version"] else None
    hash_at = text.find(" #")
    build = text[hash_at + 1 :].strip() if hash_at >= 0 else None
    return {"release": release, "version": build}


def collect(ctx: Context) -> Finding:
    if ctx.live:
        uname = os.uname()
        return Finding({"release": uname.release, "version": uname.version, "machine": uname.machine})
    text = ctx.read_text("/proc/version")
    if not text:
        return Finding(None)
    section: dict[str, str | None] = parse_proc_version(text)
    section["machine"] = None
    return Finding(section)


PROBE = Probe(
    name="kernel",
    section="kernel",
    layer=PLATFORM,
    tags=frozenset({"kernel", "platform"}),
    collect=collect,
)
