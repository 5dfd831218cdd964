"""What the pages and the API show, as plain JSON values, read through the store's functions.

Runs are read only through :mod:`envcap.store.runs` (``page_ids``, ``count``,
``record_ids``, ``load``, ``load_object``, ``notes``, ``reproductions``), manifests
through :func:`envcap.store.resolve.resolve_manifest`, the fleet through
:mod:`envcap.compare.fleet`: none of this knows which backend the store is.

Every page is a query: a listing, filtered by the ``--where`` grammar of ``envcap runs``
and sorted by any field, is answered by the store's database
(:meth:`envcap.store.base.IndexStore.search_runs`), and only the records of the page
shown are read; nothing is kept in memory between requests. The experiment page reads
the records of the runs its filter selects (a fixed sample of them past
:data:`EXPERIMENT_RUNS`).
"""

from __future__ import annotations

import json
import math
import random
import re
from typing import Any, Iterable, Sequence

from ..core.errors import EnvcapError, NotFoundError, UsageError
from ..runs.query import Condition, find_run_ids, find_runs, load_views, lookup, run_json
from ..store import runs as runs_store
from ..store.base import MAX_ROWS, StoreBackend

DEFAULT_SORT = "-id"  # newest first: run ids sort by their start time
MAX_LIMIT = 500
EXPERIMENT_RUNS = 5000  # runs the importance estimate and the charts of an experiment use, at most
KEY_COLUMNS = 6  # parameters and metrics shown as columns of the runs table, each


def parse_where(where: Iterable[str]) -> list[str]:
    """The non-empty conditions, each checked now (a bad one is a :class:`UsageError`)."""
    kept = [w.strip() for w in where if w and w.strip()]
    for w in kept:
        Condition.parse(w)
    return kept


def view(store: StoreBackend, run_id: str) -> dict[str, Any]:
    from ..runs.query import mark_key

    return mark_key(store, [run_json(runs_store.load(store, run_id), runs_store.notes(store, run_id),
                                     runs_store.reproductions(store, run_id))])[0]


def listed_view(store: StoreBackend, run_id: str) -> dict[str, Any]:
    """A run's view for a listing: from its index row, marked unreadable, when its record
    cannot be read (one bad record does not hide the others)."""
    try:
        return view(store, run_id)
    except EnvcapError as exc:
        return runs_store.index_view(store, run_id, str(exc))


