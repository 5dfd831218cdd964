"""What no index serves, found for a build: on this machine, else in what a run's bundle
carried into the store (:mod:`envcap.store.carried`).

A build's lock asks :class:`StoreSources` for each local wheel and each local git
repository of the environment; what it finds is written into a scratch folder for the
build's file server (a wheel under its own name, a repository as a git bundle), and
what it does not find stops the lock, naming the package, before any build step.
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

from ..store import carried
from ..store.base import StoreBackend


class StoreSources:
    """Files for a build from this machine or from ``store`` (``None``: this machine only)."""

    def __init__(self, store: StoreBackend, scratch: Path) -> None:
        self.store = store
        self.scratch = scratch

    def wheel(self, name: str, version: str, path: str, sha256: str) -> str | None:
        dep = carried.Dependency(name, version, "wheel", sha256, path)
        if carried.wheel_here(dep) is not None:
            return path
        data = carried.find(self.store, dep) if self.store is not None else None
        if data is None:
            return None
        out = self.scratch / "wheels" / sha256 / posixpath.basename(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)

    def git(self, name: str, version: str, path: str, commit: str) -> str | None:
        dep = carried.Dependency(name, version, "git", f"file://{path}@{commit}", path, commit)
        data = carried.obtain(self.store, dep)
        if data is None:
            return None
        out = self.scratch / "git" / f"{hashlib.sha256(data).hexdigest()}.bundle"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)
