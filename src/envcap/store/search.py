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
    text_eq = txt == sa.literal(raw, sa.Text)
    if _is_number(wanted):
        w = _number(wanted)
        # A number against a number; a boolean equals 1 or 0; strings by text or id prefix.
        parts = [sa.and_(kind == "n", num == w), sa.and_(kind == "b", num == w)]
    elif isinstance(wanted, bool):
        parts = [sa.and_(kind.in_(("n", "b")), num == float(wanted))]
    else:
        parts = []
    parts.append(text_eq)
    if isinstance(wanted, str) and wanted != raw:
        parts.append(sa.and_(kind == "s", txt == sa.literal(wanted, sa.Text)))
    if len(raw) >= 4:
        bare = raw.removeprefix("sha256:")
        parts.append(sa.and_(v.c.idlike == 1, sa.or_(
            _prefix(txt, 1, raw),
            sa.and_(_prefix(txt, 1, "sha256:"), _prefix(txt, 8, bare)),
            sa.and_(sa.not_(_prefix(txt, 1, "sha256:")), _prefix(txt, 1, bare)),
        )))
    if _is_number(wanted):
        # Two numbers compare as numbers only: the text and prefix forms are for the rest.
        return sa.or_(sa.and_(kind == "n", num == _number(wanted)),
                      sa.and_(kind != "n", sa.or_(*parts[1:])))
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
        return sa.and_(v.c.kind == "n", getattr(v.c.num, method)(_number(wanted)))
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


def statement(dialect: str, conditions: Sequence[Condition], *, labels: dict[str, str] | None = None,
              sort: str | None = None, limit: int | None = None, offset: int = 0,
              count: bool = False) -> Any:
    """The SELECT of the matching run ids (one page), or of their number."""
    runs, rv = schema.runs, schema.run_values
    where = []
    for field, op, raw in conditions:
        v = rv.alias()
        where.append(runs.c.id.in_(sa.select(v.c.run_id).where(v.c.key == field, _predicate(dialect, v, op, raw))))
    for key, value in (labels or {}).items():
        v = rv.alias()
        where.append(runs.c.id.in_(sa.select(v.c.run_id).where(
            v.c.key == f"labels.{key}", v.c.kind == "s", v.c.txt == sa.literal(value, sa.Text))))
    if count:
        return sa.select(sa.func.count()).select_from(runs).where(*where)
    query = sa.select(runs.c.id).where(*where)
    if sort:
        descending = sort.startswith("-")
        s = rv.alias("s")
        query = query.select_from(runs.outerjoin(s, sa.and_(s.c.run_id == runs.c.id, s.c.key == sort.lstrip("-"))))
        group = sa.case((s.c.kind == "n", 0), else_=1)
        number = sa.case((s.c.kind == "n", s.c.num), else_=None)
        text: Any = sa.case((s.c.kind == "n", None), else_=s.c.txt)
        if dialect == "postgresql":
            text = sa.collate(text, "C")
        keys = [group, number, text]
        query = query.order_by(s.c.run_id.is_(None), *(k.desc() if descending else k.asc() for k in keys),
                               runs.c.id.asc())
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return query
    if limit is not None:
        # The last N by id (oldest first once turned round by the caller).
        return query.order_by(runs.c.id.desc()).limit(limit).offset(offset)
    query = query.order_by(runs.c.id.asc())
    return query.offset(offset) if offset else query


def odd_keys(keys: Sequence[str]) -> Any:
    """The keys among ``keys`` with a value SQL cannot compare exactly (kind ``o``)."""
    rv = schema.run_values
    return sa.select(rv.c.key).where(rv.c.key.in_(list(dict.fromkeys(keys))), rv.c.kind == "o").limit(1)
