"""System packages' part of a build: pins for dpkg, rpm and apk, and the apt step.

Lockfiles: ``name=version`` pins for dpkg (``apt.txt``), ``name-version.arch`` for rpm
and ``name=version`` for apk, with a dated Debian/Ubuntu archive snapshot beside them.
Only dpkg packages are reinstalled in an image; the others are kept from the base.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...pins import validate as v
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
    fields = {"system_manager": manager, "system_pins": tuple(sorted(pins))}
    return LockPart(fields=fields, files=_files(request, fields))


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
    template = _SNAPSHOT_ARCHIVES.get(request.os_id or "")
    taken = manifest.observed.get("time")
    if manager != "dpkg" or template is None or not request.os_codename or not isinstance(taken, str):
        return None
    digits = "".join(c for c in taken[:19] if c.isdigit())
    if len(digits) != 14:
        return None
    stamp = f"{digits[:8]}T{digits[8:]}Z"
    return (f"# envcap lock: the {request.os_id} archive as it was when env {manifest.env_id} was captured.\n"
            "# Use it in place of the mirror when the mirror no longer serves the pinned versions:\n"
            "#   cp apt-snapshot.sources /etc/apt/sources.list.d/ && apt-get update\n"
            "Types: deb\n"
            f"URIs: {template.format(stamp=stamp)}\n"
            f"Suites: {request.os_codename}\n"
            "Components: main\n"
            "Check-Valid-Until: no\n")


def steps(manifest: Manifest, lock: Lock) -> BuildPart:
    if lock.system_manager == "dpkg" and lock.system_pins:
        return BuildPart(
            steps=(Step(comment="OS packages, pinned (the slowest, most stable layer).", script="apt",
                        args=(f"{LOCK_DIR}/apt.txt",), copy=("apt.txt",)),),
            files={"apt.txt": lock.files["apt.txt"]})
    if lock.system_manager:
        return BuildPart(notes=((f"system: rebuilding {lock.system_manager} packages is not supported; "
                                 "the base image's are kept"),))
    return NO_BUILD
