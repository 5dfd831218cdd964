#!/usr/bin/env python3
"""Check envcap's gpu and cuda probes against a real NVIDIA machine, once.

Run from the repository root on the GPU machine::

    python3 scripts/device_check.py

It reads the same facts through every path it can (NVML, ``nvidia-smi -q -x``,
/proc/driver/nvidia, a plain ``nvidia-smi --query-gpu`` CSV that it parses itself, and
``cuDriverGetVersion`` from libcuda), runs the two probes live, and prints one JSON
report comparing driver version, CUDA driver version, GPU count, and per device the
name, compute capability, memory size and UUID. Where PyTorch is importable it also
compares the cuDNN and NCCL versions torch reports with the probe's convenience keys,
and lists which library files torch really mapped. The last line is
``DEVICE CHECK: N agree, M differ``; the exit status is 1 on any disagreement or when
nothing could be compared. Needs only the standard library, envcap (from ./src) and,
for the NVML path, pynvml (nvidia-ml-py); a missing piece is reported, never a traceback.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MIB = 1 << 20
SMI_CSV_FIELDS = "pci.bus_id,name,driver_version,memory.total,compute_cap,uuid"


def attempt(report: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``None`` with the error recorded under ``report["errors"][key]``."""
    try:
        return fn()
    except Exception as exc:  # the point of this script is to report, never to crash
        report.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
        return None


def run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {output}")
    return proc.stdout


# -- the sources -------------------------------------------------------------------------


def view(section: dict[str, Any] | None, observed: dict[str, Any]) -> dict[str, Any] | None:
    """A source's facts in one flat shape: system fields plus a list of devices."""
    if section is None:
        return None
    devices = [
        {**d, "uuid": o.get("uuid"), "pci_bus_id": o.get("pci_bus_id")}
        for d, o in zip(section["devices"], observed.get("devices", []), strict=True)
    ]
    return {
        "driver_version": section["driver_version"],
        "cuda_driver_version": section["cuda_driver_version"],
        "count": section["count"],
        "devices": devices,
    }


def from_nvml(report: dict[str, Any], gpu: Any) -> dict[str, Any] | None:
    try:
        raw = gpu.nvml_raw()
    except gpu.NvmlUnavailable as exc:
        report["nvml_unavailable"] = str(exc)
        return None
    report["nvml_raw"] = raw
    report["memory_rounding"] = [
        {"pci_bus_id": g.get("pci_bus_id"), "nvml_bytes": g["memory_total"],
         "remainder_bytes_over_whole_mib": g["memory_total"] % MIB}
        for g in raw.get("gpus", [])
    ]  # fmt: skip
    found = gpu.normalise_nvml(raw)
    return view(found.section, found.observed)


def from_smi_xml(gpu: Any) -> dict[str, Any] | None:
    xml_text = run(["nvidia-smi", "-q", "-x"])
    query = run(list(gpu.SMI_QUERY))
    found = gpu.parse_nvidia_smi(xml_text, query)
    return view(found.section, found.observed)


def from_procfs(gpu: Any, ctx: Any) -> dict[str, Any] | None:
    found = gpu._from_procfs(ctx, {})
    return view(found.section, found.observed) if found else None


def from_smi_csv(gpu: Any) -> dict[str, Any] | None:
    """nvidia-smi's CSV, parsed here and not by envcap, as an independent witness."""
    argv = ["nvidia-smi", f"--query-gpu={SMI_CSV_FIELDS}", "--format=csv,noheader,nounits"]
    text = run(argv)
    rows = [[v.strip() for v in line.split(",")] for line in text.splitlines() if line.strip()]
    devices = sorted(
        (
            {"pci_bus_id": gpu.normalise_bus_id(bus), "name": name,
             "compute_capability": cap, "memory_total_bytes": int(mib) * MIB, "uuid": uuid}
            for bus, name, _driver, mib, cap, uuid in rows
        ),
        key=lambda d: d["pci_bus_id"],
    )  # fmt: skip
    drivers = {r[2] for r in rows}
    return {
        "driver_version": drivers.pop() if len(drivers) == 1 else sorted(drivers),
        "cuda_driver_version": None,
        "count": len(rows),
        "devices": devices,
    }


def from_libcuda() -> dict[str, Any] | None:
    lib = ctypes.CDLL("libcuda.so.1")
    version = ctypes.c_int()
    status = lib.cuDriverGetVersion(ctypes.byref(version))
    if status != 0:
        raise RuntimeError(f"cuDriverGetVersion returned {status}")
    value = version.value
    return {"cuda_driver_version": f"{value // 1000}.{value % 1000 // 10}", "devices": []}


# -- comparing -----------------------------------------------------------------------------


def field_values(sources: Any, key: str, index: int | None) -> dict[str, Any]:
    values = {}
    for name, facts in sources.items():
        if facts is None:
            continue
        if index is None:
            value = facts.get(key)
        elif key != "cuda_driver_version" and index < len(facts.get("devices", [])):
            value = facts["devices"][index].get(key)
        else:
            value = None
        if value is not None:
            values[name] = value
    return values


def verdict(values: dict[str, Any]) -> str:
    distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
    if len(distinct) > 1:
        return "differ"
    return "agree" if len(values) >= 2 else "unchecked"


Sources = dict[str, "dict[str, Any] | None"]


def check(sources: Sources, key: str, index: int | None) -> dict[str, Any]:
    values = field_values(sources, key, index)
    name = key if index is None else f"devices[{index}].{key}"
    return {"field": name, "values": values, "verdict": verdict(values)}


