"""Memory size from /proc/meminfo.

The exact MemTotal moves by a few kilobytes between boots and between identical nodes
(firmware and kernel reservations), so the hashed section holds the size rounded to
whole GiB and the exact byte counts are observations.
"""

from __future__ import annotations

from . import PLATFORM, Finding, Probe
from .context import Context

GIB = 1 << 30


def parse_meminfo(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * factor
    return values


def collect(ctx: Context) -> Finding:
    text = ctx.read_text("/proc/meminfo")
    if not text:
        return Finding(None)
    values = parse_meminfo(text)
    total = values.get("MemTotal")
    if total is None:
        raise ValueError("/proc/meminfo has no MemTotal line")
    observed = {"total_bytes": total, "available_bytes": values.get("MemAvailable")}
    return Finding({"total_gib": (total + GIB // 2) // GIB}, observed)


PROBE = Probe(
    name="memory",
    section="memory",
    layer=PLATFORM,
    tags=frozenset({"memory", "platform"}),
    collect=collect,
)
