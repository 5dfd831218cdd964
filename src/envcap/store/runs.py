"""The runs tables, beside the manifests in the store's SQLite index.

::

    runs        one row per run: the id of its newest record object, and the columns
                that listing and filtering read without opening every record
    run_notes   notes, appended with their time (the only thing added to a finished run)
    file_hashes the fingerprint cache: a file's digest keyed by its path and what
                stat says of it (see :mod:`.data`)
    tree_hashes a directory's fingerprint keyed by its path and the hash of every
                file's path and stat key under it
    run_reproductions
                which run reproduces which (``envcap rebuild``), so that a run's
                reproductions are found without opening every record
    run_outputs the fingerprint of each output of a finished run, so that a later run
                reading it is linked to the run that wrote it (lineage)

The tables are created on first use. A record is written as an object first; only
then is the row pointed at it, in one transaction, so the row always names a whole
record. Every object a record refers to is also entered in the store's ``objects``
table, so ``envcap verify`` re-hashes it with the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.canonical import canonical_bytes
from ..core.errors import AmbiguousIdError, EnvcapError, NotFoundError, StoreError
from . import values
from .base import StoreBackend as Store
from ..core.run import RUN_PREFIX, RunRecord

_TABLES = ("runs", "run_notes", "file_hashes", "tree_hashes", "run_reproductions", "run_outputs", "run_values")
NOTE_SCHEMA = "envcap/note"


@dataclass(frozen=True, slots=True)
class Note:
    time: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"time": self.time, "text": self.text}


def ensure_tables(store: Store) -> None:
    """Create the runs tables if this store has none yet (cheap when it has).

    The embedded index has every table from its first opening (:mod:`.schema`), the
    shared store from its migrations: nothing is left to do here but for an index that
    could not be migrated (a read-only one).
    """
    if not all(store.has_table(t) for t in _TABLES):
        from ._ddl import SQLITE

        store.ensure_schema(SQLITE)


def view_of(record: RunRecord) -> dict[str, Any]:
    """The fields of a run's JSON view that its values are taken from (no notes)."""
    view = record.to_dict()
    view["status"] = record.status
    return view


def metric_ranges(store: Store | None, record: RunRecord,
                  objects: dict[str, bytes] | None = None) -> dict[str, tuple[float, float]]:
    """Each metric's least and greatest logged value (from the run's metrics log)."""
    log = record.metrics_log or {}
    oid = log.get("object")
    if not oid:
        return {}
    try:
        data = (objects or {}).get(oid)
        if data is None:
            if store is None:
                return {}
            data = store.get_object(oid)
    except StoreError:
        return {}  # a missing log: `envcap verify` names it; the values are still written
    return values.metric_ranges(data)


def has_runs_table(store: Store) -> bool:
    return store.has_table("runs")


def record_statements(record: RunRecord, record_id: str, size: int,
                      ranges: dict[str, tuple[float, float]] | None = None) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL that points the run's row at ``record_id`` (and enters its objects and
    its searchable values; ``ranges``: each metric's logged least and greatest value)."""
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("INSERT OR IGNORE INTO objects VALUES (?, ?, 'run')", (record_id, size)),
        (
            (
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "record = excluded.record, state = excluded.state, ended_at = excluded.ended_at, "
                "exit_code = excluded.exit_code, manifest_id = excluded.manifest_id, env_id = excluded.env_id, "
                "params_id = excluded.params_id, git_commit = excluded.git_commit, labels = excluded.labels"
            ),
            (record.id, record_id, record.state, record.started_at, record.ended_at, record.exit_code,
             record.manifest, record.env_id, record.params_id, record.git.get("commit"),
             json.dumps(dict(record.labels), sort_keys=True)),
        ),
    ]
    statements += values.statements(record.id, values.rows(view_of(record), ranges))
    if record.reproduction is not None:
        statements.append(("INSERT OR REPLACE INTO run_reproductions VALUES (?, ?, ?)",
                           (record.id, record.reproduction["of"], record.reproduction.get("verdict"))))
    if record.finished:
        statements += [("INSERT OR IGNORE INTO run_outputs VALUES (?, ?, ?)", (o["fingerprint"], record.id, o["path"]))
                       for o in record.outputs if o.get("fingerprint") and o.get("path")]
    return statements


