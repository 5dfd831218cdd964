"""The run directory: how a run's own process reports back, without touching the store.

``envcap run`` gives the command ``ENVCAP_RUN_DIR``; two files there are read when the
command ends:

- ``metrics.jsonl``: one JSON object a line, ``{"name": ..., "value": ..., "step": ...}``
  (``step`` optional), written by the script itself or by ``envcap.log_metric``; a
  point may declare how a rebuild compares its metric: ``"reproducible": false`` (not
  expected to reproduce: a timing, a throughput) or ``"rtol": REL`` (its own relative
  tolerance);
- ``events.jsonl``: what the Python API learnt (parameters, seeds, datasets, notes).

Lines are appended with one ``write`` each to a file opened with ``O_APPEND``, so
several processes of one run (data-loader workers, ranks) can report at once. This
module uses the standard library only: it is what a script imports to report.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterator

METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
MAX_LINE = 1 << 20


def append(directory: str, name: str, obj: dict[str, Any]) -> None:
    line = json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def metric_value(value: Any) -> Any:
    """A metric as recorded: a number; NaN and infinities as the strings JSON allows."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        for attr in ("item",):  # numpy and torch scalars, without importing either
            method = getattr(value, attr, None)
            if callable(method):
                value = method()
                break
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a metric's value must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def metric_line(name: str, value: Any, step: int | None = None, *, reproducible: bool = True,
                rtol: float | None = None) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise TypeError("a metric's name must be non-empty text")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise TypeError("a metric's step must be an integer")
    line: dict[str, Any] = {"name": name, "value": metric_value(value), "time": round(time.time(), 3)}
    if step is not None:
        line["step"] = step
    line.update(expectation(reproducible, rtol))
    return line


def expectation(reproducible: Any = True, rtol: Any = None) -> dict[str, Any]:
    """How a rebuild is to compare a metric, as a point keeps it (nothing for the default:
    exactly). A metric not expected to reproduce has no tolerance."""
    if not isinstance(reproducible, bool):
        raise TypeError("reproducible must be true or false")
    if not reproducible:
        if rtol is not None:
            raise TypeError("a metric not expected to reproduce takes no tolerance")
        return {"reproducible": False}
    if rtol is None:
        return {}
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (0 <= rtol < math.inf):
        raise TypeError("rtol must be a finite number of at least 0")
    return {"rtol": rtol}


def read_lines(directory: str, name: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, problem or None) for each line of a file."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE:
                yield number, None, f"{name} line {number}: longer than {MAX_LINE} bytes"
                continue
            try:
                yield number, json.loads(raw), None
            except ValueError as exc:
                yield number, None, f"{name} line {number}: not JSON ({exc})"


def read_metrics(directory: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The metric points of a run, in the order written, and the lines that were not."""
    points: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, obj, problem in read_lines(directory, METRICS):
        if problem:
            problems.append(problem)
            continue
        try:
            if not isinstance(obj, dict):
                raise TypeError("not a JSON object")
            point = {"name": obj["name"], "value": metric_value(obj["value"])}
            if not isinstance(point["name"], str) or not point["name"]:
                raise TypeError("name must be non-empty text")
            if obj.get("step") is not None:
                if isinstance(obj["step"], bool) or not isinstance(obj["step"], int):
                    raise TypeError("step must be an integer")
                point["step"] = obj["step"]
            if isinstance(obj.get("time"), (int, float)):
                point["time"] = obj["time"]
            point.update(expectation(obj.get("reproducible", True), obj.get("rtol")))
            points.append(point)
        except (KeyError, TypeError) as exc:
            problems.append(f"{METRICS} line {number}: {exc if isinstance(exc, TypeError) else f'no {exc}'}")
    return points, problems


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each metric (by step where steps are given, else by order)."""
    last: dict[str, tuple[int, int, Any]] = {}
    for order, p in enumerate(points):
        key = (p.get("step", -1), order)
        if p["name"] not in last or key >= last[p["name"]][:2]:
            last[p["name"]] = (key[0], key[1], p["value"])
    return {name: v[2] for name, v in sorted(last.items())}


def metrics_log_bytes(points: list[dict[str, Any]]) -> bytes:
    """The metric points as stored: one canonical JSON object a line."""
    return b"".join(
        json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        for p in points
    )
