"""Which parameters matter for a metric, which matter together, and what the good runs cost.

Everything here is a pure function of the selected runs' JSON views (their ``params``,
``metrics`` and resource figures); nothing reads the store. :func:`analyze` is what the
experiment page, ``/api/importance`` and ``envcap importance`` show.

- **Importance**, by default by functional ANOVA (fANOVA; Hutter, Hoos and Leyton-Brown,
  2014) through Optuna's maintained evaluator, ``optuna.importance.FanovaImportanceEvaluator``:
  a random forest learns the metric from the parameters, and a parameter's importance is
  the fraction of the forest's variance over the parameter space that its main effect
  alone explains. What the main effects leave unexplained is interactions (and noise).
  Each value is the mean over :data:`FITS` fits with different seeds, with their standard
  deviation as its spread. The option ``permutation`` is the random forest permutation
  importance the page showed before (scikit-learn, the drop in R² when a parameter's values
  are shuffled, scaled to sum to one), its spread likewise over several forests.
- **Interactions**: Friedman's H statistic (Friedman and Popescu, 2008) of every pair of
  parameters, from the partial dependence of a gradient-boosted tree model (scikit-learn's
  ``HistGradientBoostingRegressor``) evaluated at a sample of the runs. The strength shown
  is the unnormalised H: the root mean square of the pair's pure interaction part
  ``PD_jk - PD_j - PD_k``, in the metric's units, so that a pair of weak parameters does
  not look strong (the normalised H², that part's share of the pair's joint partial
  dependence variance, is given beside it). The strongest pair gets a two-dimensional
  partial dependence plot.
- **Resources**: the metric against a resource figure with the Pareto front marked
  (the runs no other run beats on both: less of the resource and a better metric).

Parameters: numbers are numeric, on a log scale (their log10 is what the models see, and
fANOVA integrates over) when they are log-spaced (:func:`log_spaced`: all positive, the
largest at least :data:`LOG_RATIO` times the smallest, the median nearer the middle on
a log scale than on a linear one); anything else (text, booleans, lists) is
categorical. A parameter with one value across the runs is left out and listed as
constant. A run without a numeric parameter is given the parameter's median (counted in
``absent``); a missing categorical one is the category ``(absent)`` (so is a parameter
that some runs have, all with one value, and others lack: two categories).

The heavy libraries (numpy, scikit-learn, optuna) are imported only when this runs; the
fits of one selection are kept (:data:`CACHE_SIZE` selections), keyed by a hash of what
they are fitted to, so a reload or another resource costs no refit.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

from ..core.errors import UsageError

MIN_RUNS = 5
FITS = 5  # fits per importance estimate: the spread is their standard deviation
LOG_RATIO = 100.0  # largest / smallest at which a positive parameter is log-spaced (two decades)
FANOVA_TREES = 8
FANOVA_DEPTH = 5
FOREST_TREES = 30  # the permutation importance's forests
H_SAMPLE = 40  # runs at which (and over which) the partial dependence is evaluated
PD_GRID = 16  # points per axis of the two-dimensional partial dependence
PD_CATEGORIES = 30  # categories shown on an axis of it, the most frequent
CACHE_SIZE = 32

METHODS = {
    "fanova": (f"fANOVA (Hutter et al. 2014) by Optuna's FanovaImportanceEvaluator ({FANOVA_TREES} trees, "
               f"depth {FANOVA_DEPTH}): the fraction of the metric's variance each parameter's main effect explains; "
               f"mean ± standard deviation over {FITS} fits"),
    "permutation": (f"random forest permutation importance (scikit-learn RandomForestRegressor, {FOREST_TREES} trees): "
                    f"the drop in R² when the parameter's values are shuffled, scaled to sum to one; "
                    f"mean ± standard deviation over {FITS} forests"),
}
DEFAULT_METHOD = "fanova"
INTERACTION_METHOD = ("Friedman's H statistic (Friedman & Popescu 2008), unnormalised: the root mean square of the "
                      "pair's pure interaction PD_jk − PD_j − PD_k in the metric's units, from the partial dependence "
                      "of a gradient-boosted tree model (scikit-learn HistGradientBoostingRegressor) at "
                      f"up to {H_SAMPLE} runs")
GOALS = ("max", "min")
# Metrics whose name says smaller is better (the page's default goal; ?goal= says otherwise).
_SMALLER = re.compile(r"(?<![a-z])(loss|losses|err|error|errors|rmse|mse|mae|mape|perplexity|ppl|regret|latency|wer|cer"
                      r"|time|runtime|duration|seconds|cost|nll)(?![a-z])", re.I)
ABSENT = "(absent)"

# The resource figures the page names, first in this order (others follow as found).
RESOURCE_NAMES = {
    "duration_s": "duration (s)",
    "resources.cpu_s": "CPU time (s)",
    "resources.peak_rss_mib": "peak memory (MiB)",
    "resources.gpu.peak_memory_mib": "GPU memory (MiB)",
    "resources.gpu.energy_j": "GPU energy (J)",
}


def default_goal(metric: str) -> str:
    """``min`` for a metric whose name says smaller is better (loss, error, ...), else ``max``."""
    return "min" if _SMALLER.search(metric) else "max"


@dataclass(frozen=True)
class Column:
    """One varying parameter, encoded for the models."""

    name: str
    kind: str  # "numeric", "log" or "categorical"
    x: tuple[float, ...]  # per run: the number, its log10, or the category's index
    categories: tuple[str, ...] | None
    absent: int  # runs without it (given the median, or the category ABSENT)

    @property
    def low(self) -> float:
        return min(self.x)

    @property
    def high(self) -> float:
        return max(self.x)

    def shown(self, x: float) -> Any:
        """An encoded value as a person reads it."""
        if self.categories is not None:
            return self.categories[int(x)]
        return float(10 ** x) if self.kind == "log" else float(x)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def label(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, ensure_ascii=False)


def spans_decades(values: Sequence[float]) -> bool:
    """Whether positive values span at least two decades (:data:`LOG_RATIO`)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_RATIO


