"""Dependencies that no index serves, carried with a run: what they are and where they are kept.

A run's environment can hold Python packages that no index will ever serve: a wheel
installed from a local file, a package installed from a local git repository
(``pip install git+file:///srv/git/pkg``). ``envcap export`` (and ``envcap push``) puts
them in the run's bundle: the wheel as it is, checked against the sha256 pip recorded;
the repository as a git bundle of the recorded commit alone. ``envcap import`` keeps
each as an object of the store with a row of the ``carried`` table naming it
(``wheel``, the wheel's sha256; ``git``, ``URL@COMMIT``), and a build of the env takes it
from there when the machine does not have it.

:func:`needs` lists what an environment needs carried, from its manifest alone.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import proc
from .base import StoreBackend as Store

# What a bundle carries unless told otherwise (envcap export --carry-limit, ENVCAP_CARRY_LIMIT).
DEFAULT_LIMIT = 100 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_WHEEL = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
_REF = "refs/heads/envcap-carried"


@dataclass(frozen=True, slots=True)
class Dependency:
    """A package of the environment that no index serves."""

    name: str
    version: str
    kind: str  # "wheel" or "git"
    key: str  # the wheel's sha256, or URL@COMMIT
    path: str  # the wheel file, or the repository, as recorded on the run's machine
    commit: str | None = None

    @property
    def what(self) -> str:
        if self.kind == "wheel":
            return f"python package {self.name} {self.version} (the local wheel {self.path})"
        return f"python package {self.name} {self.version} (git+file://{self.path} at {self.commit})"

    @property
    def member(self) -> str:
        """Its name in a bundle."""
        if self.kind == "wheel":
            return f"deps/wheels/{posixpath.basename(self.path)}"
        return f"deps/git/{self.name}-{self.commit}.bundle"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "key": self.key, "path": self.path,
                "commit": self.commit, "member": self.member}


def needs(manifest: Any) -> list[Dependency]:
    """The packages of ``manifest``'s Python environment that must be carried: local wheels
    (with the sha256 pip recorded) and installs from a local git repository."""
    python = manifest.sections.get("python")
    if not isinstance(python, Mapping):
        return []
    out = []
    for package in python.get("packages") or ():
        if not isinstance(package, Mapping):
            continue
        origin = package.get("origin")
        if not isinstance(origin, Mapping):
            continue
        name, version = str(package.get("name")), str(package.get("version"))
        url = origin.get("url")
        if not isinstance(url, str) or not url.startswith("file:///"):
            continue
        path = posixpath.normpath(url[len("file://"):])
        sha, commit = origin.get("sha256"), origin.get("commit")
        if origin.get("kind") == "file" and isinstance(sha, str) and _SHA256.match(sha) \
                and _WHEEL.match(posixpath.basename(path)):
            out.append(Dependency(name, version, "wheel", sha, path))
        elif origin.get("kind") == "vcs" and origin.get("vcs") == "git" and isinstance(commit, str) \
                and _COMMIT.match(commit):
            out.append(Dependency(name, version, "git", f"{url}@{commit}", path, commit))
    return sorted(out, key=lambda d: (d.name, d.kind))


# -- on this machine --------------------------------------------------------------------------


def wheel_here(dep: Dependency) -> bytes | None:
    """The wheel's bytes when the recorded file is still here and is the one recorded."""
    try:
        with open(dep.path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == dep.key else None


def git_here(dep: Dependency) -> bytes | None:
    """A git bundle of the recorded commit alone (its history with it), made from the
    repository when it is still here and holds the commit; its HEAD is that commit."""
    if not os.path.isdir(dep.path) or dep.commit is None:
        return None
    ok = proc.git(["cat-file", "-e", f"{dep.commit}^{{commit}}"], dep.path)
    if ok is None or ok.returncode != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="envcap-carry-") as tmp:
        clone = os.path.join(tmp, "repo.git")
        steps = [(["clone", "--quiet", "--bare", "--no-tags", "--", dep.path, clone], tmp),
                 (["update-ref", _REF, dep.commit], clone),
                 (["symbolic-ref", "HEAD", _REF], clone),
                 (["bundle", "create", "--quiet", os.path.join(tmp, "out.bundle"), "HEAD", _REF], clone)]
        for args, where in steps:
            out = proc.git(args, where)
            if out is None or out.returncode != 0:
                return None
        with open(os.path.join(tmp, "out.bundle"), "rb") as fh:
            return fh.read()


def here(dep: Dependency) -> bytes | None:
    return wheel_here(dep) if dep.kind == "wheel" else git_here(dep)


# -- in the store -----------------------------------------------------------------------------


def _ready(store: Store) -> None:
    from ._ddl import SQLITE_TABLES

    store.ensure_schema(SQLITE_TABLES["carried"])


def statements(dep: Dependency, oid: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The row that names a carried dependency's object (written with the run it came with)."""
    return [("INSERT OR REPLACE INTO carried VALUES (?, ?, ?, ?)", (dep.kind, dep.key, oid, dep.name))]


def ensure_tables(store: Store) -> None:
    _ready(store)


def find(store: Store, dep: Dependency) -> bytes | None:
    """The carried bytes of ``dep`` in ``store``, checked again (a wheel against its sha256)."""
    _ready(store)
    row = store.db.execute("SELECT object FROM carried WHERE kind = ? AND key = ?", (dep.kind, dep.key)).fetchone()
    if row is None:
        return None
    data = store.get_object(row[0])
    if dep.kind == "wheel" and hashlib.sha256(data).hexdigest() != dep.key:
        return None
    return data


def obtain(store: Store | None, dep: Dependency) -> bytes | None:
    """``dep`` from this machine, else from what a bundle carried into ``store``."""
    data = here(dep)
    if data is None and store is not None:
        data = find(store, dep)
    return data


def limit_from(env: Mapping[str, str] | None = None) -> int:
    """The carry limit: ``ENVCAP_CARRY_LIMIT`` (bytes, or with a K, M or G suffix), else 100M."""
    text = (os.environ if env is None else env).get("ENVCAP_CARRY_LIMIT")
    return parse_size(text) if text else DEFAULT_LIMIT


def parse_size(text: str) -> int:
    from ..core.errors import UsageError

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"carry limit {text!r}: give a size such as 200M or 2G")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n} bytes"
