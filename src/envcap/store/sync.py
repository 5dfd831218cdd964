"""Copying records between stores: ``envcap push`` (embedded to shared) and ``envcap pull``.

A copy is all or nothing and idempotent. The objects the records need go first, and
only those the destination lacks are read and sent (each is re-hashed on the way, as
every read is); then every index row is written in one transaction. A copy killed
half-way leaves at most objects no row names yet, and the next copy finds them there,
sends the rest and writes the rows: nothing is ever in the destination twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..core.errors import NotFoundError, StoreError
from ..core.run import check_untrusted
from . import images as images_store
from . import runs as runs_store
from .base import StoreBackend

# The index tables a copy carries, with the columns that name a row.
_KEYS = {"manifests": ("id",), "snapshots": ("record",), "runs": ("id",), "run_reproductions": ("run_id",),
         "run_outputs": ("fingerprint", "run_id", "path"), "images": ("repository", "digest"),
         "run_values": ("run_id", "key")}


@dataclass
class Plan:
    """What a copy is to carry: index rows by table, and object ids."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    objects: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    runs: int
    snapshots: int
    objects_sent: int
    objects_present: int
    rows: int
    # What the destination did not hold before: runs, snapshots, notes.
    new_runs: int = 0
    new_snapshots: int = 0
    new_notes: int = 0

    @property
    def nothing_new(self) -> bool:
        return not (self.objects_sent or self.new_runs or self.new_snapshots or self.new_notes)

    def to_dict(self) -> dict[str, int]:
        return {"runs": self.runs, "snapshots": self.snapshots, "objects_sent": self.objects_sent,
                "objects_present": self.objects_present, "rows": self.rows, "new_runs": self.new_runs,
                "new_snapshots": self.new_snapshots, "new_notes": self.new_notes}


