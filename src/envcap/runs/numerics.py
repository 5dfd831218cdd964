"""The numeric runtime a run's own process used: its BLAS and OpenMP libraries, their
versions, the kernel each chose for this CPU and their thread counts, and the settings
that choose them (``OPENBLAS_CORETYPE``, ``MKL_CBWR``, ``OMP_NUM_THREADS``...).

These are platform facts: the same image on another CPU loads the same libraries and
may run other kernels (OpenBLAS picks its kernel by CPU), which changes last bits. They
can only be seen where the libraries are loaded, in the run's own interpreter, so they
are read there, by threadpoolctl (the field's way to ask a process which BLAS and
OpenMP runtimes it holds), when the script's run ends (:meth:`envcap.runs.api.Run.finish`),
and written as an event of the run's directory. ``envcap snapshot`` never reads them and
imports neither numpy nor threadpoolctl; they are hashed into no id (not ``env_id``, nor
the manifest's ``platform_id``): the run record keeps them as ``numerics``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# Variables that choose a BLAS or OpenMP runtime's kernel, its reproducibility mode or
# its threads. Kept with their values as the process saw them at the end of the run
# (a script may set them itself before it imports numpy).
SETTINGS = (
    "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_VERBOSE", "GOTO_NUM_THREADS",
    "MKL_CBWR", "MKL_NUM_THREADS", "MKL_DYNAMIC", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
    "MKL_THREADING_LAYER", "OMP_NUM_THREADS", "OMP_DYNAMIC", "OMP_PROC_BIND", "OMP_PLACES",
    "KMP_AFFINITY", "KMP_DETERMINISTIC_REDUCTION", "BLIS_NUM_THREADS", "BLIS_ARCH_TYPE",
    "VECLIB_MAXIMUM_THREADS",
)
# threadpoolctl's fields kept for each library (its file path says where, not what).
FIELDS = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer", "num_threads")


def observe(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The numeric runtime of this process, as threadpoolctl sees it, and its settings.

    ``{"libraries": [...], "settings": {...}}``; with ``"error"`` instead of
    ``libraries`` when threadpoolctl cannot be imported here.
    """
    environ = os.environ if environ is None else environ
    settings = {name: environ[name] for name in SETTINGS if name in environ}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"error": "threadpoolctl is not importable in the run's interpreter", "settings": settings}
    try:
        info = threadpool_info()
    except Exception as exc:  # noqa: BLE001 - a library that cannot be asked is a fact, not a failure
        return {"error": f"threadpoolctl could not list the libraries: {type(exc).__name__}: {exc}",
                "settings": settings}
    return {"libraries": libraries(info), "settings": settings}


def libraries(info: Any) -> list[dict[str, Any]]:
    """threadpoolctl's ``threadpool_info()`` reduced to :data:`FIELDS`, in a stable order."""
    out = []
    for entry in info if isinstance(info, list) else ():
        if isinstance(entry, Mapping):
            out.append({k: entry.get(k) for k in FIELDS if entry.get(k) is not None})
    return sorted(out, key=lambda e: (str(e.get("user_api")), str(e.get("internal_api")), str(e.get("prefix")),
                                      str(e.get("version"))))


def checked(value: Any) -> dict[str, Any] | None:
    """A ``numerics`` event's facts as the record keeps them; None when malformed."""
    if not isinstance(value, dict):
        return None
    settings = value.get("settings")
    if not isinstance(settings, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in settings.items()):
        return None
    out: dict[str, Any] = {"settings": {k: v for k, v in settings.items() if k in SETTINGS}}
    if isinstance(value.get("error"), str):
        out["error"] = value["error"][:500]
        return out
    libs = value.get("libraries")
    if not isinstance(libs, list):
        return None
    kept = []
    for lib in libs:
        if not isinstance(lib, dict):
            return None
        entry = {k: lib[k] for k in FIELDS if isinstance(lib.get(k), (str, int)) and not isinstance(lib.get(k), bool)}
        kept.append(entry)
    out["libraries"] = kept
    return out
