"""The python section as a typed record: the interpreter and its distributions.

The section is written by :mod:`.probe` (and :mod:`.dists` for each distribution); this
is how every other part of envcap reads it. ``to_dict`` gives back the section exactly
(see :mod:`envcap.ecosystems._record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._record import NONE_OMITTED, Fields, nothing, written
from . import summary_line

# Installers that mean "the system package manager put this here".
SYSTEM_INSTALLERS = frozenset({None, "debian", "dpkg", "rpm", "apk"})
# Distributions fleet names beside the Python version, when installed.
KEY_PACKAGES = ("torch", "jax", "tensorflow", "numpy")


@dataclass(frozen=True, kw_only=True, slots=True)
class GitState:
    """The checkout an editable or directory install came from."""

    commit: str | None
    branch: str | None
    dirty: bool | None
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    FIELDS = ("commit", "branch", "dirty")

    @classmethod
    def from_dict(cls, data: Any, where: str = "git") -> GitState:
        f = Fields(data, where, cls.FIELDS)
        return cls(commit=f.text("commit"), branch=f.text("branch"), dirty=f.flag("dirty"),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"commit": self.commit, "branch": self.branch, "dirty": self.dirty}, self.omitted, self.extra)


@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    """Where a distribution came from (PEP 610), its keys depending on ``kind``."""

    kind: str | None
    vcs: str | None = None
    url: str | None = None
    commit: str | None = None
    requested_revision: str | None = None
    sha256: str | None = None
    git: GitState | None = None
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    FIELDS = ("kind", "vcs", "url", "commit", "requested_revision", "sha256", "git")

    @classmethod
    def from_dict(cls, data: Any, where: str = "origin") -> Origin:
        f = Fields(data, where, cls.FIELDS)
        git = data.get("git")
        return cls(kind=f.text("kind"), vcs=f.text("vcs"), url=f.text("url"), commit=f.text("commit"),
                   requested_revision=f.text("requested_revision"), sha256=f.text("sha256"),
                   git=None if git is None else GitState.from_dict(git, f"{where}.git"),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"kind": self.kind, "vcs": self.vcs, "url": self.url, "commit": self.commit,
                        "requested_revision": self.requested_revision, "sha256": self.sha256,
                        "git": None if self.git is None else self.git.to_dict()}, self.omitted, self.extra)


NO_ORIGIN = Origin(kind=None, omitted=frozenset(Origin.FIELDS))


@dataclass(frozen=True, kw_only=True, slots=True)
class PythonPackage:
    """One installed distribution (its PEP 503 normalized name)."""

    name: str | None
    version: str | None
    installer: str | None
    requested: bool | None
    origin: Origin | None
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    FIELDS = ("name", "version", "installer", "requested", "origin")

    @classmethod
    def from_dict(cls, data: Any, where: str = "package") -> PythonPackage:
        f = Fields(data, where, cls.FIELDS)
        origin = data.get("origin")
        return cls(name=f.text("name"), version=f.text("version"), installer=f.text("installer"),
                   requested=f.flag("requested"),
                   origin=None if origin is None else Origin.from_dict(origin, f"{where}.origin"),
                   omitted=f.omitted(), extra=f.extra())

    def to_dict(self) -> dict[str, Any]:
        return written({"name": self.name, "version": self.version, "installer": self.installer,
                        "requested": self.requested, "origin": None if self.origin is None else self.origin.to_dict()},
                       self.omitted, self.extra)

    @property
    def kind(self) -> str | None:
        """The origin's kind (``None`` when the record has no origin)."""
        return (self.origin or NO_ORIGIN).kind

    @property
    def from_system(self) -> bool:
        """Installed by the system package manager, which pins it in its own lockfile."""
        return self.installer in SYSTEM_INSTALLERS and self.kind in ("unknown", "egg-info", None)

    @property
    def from_conda(self) -> bool:
        return self.kind == "conda" or self.installer == "conda"


@dataclass(frozen=True, kw_only=True, slots=True)
class PythonSection:
    """The interpreter a snapshot describes and every distribution it can import."""

    SECTION: ClassVar[str] = "python"
    FIELDS = ("version", "implementation", "executable", "prefix", "base_prefix", "build", "paths", "packages")

    version: str | None
    implementation: str | None
    executable: str | None
    prefix: str | None
    base_prefix: str | None
    build: Mapping[str, str] = field(default_factory=nothing)
    paths: tuple[str, ...] = ()
    packages: tuple[PythonPackage, ...] = ()
    omitted: frozenset[str] = NONE_OMITTED
    extra: Mapping[str, Any] = field(default_factory=nothing)

    @classmethod
    def from_dict(cls, data: Any, where: str = "sections.python") -> PythonSection:
        f = Fields(data, where, cls.FIELDS)
        return cls(
            version=f.text("version"),
            implementation=f.text("implementation"),
            executable=f.text("executable"),
            prefix=f.text("prefix"),
            base_prefix=f.text("base_prefix"),
            build=f.text_map("build"),
            paths=f.texts("paths"),
            packages=tuple(PythonPackage.from_dict(item, at) for at, item in f.items("packages")),
            omitted=f.omitted(),
            extra=f.extra(),
        )

    def to_dict(self) -> dict[str, Any]:
        return written({
            "version": self.version,
            "implementation": self.implementation,
            "executable": self.executable,
            "prefix": self.prefix,
            "base_prefix": self.base_prefix,
            "build": dict(self.build),
            "paths": list(self.paths),
            "packages": [p.to_dict() for p in self.packages],
        }, self.omitted, self.extra)

    def package(self, name: str) -> PythonPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    def flavour(self, conda_prefix: str | None) -> str:
        """Where the interpreter came from: the distribution ("system"), a /usr/local
        build as official Python images have ("official"), conda, or a build of its own
        that no base image has ("managed": pyenv, uv, a source build in a home folder)."""
        base = self.base_prefix or self.prefix or ""
        if conda_prefix and conda_prefix in (self.prefix, self.base_prefix):
            return "conda"
        if base == "/usr/local":
            return "official"
        if base in ("/usr", "") or base.startswith("/usr/lib/"):
            return "system"
        return "managed"

    def uses_system_site(self, prefix: str, base_prefix: str) -> bool:
        """Whether the venv at ``prefix`` also imports from its base interpreter's
        site-packages (``base_prefix``), as ``--system-site-packages`` makes it."""
        return any(p.startswith(base_prefix + "/") and p.endswith("-packages") and not p.startswith(prefix + "/")
                   for p in self.paths)

    def describe(self) -> str:
        """One line for a manifest's summary."""
        return summary_line(self.implementation, self.version, self.executable or self.prefix, len(self.packages))

    def brief(self) -> list[str]:
        """The few words that tell environments apart in a fleet."""
        if not self.version:
            return []
        versions = {p.name: p.version for p in self.packages}
        return [f"Python {self.version} ({len(versions)} packages)",
                *(f"{key} {versions[key]}" for key in KEY_PACKAGES if key in versions)]
