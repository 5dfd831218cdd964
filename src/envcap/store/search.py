"""``search_runs``: the ``--where`` grammar and ``--sort`` compiled to SQL.

The grammar is :mod:`envcap.runs.query`'s, and so are its answers: the in-memory filter
there is the reference, and a test compares the two on generated stores. A condition
``FIELD OP RAW`` compares the run's value at FIELD (a row of ``run_values``) with
``json.loads(RAW)`` (or RAW itself when it is not JSON):

- ``~``: RAW is in the value's text form (the string, else its JSON);
- two numbers compare as numbers (a boolean is no number);
- ``=`` is equality of the values, or of the value's text form with RAW, or, for an id
  (``sha256:…`` or 40-64 hex digits) and RAW of 4 characters or more, a prefix match;
  ``!=`` is its negation (a run without the value matches neither);
- ordered comparisons hold between two numbers or two strings (Python's character
  order: SQLite compares UTF-8 bytes, PostgreSQL sorts with ``COLLATE "C"``), and never
  otherwise.

``--sort FIELD`` puts numbers before strings (everything not a number compares by its
text form), runs without the field last, ties in id order, in both directions; without
a sort, ``--limit N`` keeps the last N by id. A value SQL cannot compare exactly (a
list, an object, NaN, an integer beyond 2**53) or a condition on a path the values
table does not cover raises :class:`NotCompilable`; the caller answers that query from
the records.

The SQL is written here as text, once for both dialects (SQLite's ``?`` placeholders,
which the PostgreSQL backend turns into psycopg's): building it with SQLAlchemy would
cost every ``envcap runs`` the library's import (about 0.3 s), more than the query. The
tables it reads are declared in :mod:`.schema`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Sequence

from . import values as values_mod

Condition = tuple[str, str, str]  # field, operator (= != > >= < <= ~), raw value
Stmt = tuple[str, list[Any]]  # SQL with ? placeholders, and its parameters


class NotCompilable(Exception):
    """The query needs the records: the values table cannot answer it exactly."""


class _Q:
    """Parameters collected while SQL text is built."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.params: list[Any] = []
        self.aliases = 0

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def alias(self) -> str:
        self.aliases += 1
        return f"v{self.aliases}"

    def collate(self, expr: str) -> str:
        return f'{expr} COLLATE "C"' if self.dialect == "postgresql" else expr