def compare(sources: Sources, keys: tuple[str, ...], device_keys: tuple[str, ...]) -> list[Any]:
    checks = [check(sources, key, None) for key in keys]
    count = max((len(f["devices"]) for f in sources.values() if f), default=0)
    for i in range(count):
        checks += [check(sources, key, i) for key in device_keys]
    return checks


# -- the probes, live, and torch's own account -------------------------------------------


def run_probes(report: dict[str, Any], gpu: Any, cuda: Any, ctx: Any) -> None:
    for name, module in (("gpu", gpu), ("cuda", cuda)):
        start = time.perf_counter()
        found = attempt(report, f"{name}_probe", partial(module.collect, ctx))
        elapsed = round((time.perf_counter() - start) * 1000, 1)
        if found is not None:
            report[f"{name}_probe"] = {
                "ms": elapsed, "section": found.section, "observed": found.observed
            }


def torch_account(report: dict[str, Any]) -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        report["torch"] = "not importable by this Python; cuDNN/NCCL checks skipped"
        return None
    account: dict[str, Any] = {"version": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        torch.zeros(1, device="cuda")
    cudnn = torch.backends.cudnn.version()
    account["cudnn"] = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}" if cudnn else None
    nccl = attempt(report, "torch_nccl", lambda: torch.cuda.nccl.version())
    account["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl
    maps = Path("/proc/self/maps").read_text().split()
    wanted = ("libcudart.so", "libcudnn.so", "libnccl.so", "libcublas.so")
    mapped = {p for p in maps if p.startswith("/") and any(w in p for w in wanted)}
    account["mapped"] = sorted(mapped)
    return account


def torch_checks(account: dict[str, Any] | None, section: dict[str, Any] | None) -> list[Any]:
    if not account or not section:
        return []
    checks = []
    for lib in ("cudnn", "nccl"):
        ours, theirs = section.get(f"{lib}_version"), account.get(lib)
        if ours is None or theirs is None:
            continue
        # torch reports three parts; wheel metadata may carry a fourth (9.19.0.56).
        same = ours == theirs or ours.startswith(theirs + ".")
        checks.append({
            "field": f"cuda.{lib}_version vs torch",
            "values": {"envcap": ours, "torch": theirs},
            "verdict": "agree" if same else "differ",
        })
    return checks


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    report: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    try:
        from envcap.probes import cuda, gpu
        from envcap.probes.context import Context
    except Exception as exc:
        report["fatal"] = f"cannot import envcap from ./src: {type(exc).__name__}: {exc}"
        print(json.dumps(report, indent=1, default=str))
        print("DEVICE CHECK: 0 agree, 1 differ")
        return 1
    try:
        import pynvml

        report["pynvml"] = getattr(pynvml, "__file__", "?")
    except ImportError:
        report["pynvml"] = "NOT INSTALLED: the NVML path cannot be checked on this machine"
    ctx = Context("/", python=sys.executable, env=dict(os.environ))
    sources = {
        "nvml": attempt(report, "nvml", lambda: from_nvml(report, gpu)),
        "nvidia-smi-xml": attempt(report, "nvidia-smi-xml", lambda: from_smi_xml(gpu)),
        "procfs": attempt(report, "procfs", lambda: from_procfs(gpu, ctx)),
        "nvidia-smi-csv": attempt(report, "nvidia-smi-csv", lambda: from_smi_csv(gpu)),
        "libcuda": attempt(report, "libcuda", from_libcuda),
    }
    report["sources"] = sources
    run_probes(report, gpu, cuda, ctx)
    # The hashed facts decide the verdict. UUIDs and bus ids live in ``observed`` and are
    # reported beside them, not counted: the H200 fixture's /proc UUID did not match
    # NVML's, and this shows whether that happens on a machine read all at once.
    checks = compare(
        sources,
        ("driver_version", "cuda_driver_version", "count"),
        ("name", "compute_capability", "memory_total_bytes"),
    )
    report["observed_checks"] = compare(sources, (), ("uuid", "pci_bus_id"))
    probe_gpu = report.get("gpu_probe", {}).get("section")
    nvml_finding = report.get("nvml_raw") and gpu.normalise_nvml(report["nvml_raw"]).section
    if probe_gpu is not None and nvml_finding:
        checks.append({
            "field": "gpu probe section == NVML path section",
            "values": {},
            "verdict": "agree" if probe_gpu == nvml_finding else "differ",
        })
    account = attempt(report, "torch", lambda: torch_account(report))
    report["torch_account"] = account
    checks += torch_checks(account, report.get("cuda_probe", {}).get("section"))
    report["checks"] = checks
    agree = sum(c["verdict"] == "agree" for c in checks)
    differ = sum(c["verdict"] == "differ" for c in checks)
    print(json.dumps(report, indent=1, default=str))
    for c in checks + report["observed_checks"]:
        if c["verdict"] == "differ":
            label = "DIFFER" if c in checks else "NOTE (observed, not counted) differ"
            print(f"{label} {c['field']}: {json.dumps(c['values'], default=str)}")
    if agree == 0:
        print("nothing could be compared: is this a machine with an NVIDIA GPU?")
    print(f"DEVICE CHECK: {agree} agree, {differ} differ")
    return 1 if differ or agree == 0 else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # last resort: still one line a reader can act on
        print(f"device_check failed: {type(exc).__name__}: {exc}")
        print("DEVICE CHECK: 0 agree, 1 differ")
        sys.exit(1)
