"""A run's searchable values: the rows of the ``run_values`` table (see :mod:`.schema`).

Every value that ``--where`` and ``--sort`` reach by a *covered* path is a row: the
parameters, metrics and labels by name, the resource figures, and the record's own
fields. A condition on any other path (``git.untracked``, ``notes``, ``python.version``)
is answered from the records (:mod:`envcap.runs.query`); the store says which paths it
covers with :func:`covered`.

This module writes rows; it imports no SQL library, so that recording a run stays cheap.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Iterator, Mapping

# The record's own fields a condition is answered on in SQL, each a scalar in a record
# (the rarer ones, such as ``cwd`` or ``mode``, are answered from the records: a row per
# run and field costs the index more than those queries are worth).
FIELDS = ("id", "state", "status", "command", "host", "started_at", "ended_at", "duration_s", "exit_code", "signal",
          "manifest", "env_id", "platform_id", "params_id")
GIT_FIELDS = ("commit", "branch", "dirty")
KEYED = ("params", "metrics", "labels")
EXACT_INT = 2 ** 53
_ID = re.compile(r"[0-9a-f]{40,64}")
_CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]*")

Row = tuple[str, str, "float | None", str, int, "float | None", "float | None"]  # key, kind, num, txt, idlike, lo, hi


def covered(path: str) -> bool:
    """Whether every value at ``path`` is in the values table (a condition on it is SQL)."""
    head, _, rest = path.partition(".")
    if head in KEYED:
        return bool(rest)
    if path in FIELDS or (head == "git" and rest in GIT_FIELDS):
        return True
    if head == "resources":
        # A list index written as the lookup reads it ("01" reaches index 1 there).
        return all(not p.isdigit() or _CANONICAL_INDEX.fullmatch(p) for p in path.split("."))
    return False


def kind_of(value: Any) -> tuple[str, float | None]:
    """How a value compares in SQL: its kind and its number (see :mod:`.schema`)."""
    if isinstance(value, bool):
        # No number: ``num`` is set on numbers alone, so that a numeric condition reads
        # the (key, num) index without looking at the kind.
        return "b", None
    if value is None:
        return "z", None
    if isinstance(value, int):
        return ("n", float(value)) if -EXACT_INT < value < EXACT_INT else ("o", None)
    if isinstance(value, float):
        return ("n", value) if math.isfinite(value) else ("o", None)
    if isinstance(value, str):
        return "s", None
    return "o", None


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def looks_like_id(value: str) -> bool:
    return value.startswith("sha256:") or _ID.fullmatch(value) is not None


def row(key: str, value: Any, lo: float | None = None, hi: float | None = None) -> Row:
    kind, num = kind_of(value)
    return (key, kind, num, text_of(value), int(kind == "s" and looks_like_id(value)), lo, hi)


def rows(view: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]] | None = None) -> list[Row]:
    """The values of a run's JSON view (``RunRecord.to_dict()`` with ``status``)."""
    out: dict[str, Row] = {}
    for name in FIELDS:
        if name in view:
            out[name] = row(name, view[name])
    git = view.get("git")
    if isinstance(git, dict):
        for name in GIT_FIELDS:
            if name in git:
                out["git." + name] = row("git." + name, git[name])
    for p in view.get("params") or ():
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            key = "params." + p["name"]
            if key not in out:  # the first of a name, as the lookup finds it
                out[key] = row(key, p.get("value"))
    for head in ("metrics", "labels"):
        section = view.get(head)
        if isinstance(section, dict):
            for name, value in section.items():
                lo = hi = None
                if head == "metrics" and ranges and name in ranges:
                    lo, hi = ranges[name]
                out[f"{head}.{name}"] = row(f"{head}.{name}", value, lo, hi)
    if "resources" in view:
        for key, value in _walk(view["resources"], "resources"):
            out[key] = row(key, value)
    return list(out.values())


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, sub in value.items():
            if isinstance(k, str) and "." not in k:  # a dotted key no path can reach
                yield from _walk(sub, f"{path}.{k}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _walk(sub, f"{path}.{i}")


def metric_ranges(log: bytes) -> dict[str, tuple[float, float]]:
    """Each metric's least and greatest finite value in a metrics log (JSON lines)."""
    out: dict[str, tuple[float, float]] = {}
    for line in log.splitlines():
        try:
            point = json.loads(line)
            name, value = point["name"], point["value"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if not isinstance(name, str):
            continue
        lo, hi = out.get(name, (value, value))
        out[name] = (min(lo, value), max(hi, value))
    return out


def statements(run_id: str, values: Iterable[Row]) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL that replaces a run's values (both backends run it as it is)."""
    out: list[tuple[str, tuple[Any, ...]]] = [("DELETE FROM run_values WHERE run_id = ?", (run_id,))]
    out += [("INSERT INTO run_values (run_id, key, kind, num, txt, idlike, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             (run_id, *r)) for r in values]
    return out
