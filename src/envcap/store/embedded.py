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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..core import sqlite as _sqlite, config
from ..core.canonical import ID_PREFIX, digest, is_id
from ..core.errors import ManifestError, StoreError
from .base import SCHEMA_VERSION, IndexStore, SnapshotRow, Statements
# Reading a manifest file needs no store: it lives with the resolution of references.
from .resolve import load_manifest

__all__ = ["SnapshotRow", "Store", "load_manifest"]

if TYPE_CHECKING:
    from pathlib import Path



class IndexLostError(StoreError):
    """A store directory whose objects are there and whose index is not."""


class Store(IndexStore):
    """The store at ``path`` (default: :func:`envcap.core.config.home`)."""

    kind = "embedded"
    notices: list[str] = []  # what verify found worth saying that is not damage

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self._db: sqlite3.Connection | None = None
        # Strings inside (pathlib costs a snapshot a few milliseconds to import); ``path``
        # and ``objects`` give path objects to callers that want them.
        self.root = os.fspath(path) if path is not None else config.home_dir()
        self._objects = os.path.join(self.root, "objects", "sha256")
        self._index = os.path.join(self.root, "index.sqlite")
        if not os.path.exists(self._index):
            if not create and self._has_objects():
                raise IndexLostError(f"the store at {self.root} has lost its index ({self._index} is missing): "
                                     "`envcap store reindex` rebuilds it from the objects")
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

    def _has_objects(self) -> bool:
        try:
            with os.scandir(self._objects) as entries:
                return any(e.is_dir() for e in entries)
        except OSError:
            return False

    def check_index(self) -> None:
        """Refuse to read an index that has lost what the objects hold: a zero-length or
        table-less ``index.sqlite`` beside objects is a lost index, not an empty store."""
        try:
            size = os.path.getsize(self._index)
        except OSError:
            size = -1
        empty = size == 0 or (size > 0 and not self.has_table("snapshots"))
        if empty and self._has_objects():
            raise StoreError(f"the store index {self._index} is empty though the store holds objects (a lost or "
                             "truncated index): `envcap store reindex` rebuilds it from the objects")

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
            if self.writable():
                db = _sqlite.connect(self._index, "")
                self._db = db
                try:
                    self._migrate(db)
                except BaseException:
                    self._db = None
                    db.close()
                    raise
            else:
                db = self._connect_read_only()
            self._db = db
        return self._db

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the index to :data:`SCHEMA_VERSION` (SQLite's ``user_version``): every
        table for a new index; for one of version 1 (no version recorded), the run values
        and note objects, filled from the records, in one transaction."""
        from ._ddl import SQLITE, SQLITE_V2

        try:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version < SCHEMA_VERSION:
                    old = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
                    has_object = old and any(r[1] == "object" for r in db.execute("PRAGMA table_info(run_notes)"))
                    for sql in SQLITE:
                        db.execute(sql)
                    if old and not has_object:
                        for sql in SQLITE_V2:
                            if sql.startswith("ALTER"):
                                db.execute(sql)
                    if old and version < 2:  # version 3 only added tables made on first use
                        from . import runs as runs_store

                        for sql, params in runs_store.backfill(self):
                            db.execute(sql, params)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot bring the store index {self._index} to schema version {SCHEMA_VERSION}: "
                             f"{exc}") from exc

    def writable(self) -> bool:
        """Whether this process can write the store (a read-only mount, another user's
        store and a full permission lock-down all say no)."""
        index_ok = not os.path.exists(self._index) or os.access(self._index, os.W_OK)
        return index_ok and os.access(self.root, os.W_OK)

    def _connect_read_only(self) -> sqlite3.Connection:
        """The index opened for reading only: ``mode=ro`` where SQLite can still keep its
        shared-memory file beside it, else ``immutable=1`` (a read-only file system, where
        nothing can change the file while we read it)."""
        from urllib.parse import quote

        last: sqlite3.Error | None = None
        for query in ("mode=ro", "immutable=1"):
            try:
                db = sqlite3.connect(f"file:{quote(self._index)}?{query}", uri=True, timeout=30,
                                     isolation_level=None, check_same_thread=False)
                names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.Error as exc:
                last = exc
                continue
            if not {"objects", "manifests", "snapshots"} <= names:
                db.close()
                raise StoreError(f"the store index {self._index} is empty or damaged and the store is read-only; "
                                 "on a writable copy, `envcap store reindex` rebuilds it from the objects")
            return db
        raise StoreError(f"the store index {self._index} cannot be read (the store is read-only): {last}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def has_table(self, name: str) -> bool:
        row = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return bool(row[0])

    def ensure_schema(self, ddl: str | Sequence[str]) -> None:
        """Create tables a module keeps in the index (``CREATE ... IF NOT EXISTS``)."""
        if isinstance(ddl, str):
            self.db.executescript(ddl)
        else:
            self.transaction([(sql, ()) for sql in ddl])

    dialect = "sqlite"

    def hash_entries(self) -> Any:
        """This machine's fingerprint cache: in this store's own index."""
        from .hashcache import HashEntries

        return HashEntries(self)

    def query(self, statement: tuple[str, Sequence[Any]]) -> list[Any]:
        """The rows of a query of :mod:`.search` (SQL text and its parameters)."""
        sql, params = statement
        try:
            return self.db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the store index {self._index} refused a query: {exc}") from exc

    def info(self) -> dict[str, Any]:
        return {"backend": self.kind, "location": self.root, "schema_version": self.schema_version,
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
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already (a full disk, an I/O error)
            if not self.writable():
                raise StoreError(f"cannot write to the store at {self.root}: it is read-only; "
                                 "nothing was recorded") from exc
            raise StoreError(f"cannot write to the store index {self._index}: {exc}; nothing was recorded") from exc

    # -- objects ---------------------------------------------------------------------

    def object_path(self, oid: str) -> Path:
        from pathlib import Path

        return Path(self._object_file(oid))

    def _object_file(self, oid: str) -> str:
        hexd = oid[len(ID_PREFIX):]
        return f"{self._objects}/{hexd[:2]}/{hexd[2:]}"  # os.path.join, at a tenth of the cost

    def put_object(self, data: bytes) -> str:
        """Store bytes; return their id. Writing the same bytes twice is a no-op."""
        oid = digest(data)
        final = self._object_file(oid)
        if os.path.exists(final):
            return oid
        folder = os.path.dirname(final)
        # A name of our own rather than tempfile's: that module (and the random number
        # machinery it loads) would cost a snapshot more than writing the object does.
        tmp = os.path.join(self.root, "tmp", f"obj-{os.getpid()}-{os.urandom(8).hex()}")
        try:
            os.makedirs(folder, exist_ok=True)
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise self._write_error(exc) from exc
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
        except OSError as exc:
            # A full disk or a failing device: the object is not stored, and nothing
            # names it yet; the temporary file goes.
            raise self._write_error(exc) from exc
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return oid

    def has_objects(self, oids: Sequence[str]) -> set[str]:
        """Which of ``oids`` the store holds the bytes of (named by a record or not yet)."""
        return {oid for oid in oids if os.path.exists(self._object_file(oid))}

    def _write_error(self, exc: OSError) -> StoreError:
        import errno

        hint = {errno.ENOSPC: " (the disk is full)", errno.EDQUOT: " (the disk quota is used up)",
                errno.EROFS: " (the file system is read-only)", errno.EFBIG: " (a file size limit was reached)",
                errno.EACCES: " (no permission)", errno.EPERM: " (no permission)"}.get(exc.errno or 0, "")
        return StoreError(f"cannot write to the store at {self.root}: {exc.strerror or exc}{hint}; "
                          "nothing was recorded")

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
        """Re-hash every object, check the objects on disk against the index both ways,
        re-check every index row; return the problems found."""
        problems: list[str] = []
        on_disk: set[str] = set()
        for oid, path in self._disk_objects():
            on_disk.add(oid)
            try:
                with open(path, "rb") as fh:
                    actual = digest(fh.read())
            except OSError as exc:
                problems.append(f"unreadable object {oid} ({exc.strerror})")
                continue
            if actual != oid:
                problems.append(f"corrupt object {oid} (bytes hash to {actual})")
        indexed = {oid for (oid,) in self.db.execute("SELECT id FROM objects")}
        problems += [f"missing object {oid}" for oid in sorted(indexed - on_disk)]
        unindexed = sorted(on_disk - indexed)
        self.notices = []
        if unindexed and not indexed:
            # Nothing indexed and objects on disk: the index itself is lost.
            problems += [f"unindexed object {oid} (on disk, not in the index)" for oid in unindexed]
            problems.append(f"{len(unindexed)} object(s) on disk are not in the index (a lost or damaged "
                            "index?): `envcap store reindex` rebuilds the index from the objects")
        elif unindexed:
            # What an interrupted write leaves (docs/store.md): objects no row names yet,
            # which the next write of the same record reuses. Not damage.
            self.notices.append(f"{len(unindexed)} object(s) on disk that no index row names (left by an "
                                "interrupted write; the next write of the same record reuses them, and "
                                "`envcap store reindex` takes in any record among them)")
        corrupt = {p.split()[2] for p in problems if p.startswith(("corrupt", "missing", "unreadable"))}
        for row in self.snapshots():
            if row.record in corrupt or row.manifest_id in corrupt:
                continue
            try:
                self._load(row.record)
            except (StoreError, ManifestError) as exc:
                problems.append(f"snapshot {row.record}: {exc}")
        return problems

    def _disk_objects(self) -> Iterator[tuple[str, str]]:
        """(id, path) of every object file under objects/sha256, in order."""
        try:
            subs = sorted(e.name for e in os.scandir(self._objects) if e.is_dir())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot list the objects of {self.root}: {exc.strerror}") from exc
        for sub in subs:
            folder = os.path.join(self._objects, sub)
            try:
                names = sorted(e.name for e in os.scandir(folder) if e.is_file())
            except OSError as exc:
                raise StoreError(f"cannot list {folder}: {exc.strerror}") from exc
            for name in names:
                oid = ID_PREFIX + sub + name
                if len(sub) == 2 and is_id(oid):
                    yield oid, os.path.join(folder, name)

    def _read_records(self, known: dict[str, Any], counts: dict[str, int],
                      only_new: bool = False) -> None:
        """Read (and re-hash) every object not in ``known`` into it: ``("snapshot", None)``,
        ``("run", RunRecord)``, or ``(None, None)``, with its size under ``known[oid][2]``."""
        from ..core.run import SCHEMA as RUN_SCHEMA, RunRecord
        from ..core.structure import loads
        from . import runs as runs_store

        for oid, path in self._disk_objects():
            if oid in known:
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                counts["corrupt"] += 1
                continue
            if digest(data) != oid:
                counts["corrupt"] += 1  # left out of the index: `envcap verify` names it
                continue
            kind: tuple[Any, Any, int] = (None, None, len(data))
            if data.startswith(b"{"):
                try:
                    doc = loads(data, f"object {oid}")
                except ManifestError:
                    doc = None
                note = runs_store.parse_note(doc) if isinstance(doc, dict) else None
                if note is not None:
                    kind = ("note", note, len(data))
                elif isinstance(doc, dict) and doc.get("schema") == RUN_SCHEMA:
                    try:
                        kind = ("run", RunRecord.from_dict(doc, source=f"object {oid}"), len(data))
                    except StoreError:
                        pass
                elif isinstance(doc, dict) and {"manifest", "env_id", "platform_id", "observed", "labels"} <= set(doc) \
                        and "sections" not in doc:
                    kind = ("snapshot", None, len(data))
            known[oid] = kind

    def reindex(self) -> dict[str, int]:
        """Rebuild the index from the objects on disk; return what it holds now.

        Safe with writers running: every object is read (and re-hashed) first without a
        lock; then, holding the index's write lock (writers wait), the objects written
        meanwhile are read too and the rebuilt tables (objects, manifests, snapshots,
        runs, reproductions) are replaced in one transaction of the live index, so every
        record acknowledged before it stays and every one after lands in the same file.
        Notes come back from their objects; what no object holds (notes older than note
        objects, image records, other tables) stays where it is. A
        copy of the index as it was is kept as ``index.sqlite.before-reindex-*``; an index
        that is not a database at all is moved there, and what can be read of it carried over.
        """
        import time

        from . import runs as runs_store

        if not self.writable():
            raise StoreError(f"the store at {self.root} is read-only: reindex needs to write its index")
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        kept = f"{self._index}.before-reindex-{stamp}"
        counts = {"objects": 0, "snapshots": 0, "runs": 0, "notes": 0, "unreferenced": 0, "corrupt": 0,
                  "carried": 0}
        self.close()
        moved_aside = False
        try:
            if os.path.exists(self._index):
                try:
                    db = _sqlite.connect(self._index, "")
                    try:
                        db.execute("PRAGMA quick_check(1)").fetchone()
                        copy = sqlite3.connect(kept)
                        try:
                            db.backup(copy)
                        finally:
                            copy.close()
                    finally:
                        db.close()
                except (StoreError, sqlite3.DatabaseError):
                    # Not a database (or a damaged one): set aside whole, a fresh index in its place.
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(self._index + suffix):
                            os.replace(self._index + suffix, kept + suffix)
                    moved_aside = True
        except OSError as exc:
            raise self._write_error(exc) from exc
        known: dict[str, Any] = {}
        self._read_records(known, counts)
        db = self.db
        runs_store.ensure_tables(self)
        try:
            db.execute("BEGIN IMMEDIATE")
            self._read_records(known, counts)  # written while the first pass ran
            statements = self._index_statements(known, counts)
            for table in ("run_values", "run_reproductions", "runs", "snapshots", "manifests", "objects"):
                db.execute(f"DELETE FROM {table}")
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise StoreError(f"cannot rebuild the store index {self._index}: {exc}; it was left as it was") from exc
        if moved_aside:
            counts["carried"] = self._carry_over(kept)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        return counts

    def _index_statements(self, known: dict[str, Any], counts: dict[str, int]) -> list[tuple[str, tuple[Any, ...]]]:
        from . import runs as runs_store

        kinds: dict[str, str] = {}
        statements: list[tuple[str, tuple[Any, ...]]] = []
        runs: dict[str, list[tuple[str, int, Any]]] = {}
        counts["snapshots"] = counts["runs"] = counts["unreferenced"] = 0
        for oid in sorted(known):
            what, record, size = known[oid]
            if what == "run":
                runs.setdefault(record.id, []).append((oid, size, record))
                continue
            if what != "snapshot":
                continue
            try:
                manifest = self._load(oid)
            except (StoreError, ManifestError):
                continue
            observed = manifest.observed
            kinds[oid], kinds[manifest.id] = "snapshot", "manifest"
            statements += [
                ("INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?)",
                 (manifest.id, manifest.env_id, manifest.platform_id, manifest.schema_version,
                  observed.get("time") or "")),
                ("INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                 (oid, manifest.id, observed.get("time"), observed.get("hostname"),
                  json.dumps(dict(manifest.labels), sort_keys=True))),
            ]
            counts["snapshots"] += 1
        for versions in runs.values():
            # The row names the newest record: a finished one, else the fullest.
            oid, size, record = max(versions, key=lambda v: (v[2].state == "finished", v[1], v[0]))
            for version_oid, _, version in versions:
                kinds[version_oid] = "run"
                for ref, kind, _ in version.objects():
                    kinds.setdefault(ref, kind)
            statements += runs_store.record_statements(record, oid, size, runs_store.metric_ranges(self, record))
            counts["runs"] += 1
        # Notes come back from their objects, oldest first; a note the index still lists
        # (by its object) stays as it is.
        notes = sorted((note.time, oid, run_id, note)
                       for oid, (what, (run_id, note), _) in ((o, k) for o, k in known.items() if k[0] == "note"))
        for _, oid, run_id, note in notes:
            kinds[oid] = "note"
            statements.append(("INSERT INTO run_notes (run_id, time, text, object) SELECT ?, ?, ?, ? "
                               "WHERE NOT EXISTS (SELECT 1 FROM run_notes WHERE object = ?)",
                               (run_id, note.time, note.text, oid, oid)))
        counts["notes"] = len(notes)
        for oid, (_, _, size) in known.items():
            if oid not in kinds:
                counts["unreferenced"] += 1
            statements.append(("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)",
                               (oid, size, kinds.get(oid, "unreferenced"))))
        counts["objects"] = len(known)
        return statements

    def _carry_over(self, old_index: str) -> int:
        """Copy from the old index what no object holds (notes, image records, other
        tables); the number of rows copied. An old index that cannot be read gives none."""
        if not os.path.exists(old_index) or os.path.getsize(old_index) == 0:
            return 0
        rebuilt = {"objects", "manifests", "snapshots", "runs", "run_reproductions", "run_values", "run_notes"}
        copied = 0
        db = self.db
        try:
            db.execute("ATTACH DATABASE ? AS old", (old_index,))
        except sqlite3.Error:
            return 0
        try:
            tables = db.execute("SELECT name, sql FROM old.sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%'").fetchall()
            for name, sql in tables:
                if name in rebuilt or not sql:
                    continue
                quoted = '"' + name.replace('"', '""') + '"'
                if not db.execute("SELECT 1 FROM main.sqlite_master WHERE name = ?", (name,)).fetchone():
                    db.execute(sql)
                before = db.total_changes
                db.execute(f"INSERT OR IGNORE INTO main.{quoted} SELECT * FROM old.{quoted}")
                copied += db.total_changes - before
            # Notes made before notes were objects exist only in the old index.
            columns = {r[1] for r in db.execute("PRAGMA old.table_info(run_notes)")}
            if {"run_id", "time", "text"} <= columns:
                before = db.total_changes
                db.execute("INSERT INTO main.run_notes (run_id, time, text) SELECT run_id, time, text "
                           "FROM old.run_notes" + (" WHERE object IS NULL" if "object" in columns else "")
                           + " ORDER BY seq")
                copied += db.total_changes - before
        except sqlite3.Error:
            pass  # a damaged old index: what could be copied was
        finally:
            try:
                db.execute("DETACH DATABASE old")
            except sqlite3.Error:
                pass
        return copied


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
