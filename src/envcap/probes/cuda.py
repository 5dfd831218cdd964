"""CUDA probe: the toolkit, and every copy of the CUDA libraries a program could load.

The toolkit is the first of ``$CUDA_HOME``, ``$CUDA_PATH``, ``/usr/local/cuda``, the
newest ``/usr/local/cuda-X.Y`` and ``/opt/cuda`` that exists, with links resolved. Its
version comes from files first (``version.json``, ``version.txt``, the ``cuda-X.Y``
directory name, the ``libcudart.so.X.Y.Z`` file name) and from ``nvcc --version`` only
when no file says, so a live run and a ``--root`` run of one machine agree.

cudart, cuBLAS, cuDNN and NCCL are listed wherever they are: in the toolkit, in the
system library directories, and as pip wheels (``nvidia_*`` distributions in
site-packages). Library versions are read from file names (``libcublas.so.13.1.0.3``)
and wheel metadata (in site-packages, and in ``<toolkit>/dist-info`` for a toolkit
assembled from NVIDIA's wheels, whose libraries carry their SONAME only); no library is
loaded. ROCm is noted from ``/opt/rocm/.info/version``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, NamedTuple

from . import SOFTWARE, Finding, Probe, compilers
from .context import Context

LIBRARIES = ("cudart", "cublas", "cudnn", "nccl")

# A library file carrying its full version: libcudart.so.13.0.96, libcublas.so.13.1.0.3.
# Three or more parts, so that the SONAME links (libcudart.so.13) are not counted again.
_LIB_FILE = re.compile(r"^lib(cudart|cublas|cudnn|nccl)\.so\.(\d+(?:\.\d+){2,})$")

# Wheel distributions, with or without the CUDA-major suffix their names carried before
# CUDA 13 (nvidia_cudnn_cu12, nvidia_cublas_cu12, nvidia_cuda_runtime_cu12).
_WHEEL = re.compile(
    r"^nvidia_(cuda_runtime|cublas|cudnn|nccl)(?:_cu\d+)?-([0-9][^-]*)\.dist-info$", re.I
)
_WHEEL_LIBRARY = {"cuda_runtime": "cudart", "cublas": "cublas", "cudnn": "cudnn", "nccl": "nccl"}

SYSTEM_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/sbsa-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib64",
)
CUDNN_HEADER_DIRS = (
    "/usr/include",
    "/usr/include/x86_64-linux-gnu",
    "/usr/include/aarch64-linux-gnu",
)

# Which copy a process loads, best first. The evidence is the H200 fixture
# (tests/testdata/gpu-h200-ubuntu24/fstree/_meta/torch-cuda-maps.txt): with a CUDA 13.0
# toolkit in /usr/local/cuda, cuDNN 9.14.0 and NCCL 2.28.3 in /usr/lib/x86_64-linux-gnu
# (both in ld.so.cache), and wheels in the venv, PyTorch mapped every CUDA library from
# site-packages/nvidia/... (cu13/lib/libcudart.so.13, cudnn/lib/libcudnn.so.9,
# nccl/lib/libnccl.so.2), and torch.backends.cudnn.version() said 91900, the wheel's
# 9.19.0, not the system's 9.14.0. Wheels therefore come first. Between the toolkit and
# the system directories the fixture has no overlap to judge by; the toolkit comes
# first because it is what CUDA_HOME and nvcc builds point at.
PRECEDENCE = ("wheel", "toolkit", "system")


# A NamedTuple, not a dataclass: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Copy(NamedTuple):
    library: str
    version: str
    path: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "path": self.path, "source": self.source}


# -- pure parsers ------------------------------------------------------------------


def parse_version_json(text: str | None) -> tuple[str | None, str | None]:
    """(toolkit version, nvcc version) from a toolkit's ``version.json`` (CUDA 11.1+)."""
    try:
        doc = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    return _member_version(doc, "cuda"), _member_version(doc, "cuda_nvcc")


def _member_version(doc: dict[str, Any], name: str) -> str | None:
    member = doc.get(name)
    version = member.get("version") if isinstance(member, dict) else None
    return version if isinstance(version, str) else None


def parse_version_txt(text: str | None) -> str | None:
    """The version in an old toolkit's ``version.txt`` (``CUDA Version 10.2.89``)."""
    match = re.search(r"CUDA Version\s+(\d+(?:\.\d+)+)", text or "")
    return match.group(1) if match else None


def parse_nvcc_version(text: str | None) -> str | None:
    """The full version in ``nvcc --version`` (``... release 13.0, V13.0.88``)."""
    # The compilers probe reads the same banner; one expression serves both.
    match = compilers.VERSION_PATTERNS["nvcc"].search(text or "")
    return match.group(1) if match else None


