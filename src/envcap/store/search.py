"""``search_runs``: the ``--where`` grammar and ``--sort`` compiled to SQL (SQLAlchemy Core).

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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from . import schema, values as values_mod

Condition = tuple[str, str, str]  # field, operator (= != > >= < <= ~), raw value


class NotCompilable(Exception):
    """The query needs the records: the values table cannot answer it exactly."""


@dataclass(frozen=True, slots=True)
class Page:
    ids: list[str]
    total: int | None  # how many runs match in all (when asked for)


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


def _contains(dialect: str, col: Any, raw: str) -> Any:
    fn = sa.func.strpos if dialect == "postgresql" else sa.func.instr
    return fn(col, sa.literal(raw, sa.Text)) > 0


def _prefix(col: Any, start: int, text: str) -> Any:
    return sa.func.substr(col, sa.literal(start, sa.Integer), sa.literal(len(text), sa.Integer)) == \
        sa.literal(text, sa.Text)


def _equal(v: Any, raw: str, wanted: Any) -> Any:
    """SQL for the ``=`` of a value row ``v`` (any kind but ``o``) and RAW."""
    txt, num, kind = v.c.txt, v.c.num, v.c.kind
    parts = []
    if _is_number(wanted):
        # Two numbers compare as numbers only (``num`` is set on numbers alone); a
        # boolean equals 1 or 0; any other value by its text form or id prefix.
        w = _number(wanted)
        parts.append(sa.and_(num.is_not(None), num == w))  # never NULL: != negates it
        if w in (0.0, 1.0):
            parts.append(sa.and_(kind == "b", txt == ("true" if w == 1.0 else "false")))
    elif isinstance(wanted, bool):
        parts.append(sa.and_(num.is_not(None), num == float(wanted)))
    parts.append(txt == sa.literal(raw, sa.Text))
    if isinstance(wanted, str) and wanted != raw:
        parts.append(sa.and_(kind == "s", txt == sa.literal(wanted, sa.Text)))
    if len(raw) >= 4:
        bare = raw.removeprefix("sha256:")
        parts.append(sa.and_(v.c.idlike == 1, sa.or_(
            _prefix(txt, 1, raw),
            sa.and_(_prefix(txt, 1, "sha256:"), _prefix(txt, 8, bare)),
            sa.and_(sa.not_(_prefix(txt, 1, "sha256:")), _prefix(txt, 1, bare)),
        )))
    return sa.or_(*parts)


_OPS = {">": "__gt__", ">=": "__ge__", "<": "__lt__", "<=": "__le__"}


def _predicate(dialect: str, v: Any, op: str, raw: str) -> Any:
    """SQL that a value row meets ``OP RAW``."""
    wanted = _wanted(raw)
    if op == "~":
        return _contains(dialect, v.c.txt, raw)
    if op in ("=", "!="):
        eq = _equal(v, raw, wanted)
        return eq if op == "=" else sa.not_(eq)
    method = _OPS[op]
    if _is_number(wanted):
        return getattr(v.c.num, method)(_number(wanted))  # NULL (false) on anything but a number
    if isinstance(wanted, str):
        return sa.and_(v.c.kind == "s", getattr(v.c.txt, method)(sa.literal(wanted, sa.Text)))
    return sa.false()


def keys_of(conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str | None) -> list[str]:
    keys = [c[0] for c in conditions] + [f"labels.{k}" for k in (labels or {})]
    if sort:
        keys.append(sort.lstrip("-"))
    for key in keys:
        if not values_mod.covered(key):
            raise NotCompilable(f"{key} is not in the values table")
    return keys


def _filters(dialect: str, conditions: Sequence[Condition],
             labels: dict[str, str] | None) -> list[tuple[str, Any]]:
    """(key, predicate on a value row) of each condition and label."""
    out: list[tuple[str, Any]] = []
    for field, op, raw in conditions:
        out.append((field, lambda v, op=op, raw=raw: _predicate(dialect, v, op, raw)))
    for key, value in (labels or {}).items():
        out.append((f"labels.{key}", lambda v, value=value: sa.and_(v.c.kind == "s",
                                                                   v.c.txt == sa.literal(value, sa.Text))))
    return out


def _matching(run_id: Any, filters: list[tuple[str, Any]]) -> list[Any]:
    """Terms that the run ``run_id`` names meets every filter (each a lookup by key)."""
    rv = schema.run_values
    out = []
    for key, predicate in filters:
        v = rv.alias()
        out.append(sa.exists().where(v.c.run_id == run_id, v.c.key == key, predicate(v)))
    return out


def _driven(filters: list[tuple[str, Any]]) -> tuple[Any, Any, list[Any]]:
    """(from, id column, where) of the runs meeting the filters, driven by the first
    filter's index range and checking the others run by run."""
    if not filters:
        return schema.runs, schema.runs.c.id, []
    v0 = schema.run_values.alias("v0")
    key, predicate = filters[0]
    return v0, v0.c.run_id, [v0.c.key == key, predicate(v0), *_matching(v0.c.run_id, filters[1:])]


