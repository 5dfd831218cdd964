"""Which parameters matter for a metric, across the runs of one experiment.

The estimate is a random forest's (scikit-learn's ``RandomForestRegressor``) permutation
importance: the forest learns the metric from the parameters, then each parameter's
values are shuffled in turn and the drop in the forest's R² is that parameter's
importance. Permutation importance is used rather than the forest's impurity importance
because the latter favours parameters with many distinct values. Scores are clipped at
zero and scaled to sum to one. A parameter with one value across the runs cannot matter
here and is listed as constant. Text (and other non-numeric) values are categories,
encoded as integers; a run without a parameter has a missing value there, which the
forest handles.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from ..core.errors import UsageError

ESTIMATOR = "random forest permutation importance (scikit-learn RandomForestRegressor, 50 trees)"
MIN_RUNS = 5


def importance(views: Sequence[dict[str, Any]], metric: str, *, seed: int = 0) -> dict[str, Any]:
    """Each varying parameter's share of the metric's explained variation, most first."""
    try:
        import numpy as np
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.inspection import permutation_importance
    except ImportError as exc:
        raise UsageError("parameter importance needs scikit-learn: pip install 'envcap[ui]'") from exc

    runs = [v for v in views if _is_number((v.get("metrics") or {}).get(metric))]
    params = [{p["name"]: p["value"] for p in v.get("params") or ()} for v in runs]
    names = sorted({n for p in params for n in p})
    columns, kinds, constant = [], [], []
    for name in names:
        values = [p.get(name) for p in params]
        column, kind = _encode(values)
        if len({x for x in column if not math.isnan(x)}) <= 1:
            constant.append(name)
            continue
        columns.append((name, column))
        kinds.append(kind)
    result: dict[str, Any] = {"metric": metric, "estimator": ESTIMATOR, "runs": len(runs), "params": [],
                              "constant": constant, "r2": None}
    if len(runs) < MIN_RUNS or not columns:
        result["reason"] = (f"needs at least {MIN_RUNS} runs with the metric" if len(runs) < MIN_RUNS
                            else "no parameter varies across these runs")
        return result
    x = np.array([c for _, c in columns], dtype=float).T
    y = np.array([v["metrics"][metric] for v in runs], dtype=float)
    forest = RandomForestRegressor(n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(x, y)
    found = permutation_importance(forest, x, y, n_repeats=5, random_state=seed, n_jobs=1)
    scores = np.clip(found.importances_mean, 0, None)
    total = float(scores.sum())
    shares = scores / total if total > 0 else scores
    result["r2"] = float(forest.score(x, y))
    result["params"] = sorted(
        ({"name": name, "importance": float(s), "kind": kind} for (name, _), s, kind in zip(columns, shares, kinds)),
        key=lambda p: (-p["importance"], p["name"]),
    )
    return result


def _encode(values: list[Any]) -> tuple[list[float], str]:
    """A parameter's values as floats: numbers as they are, anything else as category codes."""
    present = [v for v in values if v is not None]
    if all(_is_number(v) or isinstance(v, bool) for v in present):
        return [float(v) if v is not None else math.nan for v in values], "numeric"
    codes: dict[str, int] = {}
    for v in present:
        codes.setdefault(json.dumps(v, sort_keys=True), len(codes))
    return [float(codes[json.dumps(v, sort_keys=True)]) if v is not None else math.nan for v in values], "categorical"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
