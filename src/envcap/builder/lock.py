"""Lockfiles from what a manifest already pins: no resolution, every value checked.

Each ecosystem writes its own (:mod:`envcap.ecosystems`, in layer order):

- OS (``ecosystems/system/build.py``): ``name=version`` pins for dpkg (``apt.txt``),
  ``name-version.arch`` for rpm and ``name=version`` for apk, with a dated Debian/Ubuntu
  archive snapshot beside them.
- conda (``ecosystems/conda/build.py``): an explicit lockfile (``@EXPLICIT``) from the
  conda-meta records: URLs and hashes, no solving.
- Python (``ecosystems/python/build.py``): a pip-tools style ``requirements.txt`` with a
  ``--hash`` for every file the index serves, VCS installs pinned to their commit in
  ``requirements-vcs.txt``, local wheels pinned by the sha256 pip recorded; editable and
  directory installs listed as needing their source.

The same manifest gives byte-identical files: everything is sorted, and nothing but
the manifest and the index's (cached) answers goes in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import ecosystems
from ..core.files import write_text_atomic
from ..core.manifest import Manifest
from ..ecosystems.build import LockRequest, Sources, Unlocked
from ..ecosystems.build import plain as _plain
from ..ecosystems.python.build import PipPin, PythonEnv
from ..ecosystems.python.record import SYSTEM_INSTALLERS
from ..ecosystems.system.build import native_dpkg_arch, system_pin_lines
from ..ecosystems.system.record import ARCH_FROM_DPKG, SystemSection
from ..pins import validate as v
from ..pins.errors import LockError
from ..pins.hashes import PYPI, IndexHashes
from .settings import BuildSettings

__all__ = ["ARCH_FROM_DPKG", "SYSTEM_INSTALLERS", "Lock", "PipPin", "PythonEnv", "Unlocked", "lock",
           "native_dpkg_arch", "system_pin_lines"]

@dataclass(frozen=True, slots=True)
class Lock:
    """What a manifest pins, in checked form, and the lockfiles made of it."""

    env_id: str
    arch: str | None  # the machine's architecture (x86_64, aarch64, ...), when known
    os_id: str | None
    os_codename: str | None
    os_version: str | None
    system_manager: str | None
    system_pins: tuple[tuple[str, str, str], ...] = ()  # (name, version, arch)
    system_left: tuple[str, ...] = ()  # installed packages not pinned (--pin-os)
    pin_os: str = ""  # how the pins were chosen, in words
    python_install: Any = None  # the interpreter a build installs (ecosystems.python.interpreter.Choice)
    python: PythonEnv | None = None
    pip_hashed: tuple[PipPin, ...] = ()
    pip_vcs: tuple[PipPin, ...] = ()
    pip_editable: tuple[PipPin, ...] = ()  # editable checkouts other than a run's own, restored in the image
    requested: tuple[tuple[str, bool], ...] = ()  # REQUESTED marker per pip-installed name
    indexes: tuple[str, ...] = ()
    conda_prefix: str | None = None
    conda_subdir: str | None = None
    conda_urls: tuple[str, ...] = ()
    unlocked: tuple[Unlocked, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)

    def write(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the lockfiles into ``directory`` (made if needed); return their paths."""
        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LockError(f"cannot write lockfiles to {out}: {exc.strerror}") from exc
        written = []
        for name, text in sorted(self.files.items()):
            write_text_atomic(out / name, text)
            written.append(out / name)
        return written


def lock(manifest: Manifest, *, hashes: IndexHashes | None, index_url: str = PYPI,
         extra_index_urls: Iterable[str] = (), pin_os: Iterable[str] = ("auto",),
         settings: BuildSettings | None = None, python_offer: Any = None, sources: Sources | None = None) -> Lock:
    """The lock of ``manifest``; ``hashes`` None leaves index hashes out (render only).

    ``pin_os`` chooses the OS packages to pin (``auto``, ``all``, names); ``settings``
    names the site's dated archive; ``python_offer`` says which interpreter builds can
    be had (None: not asked, the recorded version is taken as it is); ``sources`` None
    leaves what no index serves unchecked (render only)."""
    settings = settings or BuildSettings()
    sections = manifest.sections
    index_url = v.url("--index-url", index_url).rstrip("/")
    extras = tuple(v.url("--extra-index-url", u).rstrip("/") for u in extra_index_urls)
    os_section = sections.get("os") or {}
    parts: dict[str, Any] = {
        "env_id": manifest.env_id,
        "arch": _arch(manifest),
        "os_id": _plain(os_section.get("id")),
        "os_codename": _plain(os_section.get("version_codename")),
        "os_version": _plain(os_section.get("version_id")),
        "system_manager": None,
    }
    unlocked: list[Unlocked] = []
    files: dict[str, str] = {}
    request = LockRequest(manifest=manifest, os_id=parts["os_id"], os_codename=parts["os_codename"], hashes=hashes,
                          index_url=index_url, extra_index_urls=extras, pin_os=tuple(pin_os) or ("auto",),
                          apt_archive=settings.apt_archive, apt_archive_key=_key_text(settings.apt_archive_key),
                          python_offer=python_offer, sources=sources)
    for name in ecosystems.ECOSYSTEMS:
        part = ecosystems.build_part(name).lock_part(manifest, request, unlocked)
        parts.update(part.fields)
        files.update(part.files)
    parts["unlocked"] = tuple(sorted(unlocked, key=lambda u: (u.section, u.name)))
    return Lock(files=dict(sorted(files.items())), **parts)


def _key_text(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"the apt archive's key {path} (ENVCAP_APT_ARCHIVE_KEY) cannot be read: {exc}") from exc


def _arch(manifest: Manifest) -> str | None:
    cpu = manifest.sections.get("cpu") or {}
    if isinstance(cpu, Mapping) and isinstance(cpu.get("architecture"), str):
        return v.plain(cpu["architecture"])
    system = manifest.record(SystemSection)
    return system.machine_arch() if system else None
