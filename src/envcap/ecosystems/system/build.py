"""System packages' part of a build: pins for dpkg, rpm and apk, and the apt step.

Lockfiles: ``name=version`` pins for dpkg (``apt.txt``), ``name-version.arch`` for rpm
and ``name=version`` for apk, with a dated Debian/Ubuntu archive snapshot beside them.
Only dpkg packages are reinstalled in an image; the others are kept from the base.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...pins import validate as v
from ...pins.errors import LockError
from ...core.manifest import Manifest
from ..build import LOCK_DIR, NO_BUILD, BuildPart, LockPart, LockRequest, Step, Unlocked
from .record import SystemSection

if TYPE_CHECKING:
    from ..build import Lock

_SYSTEM_FILE = {"dpkg": "apt.txt", "rpm": "rpm.txt", "apk": "apk.txt"}
_INSTALL_HINT = {
    "dpkg": "apt-get install --no-install-recommends --allow-downgrades $(grep -v '^#' apt.txt)",
    "rpm": "dnf install $(grep -v '^#' rpm.txt)",
    "apk": "apk add $(grep -v '^#' apk.txt)",
}
_SNAPSHOT_ARCHIVES = {"debian": "https://snapshot.debian.org/archive/debian/{stamp}/",
                      "ubuntu": "https://snapshot.ubuntu.com/ubuntu/{stamp}/"}
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# What a run needs of the OS besides the libraries its compiled code links
# (observed.native_libs): compilers and build tools, and the CUDA stack.
_COMPILERS = re.compile(r"^(?:gcc|g\+\+|cpp|gfortran|clang|lld|llvm|binutils|build-essential|make|cmake|ninja-build|"
                        r"libc6-dev|libstdc\+\+-\d+-dev|libgcc-\d+-dev|libgfortran-\d+-dev|nvidia-cuda-toolkit)"
                        r"(?:-\d+(?:\.\d+)*)?$")
_CUDA = re.compile(r"^(?:cuda-|libcuda|libcudnn|libnccl|libcublas|libcufft|libcurand|libcusolver|libcusparse|libnvjitlink|"
                   r"libnvrtc|libnvjpeg|libnpp|libnvidia-|nvidia-|libnvinfer|tensorrt)")
# The tool pip runs to install a package from each VCS (direct_url.json's name), by its
# package's name.
_VCS_TOOLS = {"git": "git", "hg": "mercurial", "svn": "subversion", "bzr": "bzr"}
# The distribution's own interpreter, when the environment's Python is the system's.
_SYSTEM_PYTHON = re.compile(r"^(?:python3(?:\.\d+)?(?:-minimal|-venv|-dev)?|libpython3(?:\.\d+)?(?:-minimal|-stdlib|-dev)?|"
                            r"python3-.+)$")


def lock_part(manifest: Manifest, request: LockRequest, unlocked: list[Unlocked]) -> LockPart:
    system = manifest.record(SystemSection)
    if system is None:
        return LockPart()
    manager = v.system_manager("sections.system.manager", system.manager)
    pins = []
    for i, package in enumerate(system.packages):
        where = f"sections.system.packages[{i}]"
        name, version, arch = v.system_package(where, str(manager), package.to_dict())
        if not package.installed:
            status = v.token(f"{where}.status", package.status)
            unlocked.append(Unlocked("system", name, version, f"dpkg state {status!s}: not installed, not pinned"))
            continue
        pins.append((name, version, arch))
    chosen, why = choose_pins(manifest, manager, pins, request.pin_os)
    left = sorted({n for n, _, _ in pins} - {n for n, _, _ in chosen})
    fields = {"system_manager": manager, "system_pins": tuple(sorted(chosen)), "system_left": tuple(left),
              "pin_os": why}
    return LockPart(fields=fields, files=_files(request, fields))


def choose_pins(manifest: Manifest, manager: str, pins: list[tuple[str, str, str]],
                pin_os: tuple[str, ...]) -> tuple[list[tuple[str, str, str]], str]:
    """The pins a build installs, and a line saying how they were chosen.

    ``all`` pins every installed package. ``auto`` (the default) pins what the run
    needs: the owners of the shared libraries its compiled Python code links directly
    (``observed.native_libs``, taken by a run's snapshot), compilers and build tools, the
    CUDA stack, the distribution's Python when the environment's interpreter is the
    system's, and every package named besides (``--pin-os NAME``). The rest is left to the
    base image, whose own packages stay as they are.
    """
    modes = [m for m in pin_os if m in ("auto", "all")]
    named = [m for m in pin_os if m not in ("auto", "all")]
    bad = [m for m in named if not _PACKAGE_NAME.fullmatch(m)]
    if bad:
        raise LockError(f"--pin-os {bad[0]!r}: give auto, all, or package names")
    have = {n for n, _, _ in pins}
    missing = [n for n in named if n not in have]
    if missing:
        raise LockError(f"--pin-os {', '.join(missing)}: not an installed {manager} package of env "
                        f"{manifest.env_id}")
    native = manifest.observed.get("native_libs")
    if not isinstance(native, Mapping) and "all" not in modes:
        # A snapshot taken outside a run does not say what its code links: everything is
        # pinned, as it is with --pin-os all.
        return pins, (f"all {len(pins)} installed packages (--pin-os auto: the snapshot does not say which "
                      "libraries a run links; a run's snapshot does)")
    if "all" in modes or manager != "dpkg":
        return pins, f"all {len(pins)} installed packages (--pin-os all)"
    owners = {str(o) for o in native.get("owners") or ()} if isinstance(native, Mapping) else set()
    python = manifest.sections.get("python") or {}
    base = str(python.get("base_prefix") or python.get("prefix") or "") if isinstance(python, Mapping) else ""
    system_python = base == "/usr"
    # pip installs a package from a VCS with that VCS's own tool, so the build needs it too.
    tools = {_VCS_TOOLS.get(str(p["origin"].get("vcs")), "") for p in python.get("packages") or ()
             if isinstance(p, Mapping) and isinstance(p.get("origin"), Mapping)} if isinstance(python, Mapping) else set()
    # An editable install's record says its checkout's git state (commit, branch, dirty),
    # which only git can read again where the run is rebuilt.
    if isinstance(python, Mapping) and any(isinstance(p, Mapping) and isinstance(p.get("origin"), Mapping)
                                           and isinstance(p["origin"].get("git"), Mapping)
                                           for p in python.get("packages") or ()):
        tools.add("git")
    wanted = set(named) | owners | (tools & have)
    wanted |= {n for n in have if _COMPILERS.match(n) or _CUDA.match(n) or (system_python and _SYSTEM_PYTHON.match(n))}
    chosen = [p for p in pins if p[0] in wanted]
    return chosen, (f"{len(chosen)} of {len(pins)} installed packages (--pin-os auto: the owners of the "
                    "libraries the run's compiled code links, compilers, CUDA"
                    f"{', the system Python' if system_python else ''}"
                    f"{', the VCS tools pip installs from (' + ', '.join(sorted(tools & have)) + ')' if tools & have else ''}"
                    f"{', named' if named else ''})")


def native_dpkg_arch(pins: Iterable[tuple[str, str, str]]) -> str | None:
    counts = Counter(arch for _, _, arch in pins if arch not in ("", "all"))
    return counts.most_common(1)[0][0] if counts else None


def system_pin_lines(manager: str, pins: Iterable[tuple[str, str, str]]) -> list[str]:
    pins = list(pins)
    if manager == "dpkg":
        native = native_dpkg_arch(pins)
        return [f"{n}:{a}={ver}" if a not in ("", "all", native) else f"{n}={ver}" for n, ver, a in pins]
    if manager == "rpm":
        return [f"{n}-{ver}.{a}" if a else f"{n}-{ver}" for n, ver, a in pins]
    return [f"{n}={ver}" for n, ver, _ in pins]


def _files(request: LockRequest, fields: Mapping[str, Any]) -> dict[str, str]:
    manager = fields["system_manager"]
    head = [f"# envcap lock: {manager} packages of env {request.manifest.env_id}",
            f"# Pinned: {fields['pin_os']}; left to the base image: {len(fields['system_left'])}.",
            f"# Install with: {_INSTALL_HINT[manager]}"]
    out = {_SYSTEM_FILE[manager]: "\n".join(head + system_pin_lines(manager, fields["system_pins"])) + "\n"}
    snapshot = _archive_snapshot(request, manager)
    if snapshot:
        out["apt-snapshot.sources"] = snapshot
    return out


def _archive_snapshot(request: LockRequest, manager: str) -> str | None:
    """A deb822 source for the distribution's dated archive at the time of the snapshot.

    The archive serves every version published at that moment, so it installs pins that
    the live mirror has since replaced. The date is the snapshot's, so unlike the other
    lockfiles this one can differ between two snapshots with the same content.
    """
    manifest = request.manifest
    template = request.apt_archive or _SNAPSHOT_ARCHIVES.get(request.os_id or "")
    taken = manifest.observed.get("time")
    if manager != "dpkg" or template is None or not request.os_codename or not isinstance(taken, str):
        return None
    digits = "".join(c for c in taken[:19] if c.isdigit())
    if len(digits) != 14:
        return None
    stamp = f"{digits[:8]}T{digits[8:]}Z"
    uri = v.url("the apt archive (ENVCAP_APT_ARCHIVE)", template.replace("{stamp}", stamp))
    signed = ""
    if request.apt_archive_key:
        # An embedded key (apt 2.3.10 and later): a site archive signed by its own key.
        lines = [line.rstrip() for line in request.apt_archive_key.strip().splitlines()]
        if not lines or lines[0] != "-----BEGIN PGP PUBLIC KEY BLOCK-----" or any(
                not line.isprintable() for line in lines):
            raise LockError("the apt archive's key (ENVCAP_APT_ARCHIVE_KEY) is not an armored PGP public key")
        signed = "Signed-By:\n" + "".join(f" {line or '.'}\n" for line in lines)
    return (f"# envcap lock: the {request.os_id} archive as it was when env {manifest.env_id} was captured.\n"
            "# envcap build adds it by itself when the mirror lacks a pinned version; by hand:\n"
            "#   cp apt-snapshot.sources /etc/apt/sources.list.d/ && apt-get update\n"
            "Types: deb\n"
            f"URIs: {uri}\n"
            f"Suites: {request.os_codename}\n"
            "Components: main\n"
            "Check-Valid-Until: no\n" + signed)


def steps(manifest: Manifest, lock: Lock) -> BuildPart:
    left = tuple(lock.system_left)
    notes = ((f"system: {len(left)} dpkg package(s) not pinned, left to the base image (what the run needs is "
              f"pinned; --pin-os all pins every one): {_shown(left)}"),) if left else ()
    if lock.system_manager == "dpkg" and lock.system_pins:
        names = ("apt.txt", *(["apt-snapshot.sources"] if "apt-snapshot.sources" in lock.files else []))
        return BuildPart(
            steps=(Step(comment="OS packages, pinned (the slowest, most stable layer); the dated archive is added "
                                "only when the mirror lacks a pinned version.", script="apt",
                        args=tuple(f"{LOCK_DIR}/{n}" for n in names), copy=names),),
            files={n: lock.files[n] for n in names}, notes=notes)
    if lock.system_manager == "dpkg":
        return BuildPart(notes=notes)
    if lock.system_manager:
        return BuildPart(notes=((f"system: rebuilding {lock.system_manager} packages is not supported; "
                                 "the base image's are kept"),))
    return NO_BUILD


def _shown(names: tuple[str, ...], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
