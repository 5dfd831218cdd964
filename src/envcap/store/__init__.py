"""Where manifests and records are kept: the embedded store (content-addressed objects
plus an SQLite index) and the resolution of user references to stored manifests."""

from .embedded import SnapshotRow, Store, load_manifest

__all__ = ["SnapshotRow", "Store", "load_manifest"]
