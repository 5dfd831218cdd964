"""The store interface: what every backend offers, and the index logic they share.

Two backends implement it: :class:`envcap.store.embedded.Store` (objects as files, an
SQLite index; the default, one machine) and :class:`envcap.store.postgres.PostgresStore`
(objects and index in one PostgreSQL database that many machines write at once). No
command knows which one it has: both are opened through
:func:`envcap.store.factory.open_store`.

A backend keeps content-addressed objects (``put_object``/``get_object``, every read
re-hashed) and an index whose tables are declared once, for both dialects, in
:mod:`.schema` (SQLAlchemy Core). :class:`StoreBackend` is what the rest of envcap may
use: domain operations (snapshots: ``add``, ``get``, ``resolve``, ``snapshots``,
``snapshot_nodes`` for the fleet; runs: ``search_runs(conditions, sort, page)``; the
fingerprint cache: ``hash_entries``), with the run, note and image tables reached
through :mod:`.runs` and :mod:`.images`. All SQL lives in this folder: the table modules
write plain statements both backends run (the PostgreSQL backend translates SQLite's
``?``, ``INSERT OR IGNORE`` and ``INSERT OR REPLACE``), and queries that must be
exact on both dialects (the run search, :mod:`.search`) are written once as text with
``?`` placeholders and run by ``query``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Protocol, Sequence, TypeVar

from ..core.canonical import ID_PREFIX, canonical_bytes, digest
from ..core.errors import AmbiguousIdError, ManifestError, NotFoundError, StoreError
from ..core.manifest import Manifest

if TYPE_CHECKING:
    from pathlib import Path

    from .hashcache import HashEntries

# The version of the index's tables this envcap writes. The PostgreSQL backend records
# it in its migration history and refuses a database a newer envcap has migrated.
SCHEMA_VERSION = 3

Statements = Sequence[tuple[str, tuple[Any, ...]]]


class SnapshotRow(NamedTuple):
    record: str
    manifest_id: str
    env_id: str
    platform_id: str
    taken_at: str | None
    hostname: str | None
    labels: dict[str, str]


class RunPage(NamedTuple):
    """One page of a run search: the ids in order, and how many runs match in all."""

    ids: list[str]
    total: int | None


# The largest offset or limit a search passes to the database (SQLite's integers are 64
# bits): anything larger asks for a page past every run there can be.
MAX_ROWS = 2 ** 62


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    @property
    def description(self) -> Any: ...


class Database(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...


class StoreBackend(Protocol):
    """What every command may use of a store, whichever backend it is."""

    kind: str  # "embedded" or "postgresql"

    @property
    def where(self) -> str: ...  # where it is, fit to print: a path, or a URL without credentials
    @property
    def path(self) -> Path: ...  # a local directory for run and rebuild working files
    @property
    def url(self) -> str | None: ...  # the shared store's connection URL (with its password); None when embedded
    @property
    def db(self) -> Database: ...
    def transaction(self, statements: Statements) -> None: ...
    def has_table(self, name: str) -> bool: ...
    def ensure_schema(self, ddl: str | Sequence[str]) -> None: ...
    def put_object(self, data: bytes) -> str: ...
    def get_object(self, oid: str) -> bytes: ...
    def has_objects(self, oids: Sequence[str]) -> set[str]: ...
    def add(self, manifest: Manifest) -> str: ...
    def snapshot_parts(self, manifest: Manifest) -> tuple[bytes, bytes, list[tuple[str, tuple[Any, ...]]]]: ...
    def resolve(self, prefix: str) -> str: ...
    def get(self, prefix: str) -> Manifest: ...
    def snapshots(self) -> list[SnapshotRow]: ...
    def load_snapshot(self, record_id: str, record_bytes: bytes, *, verified: bool = False) -> Manifest: ...
    def iter_manifests(self) -> Iterator[Manifest]: ...
    def verify(self) -> list[str]: ...
    def info(self) -> dict[str, Any]: ...
    # Domain operations answered by the database (see IndexStore for what each does).
    dialect: str  # "sqlite" or "postgresql": what SQLAlchemy compiles for
    def query(self, statement: tuple[str, Sequence[Any]]) -> list[Any]: ...
    def search_runs(self, conditions: Sequence[tuple[str, str, str]], *, labels: dict[str, str] | None = None,
                    sort: str | None = None, limit: int | None = None, offset: int = 0,
                    count: bool = False) -> RunPage: ...
    def snapshot_nodes(self) -> list[SnapshotRow]: ...
    def hash_entries(self) -> HashEntries: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


_S = TypeVar("_S", bound="IndexStore")


class IndexStore:
    """The manifest and snapshot logic both backends share: the same SQL on either index.

    A subclass provides ``db``, ``close``, ``transaction``, ``has_table``, ``put_object``,
    ``get_object``, ``where`` and ``verify``.
    """

    kind = "?"
    dialect = "?"
    db: Any
    url: str | None = None

    def close(self) -> None:  # pragma: no cover - every backend has its own
        raise NotImplementedError

    def __del__(self) -> None:
        # A store used without ``with`` still closes its connection (Python 3.13 warns
        # about an SQLite connection left to the garbage collector).
        self.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:  # pragma: no cover - every backend has its own
        raise NotImplementedError

    def transaction(self, statements: Statements) -> None:  # pragma: no cover
        raise NotImplementedError

    def put_object(self, data: bytes) -> str:  # pragma: no cover
        raise NotImplementedError

    def get_object(self, oid: str) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def has_table(self, name: str) -> bool:  # pragma: no cover
        raise NotImplementedError

    def has_objects(self, oids: Sequence[str]) -> set[str]:  # pragma: no cover - every backend has its own
        """Which of ``oids`` the store holds the bytes of (named by a record or not yet)."""
        raise NotImplementedError

    # -- manifests -------------------------------------------------------------------

    def add(self, manifest: Manifest) -> str:
        """Store a manifest and this snapshot of it; return the snapshot record's id."""
        body, record_bytes, statements = self.snapshot_parts(manifest)
        self.put_object(body)
        record_id = self.put_object(record_bytes)
        self.transaction(statements)
        return record_id

    def snapshot_parts(self, manifest: Manifest) -> tuple[bytes, bytes, list[tuple[str, tuple[Any, ...]]]]:
        """A snapshot's two objects (manifest body, snapshot record) and the rows that index them."""
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
        record_id = digest(record_bytes)
        observed = manifest.observed
        return body, record_bytes, (
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
            raise NotFoundError(f"no manifest or snapshot with id {prefix} in {self.where}")
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
            raise NotFoundError(f"no snapshot of {key} in {self.where}")
        # The index names it, so the store validated it when it put it (``verify`` and
        # ``reindex`` load every snapshot through the full validation instead).
        return self.load_snapshot(row[0], self.get_object(row[0]), verified=True)

    def _load(self, record_id: str) -> Manifest:
        return self.load_snapshot(record_id, self.get_object(record_id))

    def load_snapshot(self, record_id: str, record_bytes: bytes, *, verified: bool = False) -> Manifest:
        """The manifest a snapshot record (already read and verified) names.

        ``verified``: the record is one the index lists (as ``snapshots`` and
        ``snapshot_nodes`` give them), so the store validated its manifest when it put
        it; both objects are still re-hashed and the top level checked, but the
        sections are not walked and hashed again (:meth:`Manifest.from_stored`)."""
        from ..core.structure import loads

        source = f"store object {record_id}"
        try:
            # Bounded parsing (core/structure.py): a hostile object is an error, never a
            # RecursionError or a number too large to use.
            record = loads(record_bytes, source)
            body_bytes = self.get_object(record["manifest"])
            body = loads(body_bytes, source)
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
        if verified:
            return Manifest.from_stored(document, body_bytes, body.get("schema"), source=source)
        return Manifest.from_dict(document, source=source)

    def snapshots(self) -> list[SnapshotRow]:
        rows = self.db.execute(
            "SELECT s.record, s.manifest_id, m.env_id, m.platform_id, s.taken_at, s.hostname, s.labels "
            "FROM snapshots s JOIN manifests m ON m.id = s.manifest_id ORDER BY s.taken_at NULLS FIRST, s.record"
        ).fetchall()
        labels: dict[str, dict[str, str]] = {}  # a fleet's nodes share a few label sets
        return [SnapshotRow(r[0], r[1], r[2], r[3], r[4], r[5],
                            dict(labels[r[6]] if r[6] in labels else labels.setdefault(r[6], json.loads(r[6]))))
                for r in rows]

    def iter_manifests(self) -> Iterator[Manifest]:
        """Every snapshot in the store, oldest first."""
        for row in self.snapshots():
            yield self._load(row.record)

    # -- runs, answered by the database -----------------------------------------------

    def query(self, statement: tuple[str, Sequence[Any]]) -> list[Any]:  # pragma: no cover - every backend has its own
        raise NotImplementedError

    def search_runs(self, conditions: Sequence[tuple[str, str, str]], *, labels: dict[str, str] | None = None,
                    sort: str | None = None, limit: int | None = None, offset: int = 0,
                    count: bool = False) -> RunPage:
        """The ids of one page of the runs meeting every condition (``(field, op, raw)``
        of the ``--where`` grammar) and label, sorted as ``--sort`` sorts (``-FIELD``:
        descending; none: oldest first, and ``limit`` keeps the newest), with their total
        when ``count``. Answered in SQL (:mod:`.search`); a query it cannot answer
        exactly raises :class:`.search.NotCompilable` and the caller reads the records."""
        from . import search

        if not self.has_table("run_values") or getattr(self, "schema_version", SCHEMA_VERSION) < 2:
            raise search.NotCompilable("the index has no run values (an older, read-only index)")
        keys = search.keys_of(conditions, labels, sort)
        if keys and self.query(search.odd_keys(keys)):
            raise search.NotCompilable("a value SQL cannot compare exactly")
        d = self.dialect
        offset = min(offset, MAX_ROWS)
        limit = None if limit is None else min(limit, MAX_ROWS)
        kind = "mixed"
        if sort:
            others = {r[0] for r in self.query(search.sort_kind(sort.lstrip("-")))}
            if not others:
                kind = "n"
            elif others == {"s"} and not self.query(search.has_numbers(sort.lstrip("-"))):
                kind = "s"
        ids = [r[0] for r in self.query(search.statement(d, conditions, labels=labels, sort=sort, limit=limit,
                                                         offset=offset, sort_kind=kind))]
        if sort and kind != "mixed" and (limit is None or len(ids) < limit):
            # The page ran past the runs that have the sort field: those without it follow.
            before = offset if ids else int(self.query(search.present_count(d, conditions, labels, sort))[0][0])
            ids += [r[0] for r in self.query(search.absent(
                d, conditions, labels, sort, None if limit is None else limit - len(ids),
                max(0, offset - before) if not ids else 0))]
        if sort is None and limit is not None:
            ids.reverse()
        total = int(self.query(search.count(d, conditions, labels))[0][0]) if count else None
        return RunPage(ids, total)

    def snapshot_nodes(self) -> list[SnapshotRow]:
        """Every snapshot as its index row says it (ids, time, host, labels): what the store
        verified when it wrote the snapshot, without reading the records again."""
        return self.snapshots()

    def hash_entries(self) -> HashEntries:
        """This host's data-fingerprint cache (see :mod:`.hashcache`)."""
        raise NotImplementedError  # pragma: no cover - every backend has its own

    def counts(self) -> dict[str, int]:
        """How many of each kind of record the index holds."""
        out: dict[str, int] = {}
        for table in ("manifests", "snapshots", "runs", "images", "objects"):
            out[table] = int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) \
                if self.has_table(table) else 0
        return out
