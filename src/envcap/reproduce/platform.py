"""What differs between the machine a run was recorded on and the one it was rebuilt on,
among the things that can change a result's last bits, each with the setting that would
make it match where one exists.

The facts come from the two manifests' platform sections (CPU instruction sets, GPU
model and driver) and software sections (CUDA, cuDNN), and from the numeric runtime
each run's own process reported (:mod:`envcap.runs.numerics`: the BLAS and OpenMP
libraries, the kernel each chose, their threads, the settings that chose them). The
verdict lists these as reasons when a run does not reproduce
(:func:`envcap.reproduce.verdict.platform_reasons`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The variable that sets each runtime's thread count, by threadpoolctl's internal_api.
THREADS_SETTING = {"openblas": "OPENBLAS_NUM_THREADS", "mkl": "MKL_NUM_THREADS", "blis": "BLIS_NUM_THREADS",
                   "openmp": "OMP_NUM_THREADS"}
# Instruction-set flags worth naming (the rest of /proc/cpuinfo's flags change no kernel).
_ISA_PREFIXES = ("avx", "sse", "ssse", "fma", "amx", "f16c", "bmi", "sve", "asimd", "neon", "vnni")


def _text(v: Any) -> str:
    return "not set" if v is None else str(v)


def _libraries(facts: Mapping[str, Any] | None) -> dict[tuple[str, str], Mapping[str, Any]]:
    libs = facts.get("libraries") if isinstance(facts, Mapping) else None
    return {(str(lib.get("internal_api")), str(lib.get("prefix"))): lib
            for lib in libs or () if isinstance(lib, Mapping)}


def numeric_runtime(run: Mapping[str, Any] | None, rebuild: Mapping[str, Any] | None) -> list[str]:
    """Kernel, version, thread and setting differences of the BLAS and OpenMP runtimes."""
    if not (isinstance(run, Mapping) and isinstance(rebuild, Mapping)):
        return []
    out: list[str] = []
    a, b = _libraries(run), _libraries(rebuild)
    for key in sorted(set(a) | set(b)):
        api, prefix = key
        name = f"{api} ({prefix})"
        if key not in b or key not in a:
            out.append(f"numeric library {name}: loaded {'in the run only' if key in a else 'in the rebuild only'}")
            continue
        la, lb = a[key], b[key]
        if la.get("architecture") != lb.get("architecture"):
            # The run's own setting if it had one (OpenBLAS may name the kernel it chose for a
            # core type otherwise: Prescott runs its Katmai kernel), else the kernel's name.
            coretype = (run.get("settings") or {}).get("OPENBLAS_CORETYPE") or la.get("architecture")
            fix = f": OPENBLAS_CORETYPE={coretype} would match" if api == "openblas" and coretype else ""
            out.append(f"BLAS kernel: {name} ran its {_text(la.get('architecture'))} kernel in the run, "
                       f"{_text(lb.get('architecture'))} in the rebuild{fix}")
        if la.get("version") != lb.get("version"):
            out.append(f"numeric library {name}: version {_text(la.get('version'))} in the run, "
                       f"{_text(lb.get('version'))} in the rebuild")
        if la.get("num_threads") != lb.get("num_threads"):
            setting = THREADS_SETTING.get(api)
            fix = f": {setting}={la['num_threads']} would match" if setting and la.get("num_threads") else ""
            out.append(f"threads: {name} used {_text(la.get('num_threads'))} in the run, "
                       f"{_text(lb.get('num_threads'))} in the rebuild{fix}")
    sa, sb = run.get("settings") or {}, rebuild.get("settings") or {}
    for name in sorted(set(sa) | set(sb)):
        if sa.get(name) != sb.get(name):
            fix = f": {name}={sa[name]} would match" if name in sa else f": unset {name} to match"
            out.append(f"setting {name}: {_text(sa.get(name))} in the run, {_text(sb.get(name))} in the rebuild{fix}")
    if any(api == "mkl" for api, _ in a) and "MKL_CBWR" not in sa and "MKL_CBWR" not in sb:
        out.append("MKL picks its code path by CPU: MKL_CBWR=COMPATIBLE on both machines gives the same results "
                   "across CPUs (slower)")
    return out


def _section(manifest: Any, name: str) -> Mapping[str, Any]:
    sections = getattr(manifest, "sections", None) or {}
    value = sections.get(name)
    return value if isinstance(value, Mapping) else {}


def _isa(flags: Any) -> set[str]:
    return {f for f in flags if isinstance(f, str) and f.startswith(_ISA_PREFIXES)} if isinstance(flags, list) else set()


def _gpu_models(gpu: Mapping[str, Any]) -> list[str]:
    devices = gpu.get("devices")
    return sorted(str(d.get("name")) for d in devices if isinstance(d, Mapping)) if isinstance(devices, list) else []


def machine(run: Any, rebuild: Any) -> list[str]:
    """CPU, GPU, driver, CUDA and cuDNN differences between the two manifests."""
    out: list[str] = []
    ca, cb = _section(run, "cpu"), _section(rebuild, "cpu")
    if ca and cb:
        if ca.get("model") != cb.get("model"):
            out.append(f"CPU: {_text(ca.get('model'))} in the run, {_text(cb.get('model'))} in the rebuild")
        fa, fb = _isa(ca.get("flags")), _isa(cb.get("flags"))
        if fa != fb:
            parts = []
            if fa - fb:
                parts.append(f"{', '.join(sorted(fa - fb))} in the run only")
            if fb - fa:
                parts.append(f"{', '.join(sorted(fb - fa))} in the rebuild only")
            out.append("CPU instruction sets (libraries choose kernels by them): " + "; ".join(parts))
    ga, gb = _section(run, "gpu"), _section(rebuild, "gpu")
    if ga or gb:
        if _gpu_models(ga) != _gpu_models(gb):
            out.append(f"GPU: {', '.join(_gpu_models(ga)) or 'none'} in the run, "
                       f"{', '.join(_gpu_models(gb)) or 'none'} in the rebuild")
        if ga.get("driver_version") != gb.get("driver_version"):
            out.append(f"GPU driver: {_text(ga.get('driver_version'))} in the run, "
                       f"{_text(gb.get('driver_version'))} in the rebuild")
    xa, xb = _section(run, "cuda"), _section(rebuild, "cuda")
    for key, label in (("version", "CUDA"), ("cudnn_version", "cuDNN"), ("cublas_version", "cuBLAS")):
        if (xa or xb) and xa.get(key) != xb.get(key):
            out.append(f"{label}: {_text(xa.get(key))} in the run, {_text(xb.get(key))} in the rebuild")
    return out