def list_runs(store: StoreBackend, *, where: Iterable[str] = (), sort: str | None = None,
              offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of runs that meet every condition, sorted, with the total that do."""
    conditions = parse_where(where)
    sort = sort or DEFAULT_SORT
    if limit < 1 or limit > MAX_LIMIT or offset < 0:
        raise UsageError(f"limit must be 1 to {MAX_LIMIT} and offset at least 0")
    offset = min(offset, MAX_ROWS)  # a page past every run there can be: an empty one
    key, descending = sort.lstrip("-"), sort.startswith("-")
    if not conditions and key in runs_store.INDEX_SORT:
        total = runs_store.count(store)
        shown = [listed_view(store, r) for r in
                 runs_store.page_ids(store, sort=key, descending=descending, limit=limit, offset=offset)]
    else:
        found = find_runs(store, where=conditions, sort=sort, limit=limit, offset=offset)
        total, shown = int(found.total or 0), found.views
    rows = [row(v) for v in shown]
    return {
        "total": total, "offset": offset, "limit": limit, "sort": sort, "where": conditions,
        "columns": {"params": _names(r["params"] for r in rows), "metrics": _names(r["metrics"] for r in rows)},
        "runs": rows,
    }


def row(v: dict[str, Any]) -> dict[str, Any]:
    """A run as one row of the runs table."""
    return {
        "id": v["id"], "status": v["status"], "started_at": v.get("started_at") or "",
        "duration_s": v.get("duration_s"), "exit_code": v.get("exit_code"), "command": v.get("command") or "",
        "host": v.get("host"),
        "git_commit": (v.get("git") or {}).get("commit"), "env_id": v.get("env_id"),
        "labels": dict(v.get("labels") or {}),
        "params": {p["name"]: p["value"] for p in v.get("params") or ()},
        "metrics": dict(v.get("metrics") or {}),
        "notes": len(v.get("notes") or ()),
        "key": bool(v.get("key")),
    }


def _names(dicts: Iterable[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for name in d:
            seen.setdefault(name, None)
    return list(seen)[:KEY_COLUMNS]


# -- one run -----------------------------------------------------------------------------


def run_page(store: StoreBackend, ref: str) -> dict[str, Any]:
    """Everything the page of one run shows: its JSON, its environment, its metric curves."""
    run_id = runs_store.resolve(store, ref)
    data = view(store, run_id)
    return {"run": data, "environment": environment(store, data), "curves": curves(store, data),
            "resources": resources(data), "diff_text": diff_text(store, data)}


DIFF_SHOWN = 200_000  # characters of an uncommitted diff shown on the page


def diff_text(store: StoreBackend, v: dict[str, Any]) -> str | None:
    """The run's uncommitted diff as text (cut at :data:`DIFF_SHOWN` characters), or None."""
    diff = (v.get("git") or {}).get("diff") or {}
    if not diff.get("object"):
        return None
    text = store.get_object(diff["object"]).decode("utf-8", errors="replace")
    return text if len(text) <= DIFF_SHOWN else text[:DIFF_SHOWN] + "\n… (cut; envcap export has all of it)"


def environment(store: StoreBackend, v: dict[str, Any]) -> dict[str, Any] | None:
    """The summary lines of the run's environment (None when it has none or it is gone)."""
    manifest = _manifest(store, v)
    if manifest is None:
        return None
    from ..capture.summary import summary_lines

    return {"id": manifest.id, "env_id": manifest.env_id, "platform_id": manifest.platform_id,
            "snapshot": v.get("snapshot"), "labels": dict(manifest.labels),
            "summary": [line.strip() for line in summary_lines(manifest) if line.strip()]}


def _manifest(store: StoreBackend, v: dict[str, Any]) -> Any:
    """The run's environment as its own snapshot recorded it (its labels, host and time),
    not the newest snapshot of the same manifest, which another run may have taken."""
    if not v.get("manifest"):
        return None
    for ref in (v.get("snapshot"), v["manifest"]):
        if ref:
            try:
                return store.get(ref)
            except NotFoundError:
                continue
    return None


def manifest_json(store: StoreBackend, ref: str) -> dict[str, Any]:
    """A stored manifest by (a prefix of) its id, env_id or snapshot id, or a run's.

    Only the store is asked: a reference is never read as a file path here.
    """
    from ..core.run import looks_like_run_ref

    hexpart = ref.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]{4,64}", hexpart):
        manifest = store.get(ref)
    elif looks_like_run_ref(ref):
        manifest = _manifest(store, runs_store.load(store, runs_store.resolve(store, ref)).to_dict())
        if manifest is None:
            raise NotFoundError(f"run {ref} has no environment in this store")
    else:
        raise NotFoundError(f"{ref!r} is not a manifest id, run id or a prefix of one")
    return json.loads(manifest.to_json())


