"""Compilers on PATH and the build flags in the environment.

Both decide what a source build (a CUDA extension, a wheel without a binary for this
platform) produces, so both belong to the environment's identity. Each compiler is
asked for its version; the programs run at the same time, because each costs a few
milliseconds to start and the snapshot as a whole has a budget of about 150.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from ..core.proc import Result
from . import SOFTWARE, Finding, Probe
from .context import Context

TOOLS = ("gcc", "g++", "clang", "gfortran", "nvcc", "hipcc")
# GCC's driver prints its full version with -dumpfullversion (GCC 7 and later); older
# drivers ignore that flag and answer -dumpversion, which was then the full version.
_GCC_DUMP = ("-dumpfullversion", "-dumpversion")
_GCC_LIKE = frozenset({"gcc", "g++", "gfortran"})

# Variables that change what a build produces. Parallelism (MAX_JOBS, MAKEFLAGS's -j)
# and caches (CCACHE_*) change only how long it takes, so they are left out.
FLAG_VARS = (
    "CC",
    "CXX",
    "FC",
    "CUDACXX",
    "CUDAHOSTCXX",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "FFLAGS",
    "FCFLAGS",
    "CUDAFLAGS",
    "NVCC_FLAGS",
    "NVCC_PREPEND_FLAGS",
    "NVCC_APPEND_FLAGS",
    "HIPFLAGS",
    "TORCH_CUDA_ARCH_LIST",
    "PYTORCH_ROCM_ARCH",
    "CUDAARCHS",
    "CMAKE_ARGS",
    "CMAKE_BUILD_TYPE",
)

VERSION_PATTERNS = {
    # "Cuda compilation tools, release 13.0, V13.0.88"
    "nvcc": re.compile(r"release \d+\.\d+, V(\d+(?:\.\d+)+)"),
    # "HIP version: 6.2.41133-dd7f95766"
    "hipcc": re.compile(r"HIP version: (\S+)"),
    # "Ubuntu clang version 18.1.3 (1ubuntu1)", "Apple clang version 15.0.0 (...)"
    "clang": re.compile(r"clang version (\d+(?:\.\d+)+)"),
    # "gcc (Debian 12.2.0-14+deb12u1) 12.2.0", "GNU Fortran (GCC) 13.2.1 20231011"
    "gcc": re.compile(r"\) (\d+(?:\.\d+)+)"),
}


def collect(ctx: Context) -> Finding:
    found = {name: path for name in TOOLS if (path := ctx.which(name))}
    outputs = run_all(ctx, {job: argv for name, path in found.items() for job, argv in _jobs(name, path)})
    tools: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, path in found.items():
        tools[name], error = describe(ctx, name, path, outputs)
        if error:
            errors[name] = error
    flags = {var: ctx.redactor.value(var, ctx.env[var]) for var in FLAG_VARS if ctx.env.get(var)}
    if not tools and not flags:
        return Finding(None)
    return Finding({"tools": tools, "flags": flags}, {"errors": errors} if errors else {})


def _jobs(name: str, path: str) -> list[tuple[tuple[str, str], list[str]]]:
    return [((name, "banner"), [path, "--version"])]


def run_all(ctx: Context, jobs: dict[Any, Sequence[str]]) -> dict[Any, Result | None]:
    """Run every command at once; a timeout or other failure is raised after all end.

    Answers the cache already holds are taken without a thread (starting one costs
    about as much as the lookup); the rest run concurrently, each a process start.
    """
    results: dict[Any, Result | None] = {}
    failures: list[Exception] = []
    uncached = {}
    for key, argv in jobs.items():
        known = ctx.recall(argv)
        if known is not None:
            results[key] = known
        else:
            uncached[key] = argv

    def work(key: Any, argv: Sequence[str]) -> None:
        try:
            results[key] = ctx.run(argv, cacheable=True)
        except Exception as exc:  # noqa: BLE001 - raised again in the calling thread below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in uncached.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def describe(
    ctx: Context, name: str, path: str, outputs: dict[Any, Result | None]
) -> tuple[dict[str, Any], str | None]:
    """The tool's section entry, and why it could not be described (or ``None``)."""
    result = outputs.get((name, "banner"))
    entry: dict[str, Any] = {"path": path, "version": None, "banner": None}
    if result is None or result.returncode != 0:
        detail = "" if result is None else (result.stderr or result.stdout).strip()[:200]
        return entry, f"{path} --version failed" + (f": {detail}" if detail else "")
    text = result.stdout or result.stderr
    version = parse_version(name, text)
    if version is None and name in _GCC_LIKE:
        # A vendor banner without the usual "(...) X.Y.Z": ask the driver itself. This
        # costs a second program start, so only when the banner did not answer.
        dump = ctx.run([path, *_GCC_DUMP], cacheable=True)
        version = parse_dump_version(dump.stdout) if dump and dump.returncode == 0 else None
    entry["version"] = version
    entry["banner"] = banner(text, entry["version"])
    return entry, None


def parse_dump_version(text: str) -> str | None:
    """The answer to ``gcc -dumpfullversion``, when it is a version number."""
    text = text.strip()
    return text if re.fullmatch(r"\d+(?:\.\d+)*", text) else None


def parse_version(name: str, text: str) -> str | None:
    """The version number in a tool's ``--version`` output."""
    # g++ may be clang (macOS), so the banner's own form decides, not just the tool's name.
    order = [name, "clang", "gcc"] if name in VERSION_PATTERNS else ["clang", "gcc"]
    for key in order:
        match = VERSION_PATTERNS[key].search(text)
        if match:
            return match.group(1)
    return None


def banner(text: str, version: str | None) -> str | None:
    """The line of ``--version`` output that names the version, else its first line.

    For most compilers that is the first line; nvcc's first line only names the
    program ("nvcc: NVIDIA (R) Cuda compiler driver") and its release comes later.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if version:
        for line in lines:
            if version in line:
                return line
    return lines[0]


PROBE = Probe(
    name="compilers",
    section="compilers",
    layer=SOFTWARE,
    tags=frozenset({"compilers", "toolchain"}),
    collect=collect,
    reads_files=False,
)
