"""Which OS packages a Python environment's compiled code needs, read from its ELF files.

A wheel carries most of the libraries its extension modules need (``numpy.libs/``), but
not all: the C library, the C++ runtime, and whatever a locally built extension or an
interpreter built on the machine (pyenv, a source build) links. Those come from the OS
package manager, and their packages are what the rebuild must pin for the run
(``envcap build --pin-os auto``): the dpkg owners of the shared libraries that the
``.so`` files under site-packages (and, for an interpreter that is not the
distribution's, its ``lib-dynload``) name as ``DT_NEEDED``. Only the direct needs: the
packages' own dependencies are apt's to resolve.

The result is an observation (``observed.native_libs``), not part of any id: it is
derived from files the manifest already describes.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_MULTIARCH = {62: "x86_64-linux-gnu", 183: "aarch64-linux-gnu", 21: "powerpc64le-linux-gnu",
              22: "s390x-linux-gnu", 3: "i386-linux-gnu", 243: "riscv64-linux-gnu"}
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NEEDED, _DT_STRTAB = 1, 5
_MAX_FILES = 5000  # a bound on the work for one environment (a large CUDA stack has ~600)


def needed(path: str) -> tuple[int, list[str]] | None:
    """The ELF machine and the ``DT_NEEDED`` sonames of ``path``; None if it is not ELF."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
            # Mapped, not read: only the pages of the headers and the dynamic section
            # are touched (a CUDA library is hundreds of megabytes).
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(data)
    except (OSError, ValueError):
        return None


