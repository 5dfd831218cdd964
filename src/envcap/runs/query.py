"""Finding runs: the JSON view of a run, ``--where`` conditions, ``--label``, ``--sort``.

A condition is ``FIELD OP VALUE`` with OP one of ``= == != > >= < <= ~`` (``~``: the
field's text contains VALUE). FIELD is a dotted path into the run's JSON
(``exit_code``, ``git.branch``, ``seeds.global``); under ``params.``, ``metrics.`` and
``labels.`` the rest of the path is one name, dots included (``params.optim.lr``).
Numbers compare as numbers; ``=`` on an id (``env_id=sha256:ab12``, ``git.commit=ab12``)
also matches by prefix. A run without the field does not match.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..core.errors import UsageError
from ..core.run import RunRecord
from ..store.runs import Note

if TYPE_CHECKING:
    from ..store.base import StoreBackend

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(==|!=|>=|<=|=|>|<|~)\s*(.*?)\s*$")
_KEYED = ("params", "metrics", "labels")
_MISSING = object()


def run_json(record: RunRecord, notes: Iterable[Note] = (),
             reproduced_by: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A run as ``envcap show --json`` and ``envcap runs --json`` print it.

    ``reproduced_by`` lists the runs ``envcap rebuild`` made of this one (the other
    direction of their ``reproduction.of``); the key is there only when there are any.
    """
    data = record.to_dict()
    data["status"] = record.status
    data["notes"] = [n.to_dict() for n in notes]
    later = [dict(r) for r in reproduced_by]
    if later:
        data["reproduced_by"] = later
    return data


def lookup(view: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a run's JSON (``_MISSING`` when there is none)."""
    head, _, rest = path.partition(".")
    if head in _KEYED and rest:
        if head == "params":
            for p in view.get("params", []):
                if p["name"] == rest:
                    return p["value"]
            return _MISSING
        return view.get(head, {}).get(rest, _MISSING)
    value: Any = view
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    raw: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = _CONDITION.match(text)
        if not match:
            raise UsageError(f"--where {text!r}: write FIELD OP VALUE, e.g. 'params.lr>0.01' or 'env_id=sha256:ab12' "
                             "(OP: = != > >= < <= ~)")
        field, op, raw = match.groups()
        if not raw or raw[0] in "<>=!":
            # 'params.lr>>1' or 'lr=' is a typo, not a comparison with the text ">1" or "".
            raise UsageError(f"--where {text!r}: no value after {op!r}, or two operators in a row")
        return cls(field, "=" if op == "==" else op, raw)

    @property
    def value(self) -> Any:
        try:
            return json.loads(self.raw)
        except (ValueError, RecursionError):
            return self.raw

    def matches(self, view: dict[str, Any]) -> bool:
        actual = lookup(view, self.field)
        if actual is _MISSING:
            return False
        wanted = self.value
        if self.op == "~":
            return self.raw in (actual if isinstance(actual, str) else json.dumps(actual))
        if _is_number(actual) and _is_number(wanted):
            return _compare(self.op, actual, wanted)
        if self.op in ("=", "!="):
            equal = actual == wanted or _text(actual) == self.raw or _id_prefix(actual, self.raw)
            return equal if self.op == "=" else not equal
        if isinstance(actual, str) and isinstance(wanted, str):
            return _compare(self.op, actual, wanted)
        return False


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _text(x: Any) -> str:
    return x if isinstance(x, str) else json.dumps(x)


def _id_prefix(actual: Any, raw: str) -> bool:
    if not isinstance(actual, str) or len(raw) < 4:
        return False
    bare = actual.removeprefix("sha256:")
    looks_like_id = actual.startswith("sha256:") or re.fullmatch(r"[0-9a-f]{40,64}", actual) is not None
    return looks_like_id and (actual.startswith(raw) or bare.startswith(raw.removeprefix("sha256:")))


def _compare(op: str, a: Any, b: Any) -> bool:
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda x, y: x == y, "!=": lambda x, y: x != y, ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y, "<": lambda x, y: x < y, "<=": lambda x, y: x <= y,
    }
    return ops[op](a, b)


# Run fields that are columns of the runs table, so that a condition on them is answered
# by the database (an index where there is one) before any record is read.
_COLUMNS = {"id": "id", "env_id": "env_id", "manifest": "manifest_id", "params_id": "params_id",
            "git.commit": "git_commit", "exit_code": "exit_code", "state": "state"}
_SQL_OPS = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


