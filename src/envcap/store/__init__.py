"""Where manifests and records are kept: the embedded store (content-addressed objects
plus an SQLite index) or a shared one on PostgreSQL, behind one interface (:mod:`.base`),
opened by :func:`open_store`; and the resolution of user references to stored manifests.

The names below are loaded on first use: ``envcap diff A.json B.json`` resolves its
files through :mod:`.resolve` and never needs SQLite or a backend."""

from __future__ import annotations

from typing import Any

__all__ = ["SnapshotRow", "Store", "load_manifest", "open_store"]


def __getattr__(name: str) -> Any:
    if name in ("SnapshotRow", "Store", "load_manifest"):
        from . import embedded

        return getattr(embedded, name)
    if name == "open_store":
        from .factory import open_store

        return open_store
    raise AttributeError(f"module 'envcap.store' has no attribute {name!r}")