def producers(store: Store, fingerprint: str, before: str) -> list[tuple[str, str]]:
    """(run id, output path) of each run older than ``before`` that wrote these bytes."""
    if not store.has_table("run_outputs"):
        return []
    rows = store.db.execute("SELECT run_id, path FROM run_outputs WHERE fingerprint = ? AND run_id < ? "
                            "ORDER BY run_id, path", (fingerprint, before)).fetchall()
    return [(r[0], r[1]) for r in rows]


def has_object(store: Store, oid: str) -> bool:
    """Whether the store's index lists the object (cheaper than reading it)."""
    return store.db.execute("SELECT 1 FROM objects WHERE id = ?", (oid,)).fetchone() is not None


def object_statements(objects: Iterable[tuple[str, int, str]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL that enters stored objects (id, size, kind) in the index."""
    return [("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, size, kind)) for oid, size, kind in objects]


def put_record(store: Store, record: RunRecord, *, notes: Iterable[Note] = (),
               objects: Iterable[tuple[str, int, str]] = ()) -> str:
    """Store a record and point the run at it, atomically; return the record object's id.

    ``objects`` are (id, size, kind) of objects already stored that the record refers
    to; ``notes`` are appended in the same transaction.
    """
    ensure_tables(store)
    data = canonical_bytes(record.to_dict())
    record_id = store.put_object(data)
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, size, kind)) for oid, size, kind in objects
    ]
    statements += record_statements(record, record_id, len(data), metric_ranges(store, record))
    for n in notes:
        statements += note_statements(store, record.id, n)
    store.transaction(statements)
    return record_id


def note_object(run_id: str, note: Note) -> bytes:
    """A note as a store object naming its run: a reindex finds it again."""
    return canonical_bytes({"schema": NOTE_SCHEMA, "run": run_id, "time": note.time, "text": note.text})


def parse_note(doc: dict[str, Any]) -> tuple[str, Note] | None:
    """(run id, note) of a note object's parsed JSON; None when it is no note."""
    if doc.get("schema") != NOTE_SCHEMA:
        return None
    run_id, time, text = doc.get("run"), doc.get("time"), doc.get("text")
    if not all(isinstance(x, str) for x in (run_id, time, text)) or set(doc) != {"schema", "run", "time", "text"}:
        return None
    return str(run_id), Note(str(time), str(text))


def note_statements(store: Store, run_id: str, note: Note) -> list[tuple[str, tuple[Any, ...]]]:
    """Store a note's object; the SQL that indexes it (run in the caller's transaction)."""
    data = note_object(run_id, note)
    oid = store.put_object(data)
    return [("INSERT OR IGNORE INTO objects VALUES (?, ?, 'note')", (oid, len(data))),
            ("INSERT INTO run_notes (run_id, time, text, object) VALUES (?, ?, ?, ?)",
             (run_id, note.time, note.text, oid))]


def add_note(store: Store, run_id: str, note: Note) -> None:
    """Append a note, its secrets redacted (every way in: ``envcap note``, the API, imports)."""
    from ..core.redact import default_redactor

    note = Note(note.time, default_redactor().free_text(note.text))
    ensure_tables(store)
    store.transaction(note_statements(store, run_id, note))


def notes(store: Store, run_id: str) -> list[Note]:
    if not has_runs_table(store):
        return []
    rows = store.db.execute("SELECT time, text FROM run_notes WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    return [Note(r[0], r[1]) for r in rows]


def reproductions(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The runs that reproduce ``run_id`` (``envcap rebuild``), oldest first, with their verdicts."""
    if not store.has_table("run_reproductions"):
        return []
    rows = store.db.execute("SELECT run_id, verdict FROM run_reproductions WHERE original_id = ? ORDER BY run_id",
                            (run_id,)).fetchall()
    return [{"run": r[0], "verdict": r[1]} for r in rows]


def resolve(store: Store, prefix: str) -> str:
    """The run id that a unique prefix (any case) names."""
    if not RUN_PREFIX.match(prefix):
        raise NotFoundError(f"{prefix!r} is not a run id or a run id prefix (at least 4 characters)")
    matches = find(store, prefix)
    if not matches:
        raise NotFoundError(f"no run with id {prefix} in {store.where}")
    if len(matches) > 1:
        raise AmbiguousIdError(f"{prefix} matches {len(matches)} runs; give more characters")
    return matches[0]


def find(store: Store, prefix: str) -> list[str]:
    """The ids of the runs whose id starts with ``prefix`` (at most two: enough to tell)."""
    if not has_runs_table(store):
        return []
    needle = prefix.upper()
    rows = store.db.execute("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                            (needle, needle + "\x7f")).fetchall()
    return [r[0] for r in rows]


def record_id(store: Store, run_id: str) -> str:
    row = store.db.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no run with id {run_id} in {store.where}")
    return str(row[0])


def load(store: Store, run_id: str) -> RunRecord:
    """The newest record of a run, verified against its object id."""
    oid = record_id(store, run_id)
    return load_object(store, oid)


def load_object(store: Store, oid: str) -> RunRecord:
    return _parse(store.get_object(oid), oid)


def _parse(data: bytes, oid: str) -> RunRecord:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"run record {oid} is not JSON: {exc}") from exc
    return RunRecord.from_dict(parsed, source=f"run record {oid}")


def all_ids(store: Store) -> list[str]:
    """Every run id, oldest first."""
    if not has_runs_table(store):
        return []
    return [r[0] for r in store.db.execute("SELECT id FROM runs ORDER BY id")]


def ids_where(store: Store, where: str = "", params: tuple[Any, ...] = ()) -> list[str]:
    """The ids of the runs whose row meets ``where`` (SQL over the runs table), oldest first."""
    if not has_runs_table(store):
        return []
    sql = "SELECT id FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    return [r[0] for r in store.db.execute(sql, params)]


Loaded = tuple[str, "RunRecord | None", list[Note], list[dict[str, Any]], "EnvcapError | None"]


def load_many(store: Store, run_ids: list[str]) -> list[Loaded]:
    """(id, record, notes, reproductions, problem) of many runs, in a few queries rather than
    three per run. A record that cannot be read is None, with the error that says why."""
    out: list[Loaded] = []
    fetch = getattr(store, "get_objects", None)
    reproduced = store.has_table("run_reproductions")
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        records = dict(store.db.execute(f"SELECT id, record FROM runs WHERE id IN ({marks})", tuple(chunk)).fetchall())
        by_note: dict[str, list[Note]] = {}
        for run_id, time, text in store.db.execute(
                f"SELECT run_id, time, text FROM run_notes WHERE run_id IN ({marks}) ORDER BY seq", tuple(chunk)):
            by_note.setdefault(run_id, []).append(Note(time, text))
        by_copy: dict[str, list[dict[str, Any]]] = {}
        if reproduced:
            for run_id, original, verdict in store.db.execute(
                    f"SELECT run_id, original_id, verdict FROM run_reproductions WHERE original_id IN ({marks}) "
                    "ORDER BY run_id", tuple(chunk)):
                by_copy.setdefault(original, []).append({"run": run_id, "verdict": verdict})
        blobs: dict[str, bytes] = {}
        if fetch is not None:
            try:
                blobs = fetch([records[r] for r in chunk if r in records])
            except StoreError:
                blobs = {}  # One bad record: each is read on its own below, and the bad one named.
        for run_id in chunk:
            if run_id not in records:
                raise NotFoundError(f"no run with id {run_id} in {store.where}")
            oid = records[run_id]
            try:
                record = load_object(store, oid) if oid not in blobs else _parse(blobs[oid], oid)
            except EnvcapError as exc:
                out.append((run_id, None, by_note.get(run_id, []), by_copy.get(run_id, []), exc))
                continue
            out.append((run_id, record, by_note.get(run_id, []), by_copy.get(run_id, []), None))
    return out


def index_view(store: Store, run_id: str, problem: str) -> dict[str, Any]:
    """What the index row says of a run whose record cannot be read, marked as such."""
    row = store.db.execute("SELECT id, state, started_at, ended_at, exit_code, manifest_id, env_id, params_id, "
                           "git_commit, labels FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no run with id {run_id} in {store.where}")
    return {"id": row[0], "state": row[1], "status": "unreadable", "started_at": row[2], "ended_at": row[3],
            "exit_code": row[4], "manifest": row[5], "env_id": row[6], "params_id": row[7],
            "git": {"commit": row[8]}, "labels": json.loads(row[9] or "{}"), "command": "", "params": [],
            "metrics": {}, "problems": [f"the run's record cannot be read: {problem}"], "unreadable": True}


# Columns of the runs table a listing can sort by without opening any record, by the
# name the run's JSON gives them (``git.commit`` is the column git_commit).
INDEX_SORT = {"id": "id", "state": "state", "started_at": "started_at", "ended_at": "ended_at",
              "exit_code": "exit_code", "env_id": "env_id", "manifest": "manifest_id", "git.commit": "git_commit"}


def count(store: Store) -> int:
    """How many runs the store holds."""
    if not has_runs_table(store):
        return 0
    return int(store.db.execute("SELECT count(*) FROM runs").fetchone()[0])


def page_ids(store: Store, *, sort: str = "id", descending: bool = False, limit: int = 50,
             offset: int = 0) -> list[str]:
    """One page of run ids, ordered by an index column (see :data:`INDEX_SORT`), read
    from the index alone: a listing of many runs opens only the records it shows."""
    column = INDEX_SORT.get(sort)
    if column is None:
        raise StoreError(f"runs cannot be paged by {sort!r} from the index (one of: {', '.join(INDEX_SORT)})")
    if not has_runs_table(store):
        return []
    order = "DESC" if descending else "ASC"
    # Runs without the column's value come last either way, as in runs.query.select. The
    # id (the primary key) is never NULL, and ordering by it alone lets SQLite walk its
    # index instead of sorting every row.
    if column == "id":
        keys = f"id {order}"
    else:
        keys = f"{column} IS NULL, {column} {order}, id {order}"
    rows = store.db.execute(f"SELECT id FROM runs ORDER BY {keys} LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    return [r[0] for r in rows]


def record_ids(store: Store) -> dict[str, str]:
    """Every run id with the id of its newest record object: what a reader that keeps
    records in memory compares to see which have changed."""
    if not has_runs_table(store):
        return {}
    return {r[0]: r[1] for r in store.db.execute("SELECT id, record FROM runs")}


def backfill(store: Store) -> list[tuple[str, tuple[Any, ...]]]:
    """What migrating an index to schema version 2 writes: the searchable values of every
    run (read from its record) and an object for every note made before notes were
    objects. The objects are stored now; the rows are returned for the migration's
    transaction. A record that cannot be read gets no values (``verify`` names it)."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    if not has_runs_table(store):
        return out
    for run_id, oid in store.db.execute("SELECT id, record FROM runs ORDER BY id").fetchall():
        try:
            record = load_object(store, oid)
        except EnvcapError:
            continue
        out += values.statements(run_id, values.rows(view_of(record), metric_ranges(store, record)))
    for seq, run_id, time, text in store.db.execute(
            "SELECT seq, run_id, time, text FROM run_notes WHERE object IS NULL ORDER BY seq").fetchall():
        data = note_object(run_id, Note(time, text))
        note_oid = store.put_object(data)
        out += [("INSERT OR IGNORE INTO objects VALUES (?, ?, 'note')", (note_oid, len(data))),
                ("UPDATE run_notes SET object = ? WHERE seq = ?", (note_oid, seq))]
    return out