def log_spaced(values: Sequence[float]) -> bool:
    """Whether a parameter's values are log-spaced: they span decades, and their median
    sits nearer the middle of their range on a log scale than on a linear one (values
    drawn uniformly from 0.001 to 0.5 span decades too, but are not log-spaced)."""
    if not spans_decades(values):
        return False
    ordered = sorted(values)
    low, high, median = ordered[0], ordered[-1], ordered[len(ordered) // 2]
    linear = (median - low) / (high - low)
    log = math.log(median / low) / math.log(high / low)
    return abs(log - 0.5) < abs(linear - 0.5)


# The runs with the metric, their varying parameters as columns, the constant ones.
Encoded = tuple[list[dict[str, Any]], list[Column], list[str]]


def encode(views: Sequence[dict[str, Any]], metric: str) -> Encoded:
    """The runs with the metric, their varying parameters as columns, the constant ones."""
    runs = [v for v in views if is_number((v.get("metrics") or {}).get(metric))]
    params = [{p["name"]: p["value"] for p in v.get("params") or ()} for v in runs]
    names = sorted({n for p in params for n in p})
    columns, constant = [], []
    for name in names:
        values = [p.get(name) for p in params]
        present = [v for v in values if v is not None]
        absent = len(values) - len(present)
        distinct = len({json.dumps(v, sort_keys=True) for v in present})
        if distinct + (1 if absent else 0) <= 1:
            constant.append(name)
            continue
        if distinct > 1 and all(is_number(v) for v in present):
            kind = "log" if log_spaced(present) else "numeric"
            encoded = [math.log10(v) if kind == "log" else float(v) for v in present]
            encoded.sort()
            middle = encoded[len(encoded) // 2]
            x = [(math.log10(v) if kind == "log" else float(v)) if v is not None else middle for v in values]
            columns.append(Column(name, kind, tuple(x), None, absent))
        else:
            labels = [label(v) if v is not None else ABSENT for v in values]
            categories = tuple(sorted(set(labels)))
            index = {c: i for i, c in enumerate(categories)}
            columns.append(Column(name, "categorical", tuple(float(index[c]) for c in labels), categories, absent))
    return runs, columns, constant


# -- the cache of fits -------------------------------------------------------------------

_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: list[Any], compute: Any) -> Any:
    digest = hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()
    with _cache_lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
    value = compute()
    with _cache_lock:
        _cache[digest] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _key(kind: str, columns: Sequence[Column], y: Sequence[float], *extra: Any) -> list[Any]:
    return [kind, [[c.name, c.kind, c.categories, c.x] for c in columns], list(y), *extra]


# The UI server's fit worker (envcap.ui.fitworker), when it has one; else the fits run here.
_worker: Any = None


def use_worker(worker: Any) -> None:
    """Run the fits in ``worker`` (a :class:`envcap.ui.fitworker.FitWorker`; None: here)."""
    global _worker
    _worker = worker


def _fit(kind: str, columns: Sequence[Column], y: Sequence[float], fits: int) -> Any:
    """The estimate ``kind`` ("fanova", "permutation" or "h"), from the worker or made here."""
    if _worker is not None:
        return _worker.fit(kind, columns, y, fits)
    return compute(kind, columns, y, fits)


def compute(kind: str, columns: Sequence[Column], y: Sequence[float], fits: int) -> Any:
    """The estimate ``kind`` made in this process, the native thread pools at one thread."""
    if kind == "h":
        return _one_thread(_interactions, columns, y)
    return _one_thread(_fanova if kind == "fanova" else _permutation, columns, y, fits)


def _one_thread(work: Any, *args: Any) -> Any:
    """``work(*args)`` with the native thread pools (OpenMP, BLAS) at one thread: these fits
    are small, and on a busy machine the pools' threads wait on each other far longer
    than they save (a gradient-boosting predict took ten times as long with two)."""
    import warnings

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' notes on the data are not the page's to print
        return work(*args)


def _numpy() -> Any:
    try:
        import numpy
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise UsageError("parameter importance needs its extra: pip install 'envcap[ui]' "
                         f"({exc.name} is missing)") from None
    return numpy


# -- importance --------------------------------------------------------------------------


def importance(views: Sequence[dict[str, Any]], metric: str, *, method: str = DEFAULT_METHOD,
               fits: int = FITS, encoded: Encoded | None = None) -> dict[str, Any]:
    """Each varying parameter's importance for the metric, most first, with its spread."""
    if method not in METHODS:
        raise UsageError(f"unknown importance method {method!r} (choose from {', '.join(METHODS)})")
    runs, columns, constant = encoded or encode(views, metric)
    result: dict[str, Any] = {
        "metric": metric, "method": method, "estimator": METHODS[method], "fits": fits, "runs": len(runs),
        "params": [], "constant": constant, "absent": {c.name: c.absent for c in columns if c.absent},
        "r2": None, "explained": None,
    }
    if len(runs) < MIN_RUNS or not columns:
        result["reason"] = (f"needs at least {MIN_RUNS} runs with the metric" if len(runs) < MIN_RUNS
                            else "no parameter varies across these runs")
        return result
    y = [float(v["metrics"][metric]) for v in runs]
    if len(set(y)) == 1:
        result["reason"] = f"{metric} is the same in every run: nothing to explain"
        return result
    try:
        per_fit, r2 = _cached(_key(method, columns, y, fits), lambda: _fit(method, columns, y, fits))
    except (RuntimeError, ValueError) as exc:  # e.g. fANOVA's forests finding no variance in a handful of runs
        result["reason"] = f"the estimate could not be made on these runs: {exc}"
        return result
    rows = []
    for i, c in enumerate(columns):
        values = [fit[i] for fit in per_fit]
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        rows.append({"name": c.name, "kind": c.kind, "importance": mean, "spread": spread, "fits": values,
                     **({"categories": list(c.categories)} if c.categories else {})})
    result["params"] = sorted(rows, key=lambda p: (-p["importance"], p["name"]))
    result["r2"] = r2
    result["explained"] = sum(p["importance"] for p in rows)
    return result


def _fanova(columns: Sequence[Column], y: Sequence[float], fits: int) -> tuple[list[list[float]], float | None]:
    """Main-effect variance fractions by Optuna's fANOVA, one list per fit (seeds 0..fits-1)."""
    _numpy()
    try:
        import optuna
        from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
        from optuna.importance import FanovaImportanceEvaluator
    except ImportError as exc:
        raise UsageError(f"fANOVA importance needs optuna: pip install 'envcap[ui]' ({exc.name} is missing)") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna's own names for the parameters (a run's parameter name may be any text).
    keys = [f"p{i}" for i in range(len(columns))]
    distributions: dict[str, BaseDistribution] = {
        k: (CategoricalDistribution(c.categories) if c.categories is not None else FloatDistribution(c.low, c.high))
        for k, c in zip(keys, columns)
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.add_trials([
        optuna.trial.create_trial(
            params={k: (c.categories[int(c.x[i])] if c.categories is not None else c.x[i]) for k, c in zip(keys, columns)},
            distributions=distributions, value=value)
        for i, value in enumerate(y)
    ])
    out = []
    for seed in range(fits):
        found = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed).evaluate(study)
        out.append([float(found[k]) for k in keys])
    return out, None