def _wanted(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(w: Any) -> float:
    """A wanted number as SQL compares it; one it cannot compare exactly is refused."""
    if isinstance(w, float) and not math.isfinite(w):
        raise NotCompilable("a non-finite number")
    if isinstance(w, int) and not -values_mod.EXACT_INT < w < values_mod.EXACT_INT:
        raise NotCompilable("an integer beyond 2**53")
    return float(w)


def _prefix(q: _Q, col: str, start: int, text: str) -> str:
    return f"substr({col}, {int(start)}, {len(text)}) = {q.p(text)}"


# Greater than every character: a string starts with P if P <= it < P + _TOP (in
# code point order, as both backends compare text here).
_TOP = "\U0010ffff"


def _starts(q: _Q, v: str, prefix: str) -> str:
    column = q.collate(f"{v}.txt")
    return f"({column} >= {q.p(prefix)} AND {column} < {q.p(prefix + _TOP)})"


def _equal(q: _Q, v: str, raw: str, wanted: Any, within: Callable[[], str] | None = None) -> str:
    """SQL for the ``=`` of a value row ``v`` (any kind but ``o``) and RAW: never NULL,
    so that ``!=`` is its negation.

    ``within``: a term each branch repeats (the row's key, when this row drives the
    query), so that every branch is a range of the (key, txt) or (key, num) index and
    SQLite answers the whole as a union of index ranges rather than a scan of the key."""
    parts: list[str] = []

    def add(branch: Callable[[], str]) -> None:
        head = f"{within()} AND " if within is not None else ""  # its placeholder first, as the text reads
        parts.append(f"({head}{branch()})")

    if _is_number(wanted):
        # Two numbers compare as numbers only (``num`` is set on numbers alone); a
        # boolean equals 1 or 0; any other value by its text form or id prefix.
        w = _number(wanted)
        add(lambda: f"{v}.num IS NOT NULL AND {v}.num = {q.p(w)}")
        if w in (0.0, 1.0):
            add(lambda: f"{v}.kind = 'b' AND {v}.txt = {q.p('true' if w == 1.0 else 'false')}")
    elif isinstance(wanted, bool):
        add(lambda: f"{v}.num IS NOT NULL AND {v}.num = {q.p(float(wanted))}")
    add(lambda: f"{v}.txt = {q.p(raw)}")
    if isinstance(wanted, str) and wanted != raw:
        add(lambda: f"{v}.kind = 's' AND {v}.txt = {q.p(wanted)}")
    if len(raw) >= 4:
        # An id by prefix: each branch a range of the (key, txt) index.
        bare = raw.removeprefix("sha256:")
        add(lambda: f"{v}.idlike = 1 AND {_starts(q, v, raw)}")
        add(lambda: f"{v}.idlike = 1 AND {_starts(q, v, 'sha256:' + bare)}")
        add(lambda: f"{v}.idlike = 1 AND {_starts(q, v, bare)} AND NOT {_prefix(q, v + '.txt', 1, 'sha256:')}")
    return "(" + " OR ".join(parts) + ")"


def _predicate(q: _Q, v: str, op: str, raw: str, within: Callable[[], str] | None = None) -> str:
    """SQL that a value row meets ``OP RAW`` (and the term ``within``, when given)."""
    if op == "=" and within is not None:
        return _equal(q, v, raw, _wanted(raw), within)
    if within is not None:
        head = within()
        return f"({head} AND {_predicate(q, v, op, raw)})"
    wanted = _wanted(raw)
    if op == "~":
        fn = "strpos" if q.dialect == "postgresql" else "instr"
        return f"{fn}({v}.txt, {q.p(raw)}) > 0"
    if op in ("=", "!="):
        eq = _equal(q, v, raw, wanted)
        return eq if op == "=" else f"NOT {eq}"
    if op not in (">", ">=", "<", "<="):  # pragma: no cover - the grammar has no other
        raise NotCompilable(op)
    if _is_number(wanted):
        return f"{v}.num {op} {q.p(_number(wanted))}"  # NULL (false) on anything but a number
    if isinstance(wanted, str):
        return f"({v}.kind = 's' AND {q.collate(v + '.txt')} {op} {q.p(wanted)})"
    return "1 = 0"


def keys_of(conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str | None) -> list[str]:
    keys = [c[0] for c in conditions] + [f"labels.{k}" for k in (labels or {})]
    if sort:
        keys.append(sort.lstrip("-"))
    for key in keys:
        if not values_mod.covered(key):
            raise NotCompilable(f"{key} is not in the values table")
    return keys


Filter = tuple[str, Any]  # key, and a function (q, alias) -> SQL


def _filters(conditions: Sequence[Condition], labels: dict[str, str] | None) -> list[Filter]:
    out: list[Filter] = []
    for field, op, raw in conditions:
        out.append((field, lambda q, v, within=None, op=op, raw=raw: _predicate(q, v, op, raw, within)))
    for key, value in (labels or {}).items():
        out.append((f"labels.{key}", lambda q, v, within=None, value=value:
                    f"({within() + ' AND ' if within is not None else ''}{v}.kind = 's' AND {v}.txt = {q.p(value)})"))
    return out


def _matching(q: _Q, run_id: str, filters: list[Filter]) -> list[str]:
    """Terms that the run ``run_id`` names meets every filter (each a lookup by key)."""
    out = []
    for key, predicate in filters:
        v = q.alias()
        out.append(f"EXISTS (SELECT 1 FROM run_values {v} WHERE {v}.run_id = {run_id} AND {v}.key = {q.p(key)} "
                   f"AND {predicate(q, v)})")
    return out


def _driven(q: _Q, filters: list[Filter]) -> tuple[str, str, list[str]]:
    """(from, id column, where terms) of the runs meeting the filters, driven by the first
    filter's index range and checking the others run by run."""
    if not filters:
        return "runs", "runs.id", []
    key, predicate = filters[0]
    # The key goes into the driving predicate (into each branch of an OR), so that each
    # branch is an index range of its own.
    return ("run_values v0", "v0.run_id",
            [predicate(q, "v0", lambda: f"v0.key = {q.p(key)}"), *_matching(q, "v0.run_id", filters[1:])])


def _where(terms: list[str]) -> str:
    return (" WHERE " + " AND ".join(terms)) if terms else ""


def _page(q: _Q, sql: str, limit: int | None, offset: int) -> Stmt:
    if limit is not None:
        sql += f" LIMIT {q.p(limit)}"
        if offset:
            sql += f" OFFSET {q.p(offset)}"
    elif offset:
        sql += " LIMIT -1" if q.dialect == "sqlite" else " LIMIT ALL"
        sql += f" OFFSET {q.p(offset)}"
    return sql, q.params


def count(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None = None) -> Stmt:
    """The number of runs that meet the conditions."""
    q = _Q(dialect)
    source, _, terms = _driven(q, _filters(conditions, labels))
    return f"SELECT count(*) FROM {source}{_where(terms)}", q.params


def statement(dialect: str, conditions: Sequence[Condition], *, labels: dict[str, str] | None = None,
              sort: str | None = None, limit: int | None = None, offset: int = 0,
              sort_kind: str = "mixed") -> Stmt:
    """The SELECT of the matching run ids (one page).

    ``sort_kind`` says what the sort field holds: ``n`` (numbers only) or ``s`` (strings
    only) read the page off the field's index (the runs that have the field; the caller
    adds the others, see :func:`absent`); ``mixed`` sorts every match.
    """
    q = _Q(dialect)
    filters = _filters(conditions, labels)
    if sort:
        direction = "DESC" if sort.startswith("-") else "ASC"
        key = sort.lstrip("-")
        if sort_kind in ("n", "s"):
            column = "s.num" if sort_kind == "n" else q.collate("s.txt")
            terms = [f"s.key = {q.p(key)}", *_matching(q, "s.run_id", filters)]
            sql = f"SELECT s.run_id FROM run_values s{_where(terms)} ORDER BY {column} {direction}, s.run_id ASC"
            return _page(q, sql, limit, offset)
        join_key = q.p(key)  # the join's parameter comes first in the text
        text = q.collate("CASE WHEN s.kind = 'n' THEN NULL ELSE s.txt END")
        source, ids, terms = _driven(q, filters)
        sql = (f"SELECT {ids} FROM {source} LEFT OUTER JOIN run_values s ON s.run_id = {ids} AND s.key = {join_key}"
               f"{_where(terms)} ORDER BY s.run_id IS NULL, "
               f"CASE WHEN s.kind = 'n' THEN 0 ELSE 1 END {direction}, "
               f"CASE WHEN s.kind = 'n' THEN s.num END {direction}, "
               f"{text} {direction}, {ids} ASC")
        return _page(q, sql, limit, offset)
    source, ids, terms = _driven(q, filters)
    sql = f"SELECT {ids} FROM {source}{_where(terms)}"
    if limit is not None:
        # The last N by id (oldest first once turned round by the caller).
        return _page(q, sql + f" ORDER BY {ids} DESC", limit, offset)
    return _page(q, sql + f" ORDER BY {ids} ASC", None, offset)


def absent(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str,
           limit: int | None, offset: int) -> Stmt:
    """The matching runs without the sort field, in id order (they come last either way)."""
    q = _Q(dialect)
    source, ids, terms = _driven(q, _filters(conditions, labels))
    terms.append(f"NOT EXISTS (SELECT 1 FROM run_values s WHERE s.run_id = {ids} AND s.key = {q.p(sort.lstrip('-'))})")
    return _page(q, f"SELECT {ids} FROM {source}{_where(terms)} ORDER BY {ids} ASC", limit, offset)


def present_count(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str) -> Stmt:
    q = _Q(dialect)
    terms = [f"s.key = {q.p(sort.lstrip('-'))}", *_matching(q, "s.run_id", _filters(conditions, labels))]
    return f"SELECT count(*) FROM run_values s{_where(terms)}", q.params


def sort_kind(key: str) -> Stmt:
    """The kinds other than numbers the sort field holds (none: numbers only)."""
    return "SELECT DISTINCT kind FROM run_values WHERE key = ? AND kind <> 'n'", [key]


def has_numbers(key: str) -> Stmt:
    return "SELECT 1 FROM run_values WHERE key = ? AND num IS NOT NULL LIMIT 1", [key]


def odd_keys(keys: Sequence[str]) -> Stmt:
    """The keys among ``keys`` with a value SQL cannot compare exactly (kind ``o``)."""
    wanted = list(dict.fromkeys(keys))
    # Both terms on kind: the first lets the partial index run_values_kinds serve it.
    return (f"SELECT key FROM run_values WHERE key IN ({', '.join('?' * len(wanted))}) AND kind <> 'n' "
            "AND kind = 'o' LIMIT 1", wanted)
