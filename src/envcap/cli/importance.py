"""The ``envcap importance`` command: click code only; the analysis is :mod:`envcap.ui.importance`."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import echo, open_store


@click.command(name="importance")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Take the runs where COND holds (repeatable), e.g. 'labels.experiment=sweep'.")
@click.option("--metric", metavar="NAME", help="The metric to explain (default: the first numeric one).")
@click.option("--method", type=click.Choice(["fanova", "permutation"]), default="fanova", show_default=True,
              help="fANOVA (Optuna's evaluator) or a random forest's permutation importance.")
@click.option("--resource", metavar="NAME", help="The resource figure for the Pareto front (default: duration_s).")
@click.option("--goal", type=click.Choice(["max", "min"]), help="Whether a higher or a lower metric is better "
              "(default: lower for names like loss or error, else higher).")
@click.option("--json", "as_json", is_flag=True, help="Print everything the experiment page shows, as JSON.")
def importance(where: tuple[str, ...], metric: str | None, method: str, resource: str | None, goal: str | None,
               as_json: bool) -> None:
    """Which parameters matter for a metric, which matter together, and the cheapest good runs.

    \b
    envcap importance --where labels.experiment=sweep --metric acc
    envcap importance --metric loss --method permutation --json
    The same figures as `envcap ui`'s experiment page and /api/importance.
    """
    from ..runs.query import Condition
    from ..ui.data import experiment

    for w in where:
        Condition.parse(w)
    with open_store() as store:
        # The API's own selection (the database answers the filter), so --json is what it serves.
        found = experiment(store, where=where, metric=metric, resource=resource, method=method, goal=goal)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    _print(found)


def _print(found: dict[str, Any]) -> None:
    ranked = found["importance"]
    if ranked is None:
        echo(f"{found['runs']} run(s); none has a numeric metric")
        return
    echo(f"{found['runs']} run(s), {ranked['runs']} with {found['metric']}")
    echo(f"importance: {ranked['estimator']}")
    if not ranked["params"]:
        echo(f"  {ranked.get('reason', '')}")
    width = max((len(p["name"]) for p in ranked["params"]), default=0)
    for p in ranked["params"]:
        echo(f"  {p['name']:<{width}}  {p['importance']:.3f} ± {p['spread']:.3f}  {p['kind']}")
    if ranked["constant"]:
        echo(f"constant, left out: {', '.join(ranked['constant'])}")
    pairs = found.get("interactions")
    if pairs:
        echo(f"interactions: {pairs['method']}")
        for p in pairs["pairs"][:5]:
            echo(f"  {p['a']} × {p['b']}  H {p['h']:.4g}  H² {p['h2']:.3f}")
    front = found.get("scatter") or []
    if front:
        cheapest = sorted((p for p in front if p["front"]), key=lambda p: p["x"])
        better = "higher" if found["goal"] == "max" else "lower"
        echo(f"Pareto front of {found['metric']} ({better} is better) against {found['resource']}:")
        for p in cheapest:
            echo(f"  {p['run']}  {p['x']:.6g}  {p['y']:.6g}")