_NARROW_MAX = 1000


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prefilter(where: Iterable[str] = (), labels: dict[str, str] | None = None) -> tuple[str, tuple[Any, ...]]:
    """SQL over the runs table that keeps every run the conditions could match (and few others).

    It only narrows: :func:`select` still checks every condition on the runs it keeps, so
    a condition SQL cannot answer exactly is widened here, never guessed. The SQL is the
    same on both backends.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for text in where:
        c = Condition.parse(text)
        column = _COLUMNS.get(c.field)
        head, _, rest = c.field.partition(".")
        if head == "labels" and rest and c.op == "=" and len(rest) <= _NARROW_MAX:
            clauses.append("labels LIKE ? ESCAPE '\\'")
            params.append("%" + _like(json.dumps(rest) + ": ") + "%")
            continue
        if column is None or c.op == "~":
            continue
        wanted = c.value
        if len(c.raw) > _NARROW_MAX:
            continue  # a value longer than any id: the records answer it (SQLite caps LIKE patterns)
        if column == "exit_code":
            if not _is_number(wanted) or not -2 ** 63 < wanted < 2 ** 63:
                continue  # beyond SQLite's integers: the records answer it
            clause = f"exit_code {_SQL_OPS[c.op]} ?"
            params.append(wanted)
            # A run without an exit code is "not equal" to every number, as select() sees it.
            clauses.append(f"({clause} OR exit_code IS NULL)" if c.op == "!=" else clause)
        elif c.op == "=" and isinstance(wanted, str):
            bare = _like(c.raw.removeprefix("sha256:"))
            clauses.append(f"({column} = ? OR {column} LIKE ? ESCAPE '\\' OR {column} LIKE ? ESCAPE '\\')")
            params += [wanted, bare + "%", "sha256:" + bare + "%"]
    for key, value in (labels or {}).items():
        if len(key) + len(value) > _NARROW_MAX:
            continue
        clauses.append("labels LIKE ? ESCAPE '\\'")
        params.append("%" + _like(json.dumps({key: value})[1:-1]) + "%")
    return " AND ".join(clauses), tuple(params)


def select(views: Sequence[dict[str, Any]], *, where: Iterable[str] = (), labels: dict[str, str] | None = None,
           sort: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The runs that meet every condition, sorted (``-field``: descending), at most ``limit``."""
    conditions = [Condition.parse(w) for w in where]
    chosen = [
        v for v in views
        if all(c.matches(v) for c in conditions)
        and all(v.get("labels", {}).get(k) == val for k, val in (labels or {}).items())
    ]
    if sort:
        descending = sort.startswith("-")
        key = sort.lstrip("-")
        present = [v for v in chosen if lookup(v, key) is not _MISSING]
        absent = [v for v in chosen if lookup(v, key) is _MISSING]
        present.sort(key=lambda v: _sort_key(lookup(v, key)), reverse=descending)
        chosen = present + absent
    if limit is not None:
        chosen = chosen[-limit:] if not sort else chosen[:limit]
    return chosen


@dataclass(frozen=True, slots=True)
class Found:
    """A page of runs as JSON views, the total that match, and how it was answered."""

    views: list[dict[str, Any]]
    total: int | None  # None when not asked for (counting costs a query of its own)
    by: str  # "sql": the database answered; "records": every candidate record was read


def find_runs(store: StoreBackend, *, where: Iterable[str] = (), labels: dict[str, str] | None = None,
              sort: str | None = None, limit: int | None = None, offset: int = 0, count: bool = True) -> Found:
    """The runs ``envcap runs`` and the UI list: answered by the database
    (:meth:`envcap.store.base.IndexStore.search_runs`), reading only the page's records;
    from the records themselves (:func:`select`, the reference) when the store cannot
    answer exactly (a rare path, an odd value, an older read-only index)."""
    from ..store.search import NotCompilable

    conditions = [Condition.parse(w) for w in where]
    try:
        page = store.search_runs([(c.field, c.op, c.raw) for c in conditions], labels=labels, sort=sort,
                                 limit=limit, offset=offset, count=count)
    except NotCompilable:
        pass
    else:
        return Found(load_views(store, page.ids), page.total, "sql")
    views = load_views(store, runs_ids_narrowed(store, where, labels))
    chosen = select(views, where=where, labels=labels, sort=sort)
    total = len(chosen)
    if limit is not None and not sort:
        chosen = chosen[max(0, total - offset - limit):max(0, total - offset)]
    else:
        chosen = chosen[offset:] if limit is None else chosen[offset:offset + limit]
    return Found(chosen, total, "records")


