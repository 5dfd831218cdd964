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

import json
import os
import sqlite3
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

from ..core import sqlite as _sqlite, config
from ..core.canonical import ID_PREFIX, canonical_bytes, digest
from ..core.errors import AmbiguousIdError, ManifestError, NotFoundError, StoreError
from ..core.manifest import Manifest

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


class SnapshotRow(NamedTuple):
    record: str
    manifest_id: str
    env_id: str
    platform_id: str
    taken_at: str | None
    hostname: str | None
    labels: dict[str, str]


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


class Store:
    """The store at ``path`` (default: :func:`envcap.core.config.home`)."""

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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
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

    # -- manifests -------------------------------------------------------------------

    def add(self, manifest: Manifest) -> str:
        """Store a manifest and this snapshot of it; return the snapshot record's id."""
        body = manifest.body_bytes()
        if digest(body) != manifest.id:
            raise ManifestError("manifest content does not match its id")
        record = {
            "schema_version": manifest.schema_version,
            "manifest": manifest.id,
            "env_id": manifest.env_id,
            "platform_id": manifest.platform_id,
            "observed": dict(manifest.observed),
            "unknowns": [u.to_dict() for u in manifest.unknowns],
            "labels": dict(manifest.labels),
        }
        record_bytes = canonical_bytes(record)
        self.put_object(body)
        record_id = self.put_object(record_bytes)
        observed = manifest.observed
        self.transaction(
            [
                ("INSERT OR IGNORE INTO objects VALUES (?, ?, 'manifest')", (manifest.id, len(body))),
                ("INSERT OR IGNORE INTO objects VALUES (?, ?, 'snapshot')", (record_id, len(record_bytes))),
                (
                    "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?)",
                    (manifest.id, manifest.env_id, manifest.platform_id, manifest.schema_version, observed.get("time") or ""),
                ),
                (
                    "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                    (record_id, manifest.id, observed.get("time"), observed.get("hostname"),
                     json.dumps(dict(manifest.labels), sort_keys=True)),
                ),
            ]
        )
        return record_id

    def resolve(self, prefix: str) -> str:
        """The manifest id (or snapshot record) that a unique prefix names."""
        needle = prefix if prefix.startswith(ID_PREFIX) else ID_PREFIX + prefix
        if len(needle) < len(ID_PREFIX) + 4 or not all(c in "0123456789abcdef" for c in needle[len(ID_PREFIX):]):
            raise NotFoundError(f"{prefix!r} is not an id or an id prefix (at least 4 hex digits)")
        like = needle.replace("%", "").replace("_", "") + "%"
        rows = self.db.execute(
            "SELECT id FROM manifests WHERE id LIKE ? UNION SELECT record FROM snapshots WHERE record LIKE ?",
            (like, like),
        ).fetchall()
        if not rows:
            # An env_id or platform_id names the newest manifest that has it.
            rows = self.db.execute(
                "SELECT m.id FROM manifests m JOIN snapshots s ON s.manifest_id = m.id "
                "WHERE m.env_id LIKE ? OR m.platform_id LIKE ? ORDER BY s.taken_at DESC LIMIT 1",
                (like, like),
            ).fetchall()
        if not rows:
            raise NotFoundError(f"no manifest or snapshot with id {prefix} in {self.path}")
        if len(rows) > 1:
            raise AmbiguousIdError(f"{prefix} matches {len(rows)} records; give more digits")
        return str(rows[0][0])

    def get(self, prefix: str) -> Manifest:
        """A stored manifest with the observations of its newest snapshot (or the one named)."""
        key = self.resolve(prefix)
        row = self.db.execute(
            "SELECT record FROM snapshots WHERE record = ? OR manifest_id = ? ORDER BY taken_at DESC LIMIT 1",
            (key, key),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no snapshot of {key} in {self.path}")
        return self._load(row[0])

    def _load(self, record_id: str) -> Manifest:
        from ..core.structure import loads

        source = f"store object {record_id}"
        try:
            record = loads(self.get_object(record_id), source)
            body = loads(self.get_object(record["manifest"]), source)
            if not isinstance(body, dict):
                raise TypeError("the manifest object is not a JSON object")
            document = {
                "schema_version": record["schema_version"],
                "id": record["manifest"],
                "env_id": record["env_id"],
                "platform_id": record["platform_id"],
                "layers": body["layers"],
                "sections": body["sections"],
                "observed": record["observed"],
                "unknowns": record["unknowns"],
                "labels": record["labels"],
            }
        except (ManifestError, KeyError, TypeError) as exc:
            raise StoreError(f"snapshot {record_id} is not a readable record: {exc}") from exc
        return Manifest.from_dict(document, source=f"store object {record_id}")

    def snapshots(self) -> list[SnapshotRow]:
        rows = self.db.execute(
            "SELECT s.record, s.manifest_id, m.env_id, m.platform_id, s.taken_at, s.hostname, s.labels "
            "FROM snapshots s JOIN manifests m ON m.id = s.manifest_id ORDER BY s.taken_at, s.record"
        ).fetchall()
        return [SnapshotRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def iter_manifests(self) -> Iterator[Manifest]:
        """Every snapshot in the store, oldest first."""
        for row in self.snapshots():
            yield self._load(row.record)

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