def _parse(data: Any) -> tuple[int, list[str]] | None:
    if len(data) < 64:
        return None
    wide, little = data[4] == 2, data[5] == 1
    e = "<" if little else ">"
    try:
        if wide:
            machine, phoff, phentsize, phnum = (struct.unpack_from(e + "H", data, 18)[0],
                                                struct.unpack_from(e + "Q", data, 32)[0],
                                                *struct.unpack_from(e + "HH", data, 54))
            ph, dyn = e + "IIQQQQQQ", e + "qQ"
        else:
            machine, phoff, phentsize, phnum = (struct.unpack_from(e + "H", data, 18)[0],
                                                struct.unpack_from(e + "I", data, 28)[0],
                                                *struct.unpack_from(e + "HH", data, 42))
            ph, dyn = e + "IIIIIIII", e + "iI"
        loads: list[tuple[int, int, int]] = []
        dynamic: tuple[int, int] | None = None
        for i in range(phnum):
            fields = struct.unpack_from(ph, data, phoff + i * phentsize)
            if wide:
                p_type, offset, vaddr, filesz = fields[0], fields[2], fields[3], fields[5]
            else:
                p_type, offset, vaddr, filesz = fields[0], fields[1], fields[2], fields[4]
            if p_type == _PT_LOAD:
                loads.append((vaddr, offset, filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (offset, filesz)
        if dynamic is None:
            return machine, []
        entries: list[tuple[int, int]] = []
        size = struct.calcsize(dyn)
        for at in range(dynamic[0], dynamic[0] + dynamic[1], size):
            tag, value = struct.unpack_from(dyn, data, at)
            if tag == 0:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
        if strtab is None:
            return machine, []
        base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
        if base is None:
            return machine, []
        names = []
        for tag, value in entries:
            if tag == _DT_NEEDED:
                end = data.find(b"\0", base + value)
                names.append(bytes(data[base + value:end]).decode("utf-8", "replace"))
        return machine, names
    except (struct.error, ValueError, IndexError):
        return None


def _shared_objects(folders: Iterable[str]) -> Iterator[str]:
    count = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.endswith(".so") or ".so." in name:
                    yield os.path.join(dirpath, name)
                    count += 1
                    if count >= _MAX_FILES:
                        return


def _search_dirs(multiarch: str | None) -> list[str]:
    dirs = []
    if multiarch:
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    dirs += ["/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"]
    try:
        confs = sorted(os.listdir("/etc/ld.so.conf.d"))
    except OSError:
        confs = []
    for conf in confs:
        try:
            with open(os.path.join("/etc/ld.so.conf.d", conf), encoding="utf-8", errors="replace") as fh:
                dirs += [line.strip() for line in fh if line.startswith("/")]
        except OSError:
            continue
    return list(dict.fromkeys(dirs))


def folders_of(python: Mapping[str, Any]) -> list[str]:
    """The folders whose extension modules count: site-packages, and the interpreter's
    own ``lib-dynload`` when it is not the distribution's (its base prefix is not /usr)."""
    out = []
    base = str(python.get("base_prefix") or python.get("prefix") or "")
    for path in python.get("paths") or ():
        if not isinstance(path, str) or not os.path.isdir(path):
            continue
        tail = os.path.basename(path.rstrip("/"))
        if tail in ("site-packages", "dist-packages") or (tail == "lib-dynload" and base not in ("/usr", "")):
            out.append(path)
    return out


def _interpreter_files(python: Mapping[str, Any]) -> list[str]:
    """The interpreter's own executable and libpython, when it is not the distribution's:
    an interpreter built on the machine links the OS's libraries too (Debian's links
    libexpat and zlib into the executable)."""
    base = str(python.get("base_prefix") or python.get("prefix") or "")
    if base in ("/usr", "") or not os.path.isdir(base):
        return []
    out = []
    for folder, prefix in ((os.path.join(base, "bin"), "python"), (os.path.join(base, "lib"), "libpython")):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        out += [os.path.join(folder, n) for n in names
                if n.startswith(prefix) and not os.path.islink(os.path.join(folder, n))
                and os.path.isfile(os.path.join(folder, n)) and not n.endswith((".a", ".py", "-config"))]
    return out


def native_libs(python: Mapping[str, Any], *, dpkg: bool) -> dict[str, Any] | None:
    """``{"libraries": {soname: owner or None}, "owners": [...]}`` for a live machine:
    what the extension modules under ``folders_of(python)`` and a managed interpreter's
    own executable and libpython link, less what the environment itself carries."""
    folders = folders_of(python)
    if not folders:
        return None
    files = list(_shared_objects(folders)) + _interpreter_files(python)
    local = {os.path.basename(f) for f in files}
    wanted: set[str] = set()
    machine = None
    for path in files:
        found = needed(path)
        if found is None:
            continue
        machine = machine or found[0]
        wanted.update(name for name in found[1] if name not in local)
    if not wanted:
        return {"libraries": {}, "owners": []}
    dirs = _search_dirs(_MULTIARCH.get(machine or 0))
    located: dict[str, str | None] = {}
    for soname in sorted(wanted):
        located[soname] = next((os.path.join(d, soname) for d in dirs if os.path.exists(os.path.join(d, soname))),
                               None)
    owners = _dpkg_owners([p for p in located.values() if p]) if dpkg else {}
    libraries = {soname: owners.get(path) if path else None for soname, path in located.items()}
    return {"libraries": libraries, "owners": sorted({o for o in libraries.values() if o})}


def _dpkg_owners(paths: list[str]) -> dict[str, str]:
    """Each path's dpkg package, asking for both spellings a merged /usr gives it."""
    spellings: dict[str, str] = {}
    for path in paths:
        spellings[path] = path
        real = os.path.realpath(path)
        for candidate in (real, path[4:] if path.startswith("/usr/") else "/usr" + path,
                          real[4:] if real.startswith("/usr/") else "/usr" + real):
            spellings.setdefault(candidate, path)
    from ..core.proc import run

    try:
        done = run(["dpkg-query", "-S", *spellings], timeout=20,
                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except Exception:  # noqa: BLE001 - a timeout (subprocess's, through core.proc): owners unknown, as without dpkg
        return {}
    if done is None:
        return {}
    owners: dict[str, str] = {}
    for line in done.stdout.splitlines():
        packages, sep, file = line.partition(": ")
        if not sep or file not in spellings or "diversion" in packages:
            continue
        name = packages.split(",")[0].strip().split(":")[0]
        owners.setdefault(spellings[file], name)
    return owners