def parse_cudnn_header(text: str | None) -> str | None:
    """``MAJOR.MINOR.PATCHLEVEL`` from ``cudnn_version.h`` (or cuDNN 7's ``cudnn.h``)."""
    parts = []
    for name in ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"):
        match = re.search(rf"^#define\s+{name}\s+(\d+)", text or "", re.M)
        if match is None:
            return None
        parts.append(match.group(1))
    return ".".join(parts)


def major_minor(version: str | None) -> str | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


# -- the toolkit ---------------------------------------------------------------------


def _toolkit_candidates(ctx: Context) -> list[str]:
    versioned = sorted(
        ctx.glob("/usr/local", "cuda-[0-9]*"), key=_version_key, reverse=True
    )
    candidates = [ctx.env.get("CUDA_HOME"), ctx.env.get("CUDA_PATH"), "/usr/local/cuda"]
    return [c for c in candidates if c] + versioned + ["/opt/cuda"]


def find_toolkit(ctx: Context) -> str | None:
    """The toolkit directory, links resolved; ``None`` when there is none."""
    for candidate in _toolkit_candidates(ctx):
        if not ctx.is_dir(candidate):
            continue
        root = ctx.realpath(candidate)
        markers = ("bin/nvcc", "version.json", "version.txt", "lib64", "targets")
        if any(ctx.exists(f"{root}/{m}") for m in markers):
            return root
    return None


def toolkit_version(ctx: Context, root: str) -> tuple[str | None, str | None, str | None]:
    """(full version or ``None``, major.minor, where it came from)."""
    full, _ = parse_version_json(ctx.read_text(f"{root}/version.json"))
    if full:
        return full, major_minor(full), "version.json"
    full = parse_version_txt(ctx.read_text(f"{root}/version.txt"))
    if full:
        return full, major_minor(full), "version.txt"
    named = re.search(r"cuda-(\d+\.\d+)$", root)
    if named:
        return None, named.group(1), "directory name"
    cudart = [c for c in _lib_copies(ctx, [f"{root}/lib64"], "toolkit") if c.library == "cudart"]
    if cudart:
        return None, major_minor(cudart[0].version), "libcudart file name"
    nvcc = _nvcc(ctx, root)
    return None, major_minor(nvcc), "nvcc" if nvcc else None


def _nvcc(ctx: Context, root: str) -> str | None:
    # The toolkit's own nvcc, never whichever is first on PATH, which may belong to
    # another toolkit.
    if not ctx.live or not ctx.exists(f"{root}/bin/nvcc"):
        return None
    result = ctx.run([f"{root}/bin/nvcc", "--version"], cacheable=True)
    return parse_nvcc_version(result.stdout) if result and result.returncode == 0 else None


def nvcc_version(ctx: Context, root: str) -> str | None:
    _, from_json = parse_version_json(ctx.read_text(f"{root}/version.json"))
    return from_json or _nvcc(ctx, root)


# -- library copies -------------------------------------------------------------------


def _unique_dirs(ctx: Context, dirs: Iterable[str]) -> list[str]:
    # /lib is /usr/lib on merged-/usr systems, and lib64 is often targets/<arch>/lib:
    # one directory seen twice must not be listed twice.
    seen: set[str] = set()
    unique = []
    for d in dirs:
        if not ctx.is_dir(d):
            continue
        real = ctx.realpath(d)
        if real not in seen:
            seen.add(real)
            unique.append(real)
    return unique


def _lib_copies(ctx: Context, dirs: Iterable[str], source: str) -> list[Copy]:
    copies = []
    for d in dirs:
        for name in ctx.listdir(d):
            match = _LIB_FILE.match(name)
            if match:
                copies.append(Copy(match.group(1), match.group(2), f"{d}/{name}", source))
    return copies


def _toolkit_lib_dirs(ctx: Context, root: str) -> list[str]:
    targets = [f"{t}/lib" for t in ctx.glob(f"{root}/targets", "*")]
    return [f"{root}/lib64", f"{root}/lib", *targets]


def _header_copies(ctx: Context, dirs: Iterable[str], source: str) -> list[Copy]:
    """cuDNN from its header, for installs whose library names carry no full version."""
    copies = []
    for d in dirs:
        for path in ctx.glob(d, "cudnn_version*.h"):
            version = parse_cudnn_header(ctx.read_text(path))
            if version:
                copies.append(Copy("cudnn", version, path, source))
    return copies


def _native_copies(
    ctx: Context, dirs: list[str], header_dirs: list[str], source: str
) -> list[Copy]:
    copies = _lib_copies(ctx, dirs, source)
    if not any(c.library == "cudnn" for c in copies):
        copies += _header_copies(ctx, header_dirs, source)
    return copies


