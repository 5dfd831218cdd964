"""The conda section as a typed record: one environment's conda-meta records.

Written by :mod:`.probe`; ``to_dict`` gives back the section exactly (see
:mod:`envcap.ecosystems._record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._record import NONE_OMITTED, Fields, nothing, written
from . import summary_line


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaPackage:
    """The fields envcap keeps of one conda-meta record; absent ones are ``None``."""

    name: str | None
    version: str | None
    build: str | None
    channel: str | None
    url: str | None
    sha256: str | None
    md5: str | None
    subdir: str | None
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    FIELDS = ("name", "version", "build", "channel", "url", "sha256", "md5", "subdir")

    @classmethod
    def from_dict(cls, data: Any, where: str = "package") -> CondaPackage:
        f = Fields(data, where, cls.FIELDS)
        return cls(name=f.text("name"), version=f.text("version"), build=f.text("build"),
                   channel=f.text("channel"), url=f.text("url"), sha256=f.text("sha256"), md5=f.text("md5"),
                   subdir=f.text("subdir"), omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"name": self.name, "version": self.version, "build": self.build, "channel": self.channel,
                        "url": self.url, "sha256": self.sha256, "md5": self.md5, "subdir": self.subdir},
                       self.omitted, self.extra)


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaSection:
    """A conda (mamba, micromamba, pixi) environment: its prefix and packages."""

    SECTION: ClassVar[str] = "conda"
    FIELDS = ("prefix", "packages")

    prefix: str | None
    packages: tuple[CondaPackage, ...] = ()
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    @classmethod
    def from_dict(cls, data: Any, where: str = "sections.conda") -> CondaSection:
        f = Fields(data, where, cls.FIELDS)
        return cls(prefix=f.text("prefix"),
                   packages=tuple(CondaPackage.from_dict(item, at) for at, item in f.items("packages")),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"prefix": self.prefix, "packages": [p.to_dict() for p in self.packages]},
                       self.omitted, self.extra)

    def describe(self) -> str:
        """One line for a manifest's summary."""
        return summary_line(self.prefix, len(self.packages))

    def brief(self) -> list[str]:
        """The few words that tell environments apart in a fleet."""
        return [f"conda ({len(self.packages)} packages)"] if self.packages else []
