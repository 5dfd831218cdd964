"""The system section as a typed record: one package manager and its packages.

Written by :mod:`.probe`; ``to_dict`` gives back the section exactly (see
:mod:`envcap.ecosystems._record`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._record import NONE_OMITTED, Fields, nothing, written
from . import summary_line

# dpkg's architecture names, by the machine names the cpu section records.
DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el",
             "s390x": "s390x", "i686": "i386", "riscv64": "riscv64"}
ARCH_FROM_DPKG = {d: m for m, d in DPKG_ARCH.items()}


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemPackage:
    """One package as the manager's own query tool prints it; ``status`` only for a
    dpkg package in a state other than installed."""

    name: str | None
    version: str | None
    arch: str | None
    status: str | None = None
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    FIELDS = ("name", "version", "arch", "status")

    @classmethod
    def from_dict(cls, data: Any, where: str = "package") -> SystemPackage:
        f = Fields(data, where, cls.FIELDS)
        return cls(name=f.text("name"), version=f.text("version"), arch=f.text("arch"), status=f.text("status"),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"name": self.name, "version": self.version, "arch": self.arch, "status": self.status},
                       self.omitted, self.extra)

    @property
    def installed(self) -> bool:
        return self.status in (None, "installed")


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemSection:
    """The packages of the machine's package manager (dpkg, rpm or apk)."""

    SECTION: ClassVar[str] = "system"
    FIELDS = ("manager", "packages")

    manager: str | None
    packages: tuple[SystemPackage, ...] = ()
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    @classmethod
    def from_dict(cls, data: Any, where: str = "sections.system") -> SystemSection:
        f = Fields(data, where, cls.FIELDS)
        return cls(manager=f.text("manager"),
                   packages=tuple(SystemPackage.from_dict(item, at) for at, item in f.items("packages")),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"manager": self.manager, "packages": [p.to_dict() for p in self.packages]},
                       self.omitted, self.extra)

    def machine_arch(self) -> str | None:
        """The machine's architecture as dpkg's packages show it (their most common one)."""
        if self.manager != "dpkg":
            return None
        counts = Counter(p.arch for p in self.packages if p.arch not in (None, "", "all"))
        return ARCH_FROM_DPKG.get(str(counts.most_common(1)[0][0])) if counts else None

    def describe(self) -> str:
        """One line for a manifest's summary."""
        return summary_line(self.manager, len(self.packages))

    def brief(self) -> list[str]:
        """The few words that tell environments apart in a fleet: none (the OS does)."""
        return []
