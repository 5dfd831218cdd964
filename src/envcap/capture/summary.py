"""Short human summaries of manifests (plain text: this sits on the snapshot's fast path)."""

from __future__ import annotations

from typing import Any

from .. import ecosystems
from ..core.manifest import Manifest


def short(oid: str, digits: int = 12) -> str:
    return oid.split(":", 1)[-1][:digits]


def summary_lines(m: Manifest) -> list[str]:
    s = m.sections
    lines: list[str] = []
    os_ = s.get("os") or {}
    kernel = s.get("kernel") or {}
    libc = s.get("libc") or {}
    os_text = os_.get("pretty_name") or os_.get("id") or "unknown"
    extra = ", ".join(
        x
        for x in (
            f"kernel {kernel['release']}" if kernel.get("release") else "",
            f"{libc.get('family')} {libc.get('version')}" if libc.get("version") else "",
        )
        if x
    )
    lines.append(_row("os", os_text + (f" ({extra})" if extra else "")))
    cpu = s.get("cpu") or {}
    memory = s.get("memory") or {}
    if cpu or memory:
        cores = f"{cpu.get('logical_cpus')} CPUs" if cpu.get("logical_cpus") else ""
        mem = f"{memory['total_gib']} GiB" if memory.get("total_gib") is not None else ""
        lines.append(_row("host", ", ".join(x for x in (cpu.get("model") or "", cores, mem) if x)))
    # Each ecosystem describes its own section. From the section, not the typed record
    # (m.python.describe() says the same): the records cost the snapshot milliseconds to
    # import, which a summary line does not need.
    for name in ("python", "system", "conda"):
        if s.get(name):
            lines.append(_row(name, ecosystems.describe(name, s[name])))
    lines.append(_row("gpu", _gpu_text(s.get("gpu"))))
    cuda = s.get("cuda")
    if cuda:
        lines.append(_row("cuda", _cuda_text(cuda)))
    container = s.get("container")
    if container:
        lines.append(_row("container", str(container.get("runtime"))))
    lines.append("")
    lines.append(_row("id", m.id))
    lines.append(_row("env_id", m.env_id))
    lines.append(_row("platform_id", m.platform_id))
    if m.labels:
        lines.append(_row("labels", " ".join(f"{k}={v}" for k, v in sorted(m.labels.items()))))
    if m.unknowns:
        for u in m.unknowns:
            lines.append(_row("unknown", f"{u.probe}: {u.error}"))
    return lines


def _gpu_text(gpu: Any) -> str:
    if not gpu or not gpu.get("devices"):
        return "none"
    names: dict[str, int] = {}
    for d in gpu["devices"]:
        names[d.get("name") or "GPU"] = names.get(d.get("name") or "GPU", 0) + 1
    parts = [", ".join(f"{n} x{c}" for n, c in names.items())]
    if gpu.get("driver_version"):
        parts.append(f"driver {gpu['driver_version']}")
    if gpu.get("cuda_driver_version"):
        parts.append(f"driver supports CUDA {gpu['cuda_driver_version']}")
    return ", ".join(parts)


def _cuda_text(cuda: Any) -> str:
    parts = [f"toolkit {cuda['version']}" if cuda.get("version") else "no toolkit"]
    for key, label in (("cudnn_version", "cuDNN"), ("nccl_version", "NCCL"), ("cublas_version", "cuBLAS")):
        if cuda.get(key):
            parts.append(f"{label} {cuda[key]}")
    if cuda.get("rocm_version"):
        parts.append(f"ROCm {cuda['rocm_version']}")
    return ", ".join(parts)


def _row(key: str, value: str) -> str:
    return f"  {key:<12}{value}"