def count(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None = None) -> Any:
    """The number of runs that meet the conditions."""
    source, _, where = _driven(_filters(dialect, conditions, labels))
    return sa.select(sa.func.count()).select_from(source).where(*where)


def statement(dialect: str, conditions: Sequence[Condition], *, labels: dict[str, str] | None = None,
              sort: str | None = None, limit: int | None = None, offset: int = 0,
              count: bool = False, sort_kind: str = "mixed") -> Any:
    """The SELECT of the matching run ids (one page).

    ``sort_kind`` says what the sort field holds: ``n`` (numbers only) or ``s`` (strings
    only) read the page off the field's index (``present``: the runs that have it; the
    caller adds the others, see :func:`absent`); ``mixed`` sorts every match.
    """
    filters = _filters(dialect, conditions, labels)
    if sort and sort_kind in ("n", "s"):
        descending = sort.startswith("-")
        s = schema.run_values.alias("s")
        column: Any = s.c.num if sort_kind == "n" else s.c.txt
        if dialect == "postgresql" and sort_kind == "s":
            column = sa.collate(column, "C")
        query = (sa.select(s.c.run_id).where(s.c.key == sort.lstrip("-"), *_matching(s.c.run_id, filters))
                 .order_by(column.desc() if descending else column.asc(), s.c.run_id.asc()))
        return _page(query, limit, offset)
    source, ids, where = _driven(filters)
    query = sa.select(ids).select_from(source).where(*where)
    if sort:
        descending = sort.startswith("-")
        s = schema.run_values.alias("s")
        query = query.select_from(source.outerjoin(s, sa.and_(s.c.run_id == ids, s.c.key == sort.lstrip("-"))))
        group = sa.case((s.c.kind == "n", 0), else_=1)
        number = sa.case((s.c.kind == "n", s.c.num), else_=None)
        text: Any = sa.case((s.c.kind == "n", None), else_=s.c.txt)
        if dialect == "postgresql":
            text = sa.collate(text, "C")
        keys = [group, number, text]
        query = query.order_by(s.c.run_id.is_(None), *(k.desc() if descending else k.asc() for k in keys), ids.asc())
        return _page(query, limit, offset)
    if limit is not None:
        # The last N by id (oldest first once turned round by the caller).
        return _page(query.order_by(ids.desc()), limit, offset)
    return _page(query.order_by(ids.asc()), None, offset)


def absent(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str,
           limit: int | None, offset: int) -> Any:
    """The matching runs without the sort field, in id order (they come last either way)."""
    filters = _filters(dialect, conditions, labels)
    source, ids, where = _driven(filters)
    s = schema.run_values.alias("s")
    missing = ~sa.exists().where(s.c.run_id == ids, s.c.key == sort.lstrip("-"))
    return _page(sa.select(ids).select_from(source).where(*where, missing).order_by(ids.asc()), limit, offset)


def present_count(dialect: str, conditions: Sequence[Condition], labels: dict[str, str] | None, sort: str) -> Any:
    s = schema.run_values.alias("s")
    filters = _filters(dialect, conditions, labels)
    return sa.select(sa.func.count()).select_from(s).where(s.c.key == sort.lstrip("-"),
                                                           *_matching(s.c.run_id, filters))


def sort_kind(key: str) -> Any:
    """The kinds other than numbers the sort field holds (none: numbers only)."""
    rv = schema.run_values
    return sa.select(rv.c.kind).where(rv.c.key == key, rv.c.kind != "n").group_by(rv.c.kind)


def has_numbers(key: str) -> Any:
    rv = schema.run_values
    return sa.select(rv.c.run_id).where(rv.c.key == key, rv.c.kind == "n").limit(1)


def _page(query: Any, limit: int | None, offset: int) -> Any:
    if limit is not None:
        query = query.limit(limit)
    return query.offset(offset) if offset else query


def odd_keys(keys: Sequence[str]) -> Any:
    """The keys among ``keys`` with a value SQL cannot compare exactly (kind ``o``)."""
    rv = schema.run_values
    # Both terms on kind: the first lets the partial index run_values_kinds serve it.
    return sa.select(rv.c.key).where(rv.c.key.in_(list(dict.fromkeys(keys))), rv.c.kind != "n",
                                     rv.c.kind == "o").limit(1)