def find_run_ids(store: StoreBackend, *, where: Iterable[str] = (), labels: dict[str, str] | None = None) -> list[str]:
    """The ids of every run meeting the conditions, oldest first (the database answers;
    the records when it cannot, as in :func:`find_runs`)."""
    from ..store.search import NotCompilable

    conditions = [Condition.parse(w) for w in where]
    try:
        return list(store.search_runs([(c.field, c.op, c.raw) for c in conditions], labels=labels).ids)
    except NotCompilable:
        pass
    views = load_views(store, runs_ids_narrowed(store, where, labels))
    return [v["id"] for v in select(views, where=where, labels=labels)]


def runs_ids_narrowed(store: StoreBackend, where: Iterable[str], labels: dict[str, str] | None) -> list[str]:
    from ..store import runs as runs_store

    return runs_store.ids_where(store, *prefilter(where, labels))


def load_views(store: StoreBackend, ids: list[str]) -> list[dict[str, Any]]:
    """The JSON views of runs (with notes and reproductions), in the order given; a run
    whose record cannot be read is listed from its index row, marked ``unreadable``."""
    from ..store import runs as runs_store

    return mark_key(store, [run_json(record, notes, copies) if record is not None
                            else runs_store.index_view(store, rid, str(problem))
                            for rid, record, notes, copies, problem in runs_store.load_many(store, ids)])


def _sort_key(value: Any) -> tuple[int, Any]:
    if _is_number(value):
        return (0, value)
    return (1, _text(value))


def find_run_ref(ref: str) -> dict[str, Any] | None:
    """The JSON of the run REF names, for ``envcap show``; None when REF is no run's.

    A lower-case hex prefix may name a manifest as well as a run: when it names both,
    that is an error, not a guess.
    """
    import os

    from ..core.errors import AmbiguousIdError, NotFoundError, StoreError
    from ..store.factory import open_store
    from ..store import runs as runs_store
    from ..core.run import looks_like_run_ref

    if os.path.exists(ref) or not looks_like_run_ref(ref):
        return None
    try:
        store = open_store(create=False)
    except StoreError:
        return None
    hexlike = re.fullmatch(r"[0-9a-f]{4,64}", ref) is not None
    with store:
        ids = runs_store.find(store, ref)
        if not ids:
            if hexlike:
                return None
            raise NotFoundError(f"no run with id {ref} in {store.where}")
        if len(ids) > 1:
            raise AmbiguousIdError(f"{ref} matches more than one run; give more characters")
        if hexlike:
            try:
                store.resolve(ref)
            except NotFoundError:
                pass
            else:
                raise AmbiguousIdError(f"{ref} names both a run and a manifest; give more characters")
        record = runs_store.load(store, ids[0])
        _check_metrics_log(store, record)
        return mark_key(store, [run_json(record, runs_store.notes(store, ids[0]),
                                         runs_store.reproductions(store, ids[0]))])[0]


def mark_key(store: StoreBackend, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``"key": true`` in the JSON of each key run (``envcap key``), so that listings show the
    mark and ``--where key=true`` finds them."""
    from ..store import revalidations

    keys = set(revalidations.key_ids(store))
    for v in views:
        if v.get("id") in keys:
            v["key"] = True
    return views


def metric_history(store: StoreBackend, record: RunRecord, names: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every recorded point of each metric (or of ``names``), in the order they were logged.

    A point is ``{"step", "value"}`` (``step`` None when none was given), with ``time``
    when the script reported one.
    """
    from ..core.errors import NotFoundError

    history: dict[str, list[dict[str, Any]]] = {}
    log = record.metrics_log or {}
    if log.get("object"):
        for line in store.get_object(log["object"]).splitlines():
            point = json.loads(line)
            entry = {"step": point.get("step"), "value": point["value"]}
            if "time" in point:
                entry["time"] = point["time"]
            history.setdefault(point["name"], []).append(entry)
    wanted = list(names)
    missing = [n for n in wanted if n not in history]
    if missing:
        known = ", ".join(sorted(history)) or "none"
        raise NotFoundError(f"run {record.id} has no metric {', '.join(missing)} (its metrics: {known})")
    return {n: history[n] for n in wanted} if wanted else history


def _check_metrics_log(store: StoreBackend, record: Any) -> None:
    """The metrics log a run's record names is there, whole, with as many points as it says:
    ``show`` prints the record's metrics on its word."""
    from ..core.errors import StoreError

    log = record.metrics_log
    if not log or not log.get("object"):
        return
    data = store.get_object(log["object"])  # re-hashed: a missing or corrupt log is a StoreError
    points = data.count(b"\n")
    if log.get("points") is not None and points != log["points"]:
        raise StoreError(f"run {record.id}: its metrics log {log['object']} holds {points} points, "
                         f"the record says {log['points']}; run `envcap verify`")
