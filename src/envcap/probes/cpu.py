"""The CPU: architecture, model, flags and core counts from /proc/cpuinfo."""

from __future__ import annotations

import os

from . import PLATFORM, Finding, Probe
from .context import Context

# x86 says "flags", ARM says "Features"; the model lives under different keys as well.
_FLAG_KEYS = ("flags", "Features")
_MODEL_KEYS = ("model name", "Model", "cpu model", "Processor")


def parse_cpuinfo(text: str) -> dict[str, object]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    processors: list[dict[str, str]] = []
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        processors.append(fields)
    logical = [p for p in processors if "processor" in p]
    first = logical[0] if logical else (processors[0] if processors else {})
    model = next((first[k] for k in _MODEL_KEYS if first.get(k)), None)
    flags = next((first[k].split() for k in _FLAG_KEYS if k in first), [])
    sockets = {p.get("physical id") for p in logical if "physical id" in p}
    cores_per_socket = first.get("cpu cores")
    physical = len(sockets) * int(cores_per_socket) if sockets and cores_per_socket else None
    return {
        "vendor": first.get("vendor_id") or first.get("CPU implementer"),
        "model": model,
        "family": first.get("cpu family"),
        "model_number": first.get("model"),
        "stepping": first.get("stepping"),
        "flags": sorted(set(flags)),
        "logical_cpus": len(logical) or None,
        "physical_cores": physical,
        "sockets": len(sockets) or None,
    }


def collect(ctx: Context) -> Finding:
    text = ctx.read_text("/proc/cpuinfo")
    if not text:
        return Finding(None)
    section = parse_cpuinfo(text)
    section["architecture"] = os.uname().machine if ctx.live else _guess_arch(section)
    observed = {}
    if ctx.live and hasattr(os, "sched_getaffinity"):
        # How many CPUs this process may use (cgroups, taskset): per job, so observed.
        observed["usable_cpus"] = len(os.sched_getaffinity(0))
    return Finding(section, observed)


def _guess_arch(section: dict[str, object]) -> str | None:
    flags = section.get("flags") or []
    if "lm" in flags:  # type: ignore[operator]
        return "x86_64"
    if "asimd" in flags or "fp" in flags:  # type: ignore[operator]
        return "aarch64"
    return None


PROBE = Probe(
    name="cpu",
    section="cpu",
    layer=PLATFORM,
    tags=frozenset({"cpu", "platform"}),
    collect=collect,
)