def curves(store: StoreBackend, v: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Each metric's logged points as [step, value] pairs (the order logged when no step)."""
    from ..core.run import RunRecord
    from ..runs.query import metric_history

    if not (v.get("metrics_log") or {}).get("object"):
        return {}
    record = RunRecord.from_dict({k: x for k, x in v.items() if k not in ("status", "notes", "reproduced_by")})
    out: dict[str, list[list[Any]]] = {}
    for name, points in metric_history(store, record).items():
        series = [[p["step"] if p["step"] is not None else i, p["value"]] for i, p in enumerate(points)
                  if _is_number(p["value"])]
        if series:
            out[str(name)] = series
    return out


GPU_SUMS = ("peak_memory_mib", "energy_j")  # the GPU figures added up over a run's devices


def resources(v: dict[str, Any]) -> dict[str, float]:
    """A run's resource figures by name: its duration, and every number in its
    ``resources`` summary where the record has one (nested names joined with dots; the
    GPU devices' peak memory and energy added up, as ``resources.gpu.…``)."""
    found: dict[str, float] = {}
    if _is_number(v.get("duration_s")):
        found["duration_s"] = v["duration_s"]

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, sub in value.items():
                walk(sub, f"{path}.{k}")
        elif _is_number(value):
            found[path] = value

    summary = v.get("resources") or {}
    walk(summary, "resources")  # a list (the GPU devices) is not walked
    devices = summary.get("gpu") if isinstance(summary, dict) else None
    if isinstance(devices, list):
        # Memory and energy of every GPU the run used, added up over the devices.
        for key in GPU_SUMS:
            values = [d[key] for d in devices if isinstance(d, dict) and _is_number(d.get(key))]
            if values:
                found[f"resources.gpu.{key}"] = sum(values)
    return found


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- comparing runs ----------------------------------------------------------------------


def compare(store: StoreBackend, refs: Sequence[str]) -> dict[str, Any]:
    """Two or more runs side by side: parameters, metrics, curves, environment diffs."""
    if len(refs) < 2:
        raise UsageError("choose at least two runs to compare")
    ids = [runs_store.resolve(store, r) for r in refs]
    views = [view(store, r) for r in ids]
    params = [{p["name"]: p["value"] for p in v.get("params") or ()} for v in views]
    metrics = [dict(v.get("metrics") or {}) for v in views]
    all_curves = [curves(store, v) for v in views]
    names = _names_all(all_curves)
    return {
        "runs": [row(v) for v in views],
        "params": _side_by_side(params),
        "metrics": _side_by_side(metrics),
        "resources": _side_by_side([resources(v) for v in views]),
        "curves": {name: [{"run": v["id"], "points": c.get(name, [])} for v, c in zip(views, all_curves)]
                   for name in names},
        "environment": _env_diffs(store, views),
    }


def _names_all(dicts: Iterable[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for name in d:
            seen.setdefault(name, None)
    return list(seen)


def _side_by_side(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    missing = object()
    rows = []
    for name in _names_all(dicts):
        values = [d.get(name, missing) for d in dicts]
        differs = len({json.dumps(x, sort_keys=True) if x is not missing else "\0" for x in values}) > 1
        rows.append({"name": name, "values": [None if x is missing else x for x in values],
                     "present": [x is not missing for x in values], "differs": differs})
    return rows


def _env_diffs(store: StoreBackend, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's environment against the first run's (the numerically sensitive changes marked)."""
    from ..compare.diff import describe, diff_manifests

    base = _manifest(store, views[0])
    out = []
    for v in views[1:]:
        other = _manifest(store, v)
        entry: dict[str, Any] = {"a": views[0]["id"], "b": v["id"]}
        if base is None or other is None:
            entry.update(available=False, identical=None, changes=[], sensitive=0)
        else:
            d = diff_manifests(base, other, a_ref=views[0]["id"], b_ref=v["id"])
            entry.update(available=True, identical=d.identical, sensitive=len(d.sensitive), changes=[
                {"layer": c.layer, "section": c.section, "kind": c.kind, "path": c.path, "package": c.package,
                 "text": describe(c, "A", "B"), "sensitive": c.sensitive} for c in d.changes
            ])
        out.append(entry)
    return out


# -- across the runs of one experiment ---------------------------------------------------


def experiment(store: StoreBackend, *, where: Iterable[str] = (), metric: str | None = None,
               resource: str | None = None, method: str | None = None, goal: str | None = None) -> dict[str, Any]:
    """The runs a filter selects taken as one experiment (see :func:`experiment_of`).

    The filter is answered by the database; only the selected runs' records are read,
    and past :data:`EXPERIMENT_RUNS` of them a fixed sample (the same on every reload)."""
    conditions = parse_where(where)
    ids = find_run_ids(store, where=conditions)
    selected = len(ids)
    if selected > EXPERIMENT_RUNS:
        # A forest over 100,000 runs, or as many lines in one chart, helps nobody.
        ids = sorted(random.Random(0).sample(ids, EXPERIMENT_RUNS))
    chosen = load_views(store, ids)
    found = experiment_of(chosen, where=conditions, metric=metric, resource=resource, method=method, goal=goal)
    if selected > len(chosen):
        found["runs"] = selected
        found["sampled"] = {"of": selected, "kept": len(chosen)}
    return found


def experiment_of(chosen: Sequence[dict[str, Any]], *, where: Sequence[str] = (), metric: str | None = None,
                  resource: str | None = None, method: str | None = None, goal: str | None = None) -> dict[str, Any]:
    """Runs (their JSON views) taken as one experiment: parameter importance for a metric,
    the interactions of parameters, the parallel-coordinates rows and the metric against a
    resource figure with its Pareto front. A pure function of the views."""
    from .importance import DEFAULT_METHOD, GOALS, METHODS, RESOURCE_NAMES, analyze

    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if goal is not None and goal not in GOALS:
        raise UsageError(f"goal must be max or min, not {goal!r}")
    metrics = _names_all({k: v for k, v in (c.get("metrics") or {}).items() if _is_number(v)} for c in chosen)
    if metric is None and metrics:
        metric = metrics[0]
    if metric is not None and metric not in metrics:
        raise NotFoundError(f"no run of these has a numeric metric {metric!r}"
                         + (f" (metrics: {', '.join(metrics)})" if metrics else ""))
    figures = [resources(v) for v in chosen]
    found = _names_all(figures)
    resource_names = [n for n in RESOURCE_NAMES if n in found] + [n for n in found if n not in RESOURCE_NAMES]
    if resource is None and resource_names:
        resource = resource_names[0]
    if resource is not None and resource not in resource_names:
        raise NotFoundError(f"no run of these has the resource figure {resource!r}")
    result: dict[str, Any] = {
        "where": list(where), "runs": len(chosen), "metric": metric, "metrics": metrics,
        "resource": resource, "resources": resource_names,
        "resource_labels": {n: RESOURCE_NAMES.get(n, n) for n in resource_names},
        "method": method, "methods": dict(METHODS), "goal": goal, "goal_asked": goal,
        "importance": None, "interactions": None, "parallel": None, "scatter": [], "pareto": None, "sampled": None,
    }
    if metric is None:
        return result
    with_metric = [v for v in chosen if _is_number((v.get("metrics") or {}).get(metric))]
    if len(with_metric) > EXPERIMENT_RUNS:
        # A forest over 100,000 runs, or as many lines in one chart, helps nobody: a
        # fixed sample keeps the page quick and the same on every reload.
        result["sampled"] = {"of": len(with_metric), "kept": EXPERIMENT_RUNS}
        with_metric = sorted(random.Random(0).sample(with_metric, EXPERIMENT_RUNS), key=lambda v: v["id"])
    analysis = analyze(with_metric, metric, figures=[resources(v) for v in with_metric], resource=resource,
                       method=method, goal=goal)
    result.update(analysis)
    ranked = [p["name"] for p in result["importance"]["params"]]
    # The parameters not ranked (too few runs), but not the constant ones: an axis of one value says nothing.
    others = sorted({p["name"] for v in with_metric for p in v.get("params") or ()} - set(ranked)
                    - set(result["importance"]["constant"]))
    result["parallel"] = _parallel(with_metric, metric, ranked + others)
    return result


def _parallel(views: list[dict[str, Any]], metric: str, names: list[str]) -> dict[str, Any]:
    """Axes (parameters by importance, then the metric; a log axis where the values span
    decades) and one line per run."""
    from .importance import log_spaced

    axes = []
    for name in names:
        values = [lookup(v, f"params.{name}") for v in views]
        present = [x for x in values if isinstance(x, (int, float, str, bool)) or x is None]
        numeric = all(_is_number(x) for x in present if x is not None)
        cats = None if numeric else sorted({json.dumps(x) if not isinstance(x, str) else x for x in present
                                            if x is not None})
        log = numeric and log_spaced([float(x) for x in present if isinstance(x, (int, float))])
        axes.append({"name": name, "categories": cats, "log": log})
    metric_values = [v["metrics"][metric] for v in views]
    axes.append({"name": metric, "categories": None, "log": log_spaced(metric_values)})
    rows = []
    for v in views:
        line = []
        for axis in axes[:-1]:
            x = lookup(v, f"params.{axis['name']}")
            if axis["categories"] is None:
                line.append(x if _is_number(x) else None)
            else:
                line.append(None if x is None or not isinstance(x, (int, float, str, bool))
                            else (x if isinstance(x, str) else json.dumps(x)))
        line.append(v["metrics"][metric])
        rows.append({"run": v["id"], "values": line})
    return {"axes": axes, "rows": rows}


# -- the fleet ---------------------------------------------------------------------------


def drift(store: StoreBackend) -> dict[str, Any]:
    """Every key run, the drifted first, with its latest revalidation and why it drifted."""
    from ..runs.drift import key_runs

    found = [k.to_dict() for k in key_runs(store)]
    found.sort(key=lambda k: (not k["drift"], k["run"]))
    return {"key_runs": found, "drifted": sum(1 for k in found if k["drift"])}


def fleet(store: StoreBackend, *, cluster_label: str = "cluster") -> dict[str, Any]:
    """Which clusters run which environments, and the nodes that differ from their
    cluster's majority (``envcap fleet`` over the store)."""
    from ..compare.fleet import analyze, load_fleet

    report = analyze(load_fleet(store=store), cluster_label=cluster_label).to_dict()
    matrix = {}
    for layer, groups in report["layers"].items():
        names = [g["name"] for g in groups]
        matrix[layer] = {
            "groups": [{"name": g["name"], "id": g["id"], "description": g["description"], "nodes": g["nodes"],
                        "members": g["members"]} for g in groups],
            "clusters": [{"name": c["name"], "nodes": c["nodes"],
                          "counts": [c["groups"].get(layer, {}).get(n, 0) for n in names],
                          "majority": c["majority"].get(layer)} for c in report["clusters"]],
        }
    return {"cluster_label": cluster_label, "nodes": report["nodes"], "snapshots": report["snapshots"],
            "matrix": matrix, "outliers": report["outliers"], "splits": report["splits"],
            "rejected": report["rejected"]}
