"""Where manifests and records are kept: the embedded store (content-addressed objects
plus an SQLite index) or a shared one on PostgreSQL, behind one interface (:mod:`.base`),
opened by :func:`open_store`; and the resolution of user references to stored manifests."""

from .embedded import SnapshotRow, Store, load_manifest
from .factory import open_store

__all__ = ["SnapshotRow", "Store", "load_manifest", "open_store"]