def _permutation(columns: Sequence[Column], y: Sequence[float], fits: int) -> tuple[list[list[float]], float | None]:
    """Permutation importances (shares summing to one), one list per forest (seeds 0..fits-1)."""
    np = _numpy()
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = np.array([c.x for c in columns], dtype=float).T
    target = np.array(y, dtype=float)
    out, r2 = [], None
    for seed in range(fits):
        forest = RandomForestRegressor(n_estimators=FOREST_TREES, min_samples_leaf=2, random_state=seed, n_jobs=1)
        forest.fit(x, target)
        found = permutation_importance(forest, x, target, n_repeats=2, random_state=seed, n_jobs=1)
        scores = np.clip(found.importances_mean, 0, None)
        total = float(scores.sum())
        out.append([float(s / total) if total > 0 else 0.0 for s in scores])
        if r2 is None:
            r2 = float(forest.score(x, target))
    return out, r2


# -- interactions ------------------------------------------------------------------------


def interactions(views: Sequence[dict[str, Any]], metric: str, *,
                 encoded: Encoded | None = None) -> dict[str, Any] | None:
    """Friedman's H of every pair of varying parameters, strongest first, and the
    two-dimensional partial dependence of the metric over the strongest pair."""
    runs, columns, _ = encoded or encode(views, metric)
    if len(runs) < MIN_RUNS or len(columns) < 2:
        return None
    y = [float(v["metrics"][metric]) for v in runs]
    if len(set(y)) == 1:
        return None
    try:
        found: dict[str, Any] = _cached(_key("h", columns, y, H_SAMPLE, PD_GRID),
                                        lambda: _fit("h", columns, y, 0))
    except (RuntimeError, ValueError):
        return None
    return found


