"""What no index serves, found for a build: on this machine, else in what a run's bundle
carried into the store (:mod:`envcap.store.carried`).

A build's lock asks :class:`StoreSources` for each local wheel, each git repository
(local, or a remote's URL) and each editable checkout that is not a run's own
repository; what it finds is written into a scratch folder for the build's file server
(a wheel under its own name, a repository or a checkout as a git bundle), and what it
does not find, or what passes the carry limit, stops the lock, naming the package,
before any build step.
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

from ..pins.errors import LockError
from ..store import carried
from ..store.base import StoreBackend


class StoreSources:
    """Files for a build from this machine or from ``store`` (``None``: this machine only),
    up to ``limit`` bytes in all (default: ``ENVCAP_CARRY_LIMIT``, else 100M), the size a
    run's bundle may carry: what a build here installs can be carried elsewhere."""

    def __init__(self, store: StoreBackend | None, scratch: Path, *, env_id: str | None = None,
                 limit: int | None = None, offline: bool = False) -> None:
        self.store = store
        self.offline = offline  # no remote repository is asked: only what a bundle carried into the store
        self.scratch = scratch
        self.limit = carried.limit_from() if limit is None else limit
        self.total = 0
        self._own, self._diffs = carried.run_facts(store, env_id) if store is not None and env_id else ([], {})

    def _count(self, dep: carried.Dependency, size: int) -> None:
        self.total += size
        if self.total > self.limit:
            raise LockError(f"{dep.what} cannot be carried: it ({carried.size_text(size)}) takes what the build "
                            f"installs from outside any index to {carried.size_text(self.total)}, over the carry "
                            f"limit of {carried.size_text(self.limit)} (a run's bundle could not hold it). Raise it "
                            "with ENVCAP_CARRY_LIMIT=SIZE (envcap export --carry-limit SIZE for the bundle), or "
                            "install that package from an index and record the run again")

    def wheel(self, name: str, version: str, path: str, sha256: str) -> str | None:
        dep = carried.Dependency(name, version, "wheel", sha256, path)
        here = carried.wheel_here(dep)
        if here is not None:
            self._count(dep, len(here))
            return path
        data = carried.find(self.store, dep) if self.store is not None else None
        if data is None:
            return None
        self._count(dep, len(data))
        out = self.scratch / "wheels" / sha256 / posixpath.basename(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)

    def git(self, name: str, version: str, path: str, commit: str) -> str | None:
        url = f"file://{path}" if path.startswith("/") else path
        return self._bundle(carried.Dependency(name, version, "git", f"{url}@{commit}", path, commit))

    def editable(self, name: str, version: str, path: str, commit: str | None) -> str | None:
        return self._bundle(carried.Dependency(name, version, "editable", f"file://{path}@{commit}", path, commit))

    def editable_diff(self, name: str, path: str, commit: str) -> str | None:
        """The uncommitted changes a run recorded of the checkout at ``path`` (at ``commit``),
        as a patch file, or None when no run of the environment recorded them."""
        oid = self._diffs.get((posixpath.normpath(path), commit))
        if oid is None or self.store is None:
            return None
        data = self.store.get_object(oid)
        out = self.scratch / "patches" / f"{hashlib.sha256(data).hexdigest()}.patch"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)

    def is_own(self, path: str) -> bool:
        """Whether ``path`` lies in the repository of a run of this environment in the store."""
        return carried.inside(posixpath.normpath(path), self._own)

    def _bundle(self, dep: carried.Dependency) -> str | None:
        data = carried.obtain(self.store, dep, remote_ok=not self.offline)
        if data is None:
            return None
        self._count(dep, len(data))
        out = self.scratch / "git" / f"{hashlib.sha256(data).hexdigest()}.bundle"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)
