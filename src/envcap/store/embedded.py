"""The embedded store: content-addressed objects plus an SQLite index.

Layout under ``ENVCAP_HOME`` (default ``$XDG_DATA_HOME/envcap``)::

    objects/sha256/ab/cdef…   immutable blobs, named by the sha256 of their bytes
    index.sqlite              what is where: manifests, snapshots, (later) runs

An object is written once: to a temporary file, fsynced, then linked into place, so a
reader never sees half an object and a crash leaves at most a stray temporary file.
Every read re-hashes the bytes. SQLite runs in WAL mode with a busy timeout and takes
its write lock up front (``BEGIN IMMEDIATE``), so several processes snapshotting at
once all land.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING, Any, Sequence

from ..core import sqlite as _sqlite, config
from ..core.canonical import ID_PREFIX, digest
from ..core.errors import ManifestError, NotFoundError, StoreError
from ..core.manifest import Manifest
from .base import SCHEMA_VERSION, IndexStore, SnapshotRow, Statements

__all__ = ["SnapshotRow", "Store", "load_manifest"]

if TYPE_CHECKING:
    from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS manifests (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    schema_version TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS manifests_env ON manifests(env_id);
CREATE INDEX IF NOT EXISTS manifests_platform ON manifests(platform_id);
CREATE TABLE IF NOT EXISTS snapshots (
    record TEXT PRIMARY KEY,
    manifest_id TEXT NOT NULL REFERENCES manifests(id),
    taken_at TEXT,
    hostname TEXT,
    labels TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_manifest ON snapshots(manifest_id);
"""


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and verify a manifest file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    return Manifest.from_json(data, source=str(path))


class Store(IndexStore):
    """The store at ``path`` (default: :func:`envcap.core.config.home`)."""

    kind = "embedded"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self._db: sqlite3.Connection | None = None
        # Strings inside (pathlib costs a snapshot a few milliseconds to import); ``path``
        # and ``objects`` give path objects to callers that want them.
        self.root = os.fspath(path) if path is not None else config.home_dir()
        self._objects = os.path.join(self.root, "objects", "sha256")
        self._index = os.path.join(self.root, "index.sqlite")
        if not os.path.exists(self._index):
            if not create:
                raise StoreError(
                    f"no envcap store at {self.root}: run `envcap snapshot` to create one, "
                    "or point ENVCAP_HOME at an existing store"
                )
            try:
                os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True)
                os.makedirs(self._objects, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from exc

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.root)

    @property
    def where(self) -> str:
        return self.root

    @property
    def objects(self) -> Path:
        from pathlib import Path

        return Path(self._objects)

    # -- SQLite ----------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            db = _sqlite.connect(self._index, _SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __del__(self) -> None:
        # A store used without ``with`` still closes its connection (Python 3.13 warns
        # about a connection left to the garbage collector).
        self.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_table(self, name: str) -> bool:
        row = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return bool(row[0])

    def ensure_schema(self, ddl: str | Sequence[str]) -> None:
        """Create tables a module keeps in the index (``CREATE ... IF NOT EXISTS``)."""
        if isinstance(ddl, str):
            self.db.executescript(ddl)
        else:
            self.transaction([(sql, ()) for sql in ddl])

    def info(self) -> dict[str, Any]:
        return {"backend": self.kind, "location": self.root, "schema_version": SCHEMA_VERSION,
                "counts": self.counts()}

    def transaction(self, statements: Statements) -> None:
        """Run SQL statements as one write transaction (all or nothing)."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"cannot write to the store index: {exc}") from exc

    # -- objects ---------------------------------------------------------------------

    def object_path(self, oid: str) -> Path:
        from pathlib import Path

        return Path(self._object_file(oid))

    def _object_file(self, oid: str) -> str:
        hexd = oid[len(ID_PREFIX):]
        return os.path.join(self._objects, hexd[:2], hexd[2:])

    def put_object(self, data: bytes) -> str:
        """Store bytes; return their id. Writing the same bytes twice is a no-op."""
        oid = digest(data)
        final = self._object_file(oid)
        if os.path.exists(final):
            return oid
        folder = os.path.dirname(final)
        os.makedirs(folder, exist_ok=True)
        # A name of our own rather than tempfile's: that module (and the random number
        # machinery it loads) would cost a snapshot more than writing the object does.
        tmp = os.path.join(self.root, "tmp", f"obj-{os.getpid()}-{os.urandom(8).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, final)
            except FileExistsError:
                pass  # Another writer stored the same bytes first.
            _fsync_dir(folder)
        finally:
            os.unlink(tmp)
        return oid

    def has_objects(self, oids: Sequence[str]) -> set[str]:
        """Which of ``oids`` the store holds the bytes of (named by a record or not yet)."""
        return {oid for oid in oids if os.path.exists(self._object_file(oid))}

    def get_object(self, oid: str) -> bytes:
        """The bytes of an object, verified against its id."""
        try:
            with open(self._object_file(oid), "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise StoreError(f"object {oid} is missing from {self._objects}; run `envcap verify`") from exc
        except OSError as exc:
            raise StoreError(f"cannot read object {oid}: {exc.strerror}") from exc
        if digest(data) != oid:
            raise StoreError(f"object {oid} is corrupt (its bytes hash to {digest(data)}); run `envcap verify`")
        return data

    # -- verification ----------------------------------------------------------------

    def verify(self) -> list[str]:
        """Re-hash every object and re-check every index row; return the problems found."""
        problems: list[str] = []
        on_disk: set[str] = set()
        if self.objects.is_dir():
            for sub in sorted(self.objects.iterdir()):
                for path in sorted(sub.iterdir()) if sub.is_dir() else []:
                    oid = ID_PREFIX + sub.name + path.name
                    on_disk.add(oid)
                    actual = digest(path.read_bytes())
                    if actual != oid:
                        problems.append(f"corrupt object {oid} (bytes hash to {actual})")
        for (oid,) in self.db.execute("SELECT id FROM objects"):
            if oid not in on_disk:
                problems.append(f"missing object {oid}")
        corrupt = {p.split()[2] for p in problems}
        for row in self.snapshots():
            if row.record in corrupt or row.manifest_id in corrupt:
                continue
            try:
                self._load(row.record)
            except (StoreError, ManifestError) as exc:
                problems.append(f"snapshot {row.record}: {exc}")
        return problems


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