def _interactions(columns: Sequence[Column], y: Sequence[float]) -> dict[str, Any]:
    np = _numpy()
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.array([c.x for c in columns], dtype=float).T
    target = np.array(y, dtype=float)
    n, d = x.shape
    categorical = [c.categories is not None and len(c.categories) <= 255 for c in columns]
    model = HistGradientBoostingRegressor(
        max_iter=60, learning_rate=0.25, max_leaf_nodes=15, min_samples_leaf=max(2, min(20, n // 20)),
        early_stopping=False, categorical_features=categorical if any(categorical) else None, random_state=0)
    model.fit(x, target)
    r2 = float(model.score(x, target))
    m = min(n, H_SAMPLE)
    sample = x[np.sort(np.random.default_rng(0).choice(n, m, replace=False))] if n > m else x
    background = np.tile(sample, (m, 1))  # block i: every sampled run, to be given run i's values

    def centred_pd(features: list[int]) -> Any:
        rows = background.copy()
        rows[:, features] = np.repeat(sample[:, features], m, axis=0)
        pd = model.predict(rows).reshape(m, m).mean(axis=1)
        return pd - pd.mean()

    single = [centred_pd([j]) for j in range(d)]
    pairs: list[dict[str, Any]] = []
    matrix = [[0.0] * d for _ in range(d)]
    for j in range(d):
        for k in range(j + 1, d):
            joint = centred_pd([j, k])
            pure = joint - single[j] - single[k]
            numerator = float((pure ** 2).sum())
            denominator = float((joint ** 2).sum())
            h = math.sqrt(numerator / m)
            pairs.append({"a": columns[j].name, "b": columns[k].name, "h": h,
                          "h2": numerator / denominator if denominator > 0 else 0.0})
            matrix[j][k] = matrix[k][j] = h
    pairs.sort(key=lambda p: (-p["h"], p["a"], p["b"]))
    strongest = pairs[0]
    a = next(i for i, c in enumerate(columns) if c.name == strongest["a"])
    b = next(i for i, c in enumerate(columns) if c.name == strongest["b"])
    return {"method": INTERACTION_METHOD, "r2": r2, "sample": m, "params": [c.name for c in columns],
            "kinds": [c.kind for c in columns], "matrix": matrix, "pairs": pairs,
            "pd": _pd2(model, sample, columns, a, b)}


def _grid(column: Column) -> list[float]:
    np = _numpy()
    distinct = sorted(set(column.x))
    if column.categories is not None:
        counts = {v: column.x.count(v) for v in distinct}
        return sorted(sorted(distinct, key=lambda v: -counts[v])[:PD_CATEGORIES])
    if len(distinct) <= PD_GRID:
        return distinct
    return [float(v) for v in np.linspace(column.low, column.high, PD_GRID)]


def _pd2(model: Any, sample: Any, columns: Sequence[Column], a: int, b: int) -> dict[str, Any]:
    """The metric's partial dependence on columns ``a`` and ``b`` over a grid of their values."""
    np = _numpy()
    ga, gb = _grid(columns[a]), _grid(columns[b])
    m = sample.shape[0]
    points = np.array([(u, v) for u in ga for v in gb], dtype=float)
    rows = np.tile(sample, (len(points), 1))
    rows[:, a] = np.repeat(points[:, 0], m)
    rows[:, b] = np.repeat(points[:, 1], m)
    pd = model.predict(rows).reshape(len(points), m).mean(axis=1).reshape(len(ga), len(gb))

    def axis(c: Column, grid: list[float]) -> dict[str, Any]:
        return {"name": c.name, "kind": c.kind, "values": [c.shown(v) for v in grid]}

    return {"x": axis(columns[a], ga), "y": axis(columns[b], gb),
            "z": [[float(pd[i][j]) for j in range(len(gb))] for i in range(len(ga))]}


# -- resources ---------------------------------------------------------------------------


def pareto(points: Sequence[tuple[str, float, float]], goal: str) -> list[str]:
    """The runs on the Pareto front of (run, resource, metric) points: none uses less of
    the resource with a metric at least as good, cheapest first."""
    sign = 1.0 if goal == "max" else -1.0
    front, best = [], -math.inf
    for run, _, value in sorted(points, key=lambda p: (p[1], -sign * p[2], p[0])):
        if sign * value > best:
            front.append(run)
            best = sign * value
    return front


# -- everything the page shows -----------------------------------------------------------


def analyze(views: Sequence[dict[str, Any]], metric: str, *, figures: Sequence[dict[str, float]] | None = None,
            resource: str | None = None, method: str = DEFAULT_METHOD, goal: str | None = None) -> dict[str, Any]:
    """Importance, interactions and the metric against a resource (with its Pareto front)
    over ``views`` (runs without the metric are left out); ``figures`` are each view's
    resource figures by name, in the same order."""
    goal = goal or default_goal(metric)
    if goal not in GOALS:
        raise UsageError(f"goal must be max or min, not {goal!r}")
    encoded = encode(views, metric)
    ranked = importance(views, metric, method=method, encoded=encoded)
    pairs = interactions(views, metric, encoded=encoded) if ranked["params"] else None
    scatter: list[dict[str, Any]] = []
    front: list[str] = []
    if resource is not None and figures is not None:
        found = [(v["id"], f[resource], float(v["metrics"][metric])) for v, f in zip(views, figures)
                 if resource in f and is_number((v.get("metrics") or {}).get(metric))]
        front = pareto(found, goal)
        on = set(front)
        scatter = [{"run": r, "x": x, "y": y, "front": r in on} for r, x, y in found]
    xs = [p["x"] for p in scatter]
    return {
        "importance": ranked, "interactions": pairs, "goal": goal, "scatter": scatter,
        "pareto": {"resource": resource, "goal": goal, "front": front, "log_x": log_spaced(xs)},
    }
