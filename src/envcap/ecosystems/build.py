"""The build interface every ecosystem's ``build.py`` implements.

``lock_part(manifest, request, unlocked)`` returns the ecosystem's part of the
builder's :class:`envcap.builder.lock.Lock` (its fields and its lockfiles) and appends what it
cannot pin to ``unlocked``; ``steps(manifest, lock)`` returns its Dockerfile steps as a
:class:`BuildPart`. The builder calls them for each ecosystem in layer order
(:data:`envcap.ecosystems.ECOSYSTEMS`); an ecosystem whose section the manifest lacks
returns nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..core.manifest import Manifest

if TYPE_CHECKING:
    from ..pins.hashes import IndexHashes

# The builder's Lock (envcap.builder.lock), which stands above the ecosystems: it is made
# of their lock parts' fields, and each build part's ``steps`` reads back its own.
Lock = Any

# Where an image keeps the lockfiles it was built from.
LOCK_DIR = "/usr/share/envcap/lock"


def plain(value: Any) -> str | None:
    """A free-text manifest value used in comments and base keys: one safe token."""
    from ..pins import validate

    return validate.plain(value)


@dataclass(frozen=True, slots=True)
class Unlocked:
    """A distribution that no lockfile can pin, and why."""

    section: str
    name: str
    version: str
    reason: str

    def text(self) -> str:
        return f"{self.section} {self.name} {self.version}: {self.reason}"


class Sources(Protocol):
    """Where a build gets what no index serves, as files on this machine (``None``: nowhere)."""

    def wheel(self, name: str, version: str, path: str, sha256: str) -> str | None:
        """A file holding the wheel recorded at ``path`` with that sha256, named as it was."""

    def git(self, name: str, version: str, path: str, commit: str) -> str | None:
        """A git bundle of the repository recorded at ``path`` (or a remote's URL), whose HEAD is ``commit``."""

    def editable(self, name: str, version: str, path: str, commit: str | None) -> str | None:
        """A git bundle of the checkout an editable install was made from, whose HEAD is ``commit``."""

    def editable_diff(self, name: str, path: str, commit: str) -> str | None:
        """A patch of the uncommitted changes a run recorded of that checkout, when one did."""

    def is_own(self, path: str) -> bool:
        """Whether ``path`` lies in a run's own repository (its rebuild installs it from the run's code)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LockRequest:
    """What an ecosystem's lock part is given besides its section."""

    manifest: Manifest
    os_id: str | None
    os_codename: str | None
    hashes: IndexHashes | None  # None leaves index hashes out (render only)
    index_url: str
    extra_index_urls: tuple[str, ...]
    # Which OS packages to pin: "auto" (what the run needs) or "all", then names to add.
    pin_os: tuple[str, ...] = ("auto",)
    apt_archive: str | None = None  # the dated archive's URL ({stamp} for the snapshot's time)
    apt_archive_key: str | None = None  # its armored signing key, when Debian's keyring does not sign it
    python_offer: Any = None  # the interpreter builds on offer (python.interpreter.Offer); None: not asked
    sources: Sources | None = None  # None: render only, nothing fetched or checked


@dataclass(frozen=True, kw_only=True, slots=True)
class LockPart:
    fields: Mapping[str, Any] = field(default_factory=dict)  # fields of the Lock
    files: Mapping[str, str] = field(default_factory=dict)  # lockfile name -> text


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One Dockerfile step: envcap's script ``script`` run with checked ``args``, after
    ``copy`` (build-context files) is copied into LOCK_DIR."""

    comment: str
    script: str
    args: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildPart:
    steps: tuple[Step, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # build-context files
    notes: tuple[str, ...] = ()  # what the image will not reproduce


NO_BUILD = BuildPart()