def _select(store: StoreBackend, table: str, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    if not store.has_table(table):
        return []
    cur = store.db.execute(f"SELECT * FROM {table}{' WHERE ' + where if where else ''}", tuple(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _referenced(value: Any) -> Iterable[str]:
    """The object ids a record names (every ``"object": "sha256:..."`` in it)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "object" and isinstance(item, str) and item.startswith("sha256:"):
                yield item
            else:
                yield from _referenced(item)
    elif isinstance(value, list):
        for item in value:
            yield from _referenced(item)


def plan(source: Any, refs: Sequence[str] = ()) -> Plan:
    """What copying ``refs`` (run ids, manifest or snapshot ids; none: everything) carries."""
    out = Plan()
    if not refs:
        for table in _KEYS:
            out.rows[table] = _select(source, table)
        out.notes = [(r["run_id"], r["time"], r["text"]) for r in _select(source, "run_notes")]
        out.objects = {r["id"] for r in _select(source, "objects")}
        out.runs = [r["id"] for r in out.rows["runs"]]
        out.snapshots = [r["record"] for r in out.rows["snapshots"]]
        return out
    for table in _KEYS:
        out.rows[table] = []
    for ref in refs:
        run_ids = runs_store.find(source, ref) if not ref.startswith("sha256:") else []
        if len(run_ids) == 1:
            _plan_run(source, run_ids[0], out)
        elif len(run_ids) > 1:
            raise StoreError(f"{ref} matches more than one run; give more characters")
        else:
            try:
                key = source.resolve(ref)
            except NotFoundError:
                raise NotFoundError(f"no run, manifest or snapshot with id {ref} in {source.where}") from None
            for row in _select(source, "snapshots", "record = ? OR manifest_id = ?", (key, key)):
                _plan_snapshot(source, row["record"], out)
    return out


def _plan_run(source: Any, run_id: str, out: Plan) -> None:
    if run_id in out.runs:
        return
    out.runs.append(run_id)
    row = _select(source, "runs", "id = ?", (run_id,))[0]
    out.rows["runs"].append(row)
    out.objects.add(row["record"])
    # A record from another store is checked as a bundle's is before anything is copied.
    parsed = runs_store.load_object(source, row["record"])
    check_untrusted(parsed, f"run {run_id} in {source.where}")
    record = parsed.to_dict()
    out.objects.update(_referenced(record))
    out.rows["run_reproductions"] += _select(source, "run_reproductions", "run_id = ?", (run_id,))
    out.rows["run_outputs"] += _select(source, "run_outputs", "run_id = ?", (run_id,))
    out.rows["run_values"] += _select(source, "run_values", "run_id = ?", (run_id,))
    out.notes += [(n["run_id"], n["time"], n["text"]) for n in _select(source, "run_notes", "run_id = ?", (run_id,))]
    if record.get("snapshot"):
        _plan_snapshot(source, record["snapshot"], out)
    elif record.get("manifest"):
        for snap in _select(source, "snapshots", "manifest_id = ?", (record["manifest"],))[-1:]:
            _plan_snapshot(source, snap["record"], out)
    if row.get("env_id"):
        out.rows["images"] += _select(source, "images", "env_id = ?", (row["env_id"],))


def _plan_snapshot(source: Any, record: str, out: Plan) -> None:
    if record in out.snapshots:
        return
    rows = _select(source, "snapshots", "record = ?", (record,))
    if not rows:
        raise NotFoundError(f"snapshot {record} is not in {source.where}")
    out.snapshots.append(record)
    out.rows["snapshots"] += rows
    manifest_id = rows[0]["manifest_id"]
    if not any(m["id"] == manifest_id for m in out.rows["manifests"]):
        out.rows["manifests"] += _select(source, "manifests", "id = ?", (manifest_id,))
    out.objects.update((record, manifest_id))


def copy(source: Any, dest: Any, refs: Sequence[str] = (), *, batch: int = 200) -> Report:
    """Copy ``refs`` (everything when none) from ``source`` into ``dest``: all or nothing."""
    todo = plan(source, refs)
    runs_store.ensure_tables(dest)
    images_store._ready(dest)
    kinds = _kinds(source, sorted(todo.objects))
    present = dest.has_objects(sorted(todo.objects))
    missing = sorted(todo.objects - present)
    put_many = getattr(dest, "put_objects", None)
    for start in range(0, len(missing), batch):
        chunk = missing[start:start + batch]
        blobs = [source.get_object(oid) for oid in chunk]  # Each re-hashed as it is read.
        if put_many is not None:
            put_many(blobs)
        else:
            for data in blobs:
                dest.put_object(data)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for oid in sorted(todo.objects):
        size, kind = kinds.get(oid) or (len(source.get_object(oid)), "object")
        statements.append(("INSERT OR IGNORE INTO objects (id, size, kind) VALUES (?, ?, ?)", (oid, size, kind)))
    # A run's values are replaced as a whole, as its record is.
    statements += [("DELETE FROM run_values WHERE run_id = ?", (run_id,)) for run_id in todo.runs]
    for table in _KEYS:
        for row in todo.rows.get(table, []):
            cols = list(row)
            verb = "REPLACE" if table in ("runs", "run_reproductions", "images", "run_values") else "IGNORE"
            statements.append((f"INSERT OR {verb} INTO {table} ({', '.join(cols)}) VALUES "
                               f"({', '.join('?' * len(cols))})", tuple(row[c] for c in cols)))
    have = _existing_notes(dest, {n[0] for n in todo.notes})
    new_notes = 0
    for note in todo.notes:
        if note not in have:
            have.add(note)
            new_notes += 1
            statements += runs_store.note_statements(dest, note[0], runs_store.Note(note[1], note[2]))
    known_runs = _present(dest, "runs", "id", todo.runs)
    known_snapshots = _present(dest, "snapshots", "record", todo.snapshots)
    dest.transaction(statements)
    return Report(runs=len(todo.runs), snapshots=len(todo.snapshots), objects_sent=len(missing),
                  objects_present=len(present), rows=len(statements), new_runs=len(set(todo.runs) - known_runs),
                  new_snapshots=len(set(todo.snapshots) - known_snapshots), new_notes=new_notes)


def _present(store: StoreBackend, table: str, key: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` the ``key`` column of ``table`` already holds."""
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        found.update(r[key] for r in _select(store, table, f"{key} IN ({', '.join('?' * len(chunk))})", chunk))
    return found


def _kinds(source: Any, oids: list[str]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for start in range(0, len(oids), 500):
        chunk = oids[start:start + 500]
        for r in _select(source, "objects", f"id IN ({', '.join('?' * len(chunk))})", chunk):
            out[r["id"]] = (r["size"], r["kind"])
    return out


def _existing_notes(dest: Any, run_ids: set[str]) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for run_id in sorted(run_ids):
        found.update((run_id, n.time, n.text) for n in runs_store.notes(dest, run_id))
    return found