def site_packages(ctx: Context) -> list[str]:
    """site-packages (and Debian dist-packages) directories, the active environment first.

    The active one is ``$VIRTUAL_ENV``, ``$CONDA_PREFIX``, the context's conda prefix or
    the prefix of the context's Python; then the usual system and /opt locations.
    """
    python = ctx.python or ""
    python_prefix = python.rsplit("/", 2)[0] if python.count("/") >= 2 else None  # <p>/bin/python
    active = [
        ctx.env.get("VIRTUAL_ENV"), ctx.env.get("CONDA_PREFIX"), ctx.conda_prefix, python_prefix
    ]
    opt = [f"/opt/{d}{sub}" for d in ctx.listdir("/opt") for sub in ("", "/.venv", "/venv")]
    prefixes = [p for p in active if p] + ["/usr", "/usr/local", *opt]
    dirs = []
    for prefix in prefixes:
        for lib in ctx.glob(f"{prefix}/lib", "python3*"):
            dirs += [f"{lib}/site-packages", f"{lib}/dist-packages"]
    return _unique_dirs(ctx, dirs)


def _wheel_copies(ctx: Context, sites: Iterable[str]) -> list[Copy]:
    # Wheels ship only SONAME-named files (libcudnn.so.9), so the version comes from the
    # distribution's metadata directory, which is also the path recorded.
    copies = []
    for site in sites:
        for name in ctx.listdir(site):
            match = _WHEEL.match(name)
            if match:
                library = _WHEEL_LIBRARY[match.group(1).lower()]
                copies.append(Copy(library, match.group(2), f"{site}/{name}", "wheel"))
    return copies


def group(copies: Iterable[Copy]) -> dict[str, list[dict[str, str]]]:
    """Copies by library, in :data:`PRECEDENCE` order, found order within a source."""
    rank = {source: i for i, source in enumerate(PRECEDENCE)}
    ordered = sorted(copies, key=lambda c: rank[c.source])  # stable: keeps found order
    return {lib: [c.as_dict() for c in ordered if c.library == lib] for lib in LIBRARIES}


# -- ROCm ------------------------------------------------------------------------------


def find_rocm(ctx: Context) -> tuple[str | None, str | None]:
    """(ROCm version as written in ``.info/version``, its directory)."""
    for candidate in (ctx.env.get("ROCM_PATH"), "/opt/rocm"):
        if candidate and ctx.is_dir(candidate):
            root = ctx.realpath(candidate)
            text = ctx.read_text(f"{root}/.info/version")
            if text and text.strip():
                return text.strip(), root
    return None, None


# -- the probe -------------------------------------------------------------------------


def _library_copies(ctx: Context, root: str | None, sites: list[str]) -> list[Copy]:
    system_dirs = _unique_dirs(ctx, SYSTEM_LIB_DIRS)
    copies = _wheel_copies(ctx, sites)
    copies += _native_copies(ctx, system_dirs, list(CUDNN_HEADER_DIRS), "system")
    if root is not None:
        # A toolkit installed under /usr (Debian's nvidia-cuda-toolkit) shares the system
        # library directory; its files are counted once, as system copies.
        toolkit_dirs = [d for d in _unique_dirs(ctx, _toolkit_lib_dirs(ctx, root))
                        if d not in system_dirs]
        found = _native_copies(ctx, toolkit_dirs, [f"{root}/include"], "toolkit")
        # A toolkit assembled from NVIDIA's wheels names its libraries by SONAME only
        # (lib/libcudart.so.13); the full version is in the wheels' metadata, kept in
        # <root>/dist-info. Counted for a library the toolkit's folders really hold.
        named = {c.library for c in found}
        for c in _wheel_copies(ctx, [f"{root}/dist-info"]):
            if c.library not in named and any(ctx.glob(d, f"lib{c.library}.so*") for d in toolkit_dirs):
                found.append(c._replace(source="toolkit"))
        copies += found
    return copies


def collect(ctx: Context) -> Finding:
    root = find_toolkit(ctx)
    sites = site_packages(ctx)
    copies = _library_copies(ctx, root, sites)
    rocm, rocm_path = find_rocm(ctx)
    if root is None and not copies and rocm is None:
        return Finding(None)
    full, version, source = toolkit_version(ctx, root) if root else (None, None, None)
    libraries = group(copies)
    # The convenience keys name the copy a process most likely loads: the first in
    # PRECEDENCE order (see there for the evidence).
    first = {lib: (libraries[lib][0]["version"] if libraries[lib] else None) for lib in LIBRARIES}
    section: dict[str, Any] = {
        "version": version,
        "version_full": full,
        "toolkit_path": root,
        "nvcc_version": nvcc_version(ctx, root) if root else None,
        **{f"{lib}_version": first[lib] for lib in LIBRARIES},
        "libraries": libraries,
        "rocm_version": rocm,
    }
    observed = {"version_source": source, "site_packages": sites, "rocm_path": rocm_path}
    return Finding(section, observed)


PROBE = Probe(
    name="cuda",
    section="cuda",
    layer=SOFTWARE,
    tags=frozenset({"cuda", "gpu", "toolkit"}),
    collect=collect,
    reads_files=True,
)
