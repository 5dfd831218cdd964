"""Parameter importance: on a synthetic experiment where only two of five parameters
drive the metric, those two come first, by fANOVA (the default) and by permutation."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from ui_support import experiment_records, write_synthetic
from ui_support import client_for  # noqa: F401  (fixtures)


def _views(records):
    from envcap.runs.query import run_json

    return [run_json(r) for r in records]


@pytest.mark.parametrize("method", ["fanova", "permutation"])
def test_the_two_parameters_that_drive_the_metric_rank_first(method) -> None:
    from envcap.ui.importance import FITS, importance

    result = importance(_views(experiment_records(300)), "score", method=method)
    ranked = [p["name"] for p in result["params"]]
    assert set(ranked[:2]) == {"lr", "depth"}, result["params"]
    assert len(ranked) == 5
    noise = sum(p["importance"] for p in result["params"][2:])
    assert noise < 0.1 < min(p["importance"] for p in result["params"][:2])
    if method == "permutation":
        assert abs(sum(p["importance"] for p in result["params"]) - 1) < 1e-9
        assert "random forest" in result["estimator"]
    else:  # fANOVA's fractions of variance: what the main effects leave is interactions
        assert 0.5 < result["explained"] <= 1
        assert "fANOVA" in result["estimator"] and "FanovaImportanceEvaluator" in result["estimator"]
    for p in result["params"]:  # each value is the mean of several fits, its spread their deviation
        assert len(p["fits"]) == FITS and (len(set(p["fits"])) > 1 or max(p["fits"]) < 1e-3)
        assert p["spread"] == pytest.approx(statistics.pstdev(p["fits"]))
        assert p["importance"] == pytest.approx(statistics.fmean(p["fits"]))
    kinds = {p["name"]: p["kind"] for p in result["params"]}
    assert kinds["optimizer"] == "categorical" and kinds["lr"] == "numeric"


def test_a_metric_driven_by_the_categorical_parameter_ranks_it_first() -> None:
    from envcap.ui.importance import importance

    views = _views(experiment_records(200))
    for v in views:
        opt = next(p["value"] for p in v["params"] if p["name"] == "optimizer")
        v["metrics"] = {"score": {"sgd": 0.0, "adam": 5.0, "rmsprop": 2.0}[opt]}
    assert importance(views, "score")["params"][0]["name"] == "optimizer"


def test_constant_parameters_and_too_few_runs_are_said_so() -> None:
    from envcap.ui.importance import importance

    views = _views(experiment_records(20))
    for v in views:
        for p in v["params"]:
            if p["name"] == "batch":
                p["value"] = 32
    result = importance(views, "score")
    assert result["constant"] == ["batch"] and "batch" not in [p["name"] for p in result["params"]]
    few = importance(views[:3], "score")
    assert few["params"] == [] and "at least 5 runs" in few["reason"]


def test_the_experiment_api_ranks_over_the_runs_a_filter_selects(tmp_path: Path, client_for) -> None:
    write_synthetic(tmp_path, experiment_records(150))
    c = client_for(tmp_path)
    body = c.get("/api/importance", params={"where": "labels.experiment=sweep", "metric": "score"}).json()
    assert body["runs"] == 150 and body["metric"] == "score"
    assert {p["name"] for p in body["importance"]["params"][:2]} == {"lr", "depth"}
    axes = [a["name"] for a in body["parallel"]["axes"]]
    assert axes[-1] == "score" and set(axes[:2]) == {"lr", "depth"}
    assert len(body["parallel"]["rows"]) == 150 and len(body["scatter"]) == 150
    assert body["resource"] == "duration_s" and body["method"] == "fanova"
    assert c.get("/api/importance", params={"method": "shap"}).status_code == 400
    assert c.get("/api/importance", params={"goal": "up"}).status_code == 400
    none = c.get("/api/importance", params={"where": "labels.experiment=other"}).json()
    assert none["runs"] == 0 and none["importance"] is None
    assert c.get("/api/importance", params={"metric": "nope"}).status_code == 404


def test_a_large_experiment_is_sampled_and_says_so(tmp_path: Path, client_for, monkeypatch) -> None:
    from envcap.ui import data

    monkeypatch.setattr(data, "EXPERIMENT_RUNS", 60)
    write_synthetic(tmp_path, experiment_records(100))
    body = client_for(tmp_path).get("/api/importance", params={"metric": "score"}).json()
    assert body["sampled"] == {"of": 100, "kept": 60}
    assert body["importance"]["runs"] == 60 and len(body["parallel"]["rows"]) == 60 and len(body["scatter"]) == 60
    again = client_for(tmp_path).get("/api/importance", params={"metric": "score"}).json()
    assert [r["run"] for r in again["parallel"]["rows"]] == [r["run"] for r in body["parallel"]["rows"]]
