"""Importance the field trusts and interactions (issue 22), on the issue's generated sweep:
``score`` depends on ``lr`` and ``depth`` jointly, on ``batch_size`` alone, not on
``dropout``. fANOVA (the default) ranks dropout last and Friedman's H ranks (lr, depth)
first, at least twice as strong as the next pair, in each of three seeds of the sweep;
log-spaced, categorical, constant and absent parameters are handled as such; the Pareto
front of the metric against a resource; ``envcap importance`` and the API agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ui_support import joint_sweep_records, write_synthetic
from ui_support import client_for  # noqa: F401  (fixtures)


def _views(records):
    from envcap.runs.query import run_json

    return [run_json(r) for r in records]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_sweep_ranks_dropout_last_and_lr_by_depth_the_strongest_pair(seed) -> None:
    from envcap.ui.data import experiment_of

    found = experiment_of(_views(joint_sweep_records(250, seed=seed)), metric="score")
    ranked = found["importance"]["params"]
    assert found["importance"]["method"] == "fanova"
    assert [p["name"] for p in ranked][-1] == "dropout", ranked
    assert {p["name"] for p in ranked[:3]} == {"lr", "depth", "batch_size"}
    pairs = found["interactions"]["pairs"]
    assert len(pairs) == 6  # every pair of the four varying parameters
    assert {pairs[0]["a"], pairs[0]["b"]} == {"lr", "depth"}, pairs
    assert pairs[0]["h"] >= 2 * pairs[1]["h"], pairs
    assert "Friedman's H" in found["interactions"]["method"]
    # The heatmap's matrix is the same figures, symmetric, in the order of its axes.
    names = found["interactions"]["params"]
    i, j = names.index("lr"), names.index("depth")
    assert found["interactions"]["matrix"][i][j] == found["interactions"]["matrix"][j][i] == pairs[0]["h"]
    # The two-dimensional partial dependence is over that pair, lr's grid log-spaced, and
    # shows the ridge: the best lr at the deepest model is larger than at the shallowest.
    pd = found["interactions"]["pd"]
    axes = {pd["x"]["name"]: pd["x"], pd["y"]["name"]: pd["y"]}
    assert set(axes) == {"lr", "depth"} and axes["lr"]["kind"] == "log"
    grid = axes["lr"]["values"]
    assert grid[-1] / grid[0] > 100 and grid[1] / grid[0] == pytest.approx(grid[-1] / grid[-2], rel=1e-6)
    z = pd["z"] if pd["x"]["name"] == "lr" else [list(col) for col in zip(*pd["z"])]  # z[lr][depth]
    depths = axes["depth"]["values"]
    best_lr = [grid[max(range(len(grid)), key=lambda a, d=d: z[a][d])] for d in range(len(depths))]
    assert best_lr[-1] > 10 * best_lr[0]


def test_kinds_constant_and_absent_parameters() -> None:
    from envcap.ui.importance import importance

    views = _views(joint_sweep_records(120, seed=4))
    for k, v in enumerate(views):
        v["params"].append({"name": "optimizer", "value": ["sgd", "adam"][k % 2]})
        if k % 10 == 0:  # an older run that did not record dropout
            v["params"] = [p for p in v["params"] if p["name"] != "dropout"]
    result = importance(views, "score")
    kinds = {p["name"]: p["kind"] for p in result["params"]}
    # lr is drawn log-uniformly over three decades; dropout uniformly from 0 to 0.5 also
    # spans decades (its smallest values are near 0) but is not log-spaced.
    assert kinds == {"lr": "log", "depth": "numeric", "batch_size": "numeric", "dropout": "numeric",
                     "optimizer": "categorical"}
    assert result["constant"] == ["epochs"] and "epochs" not in kinds
    assert result["absent"] == {"dropout": 12}
    by_name = {p["name"]: p for p in result["params"]}
    assert by_name["optimizer"]["categories"] == ["adam", "sgd"]


def test_log_spaced_is_a_property_of_the_values() -> None:
    from envcap.ui.importance import log_spaced

    assert log_spaced([1e-4, 1e-3, 1e-2, 1e-1])
    assert not log_spaced([0.001, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert not log_spaced([16, 32, 64, 128])  # less than two decades
    assert not log_spaced([0, 1e-3, 1e-2, 1e-1])  # a zero has no logarithm


def test_pareto_front() -> None:
    from envcap.ui.importance import default_goal, pareto

    assert [default_goal(m) for m in ("val_loss", "train/loss", "top1_err", "error_rate", "wer", "runtime")] == ["min"] * 6
    assert [default_goal(m) for m in ("acc", "score", "answer_acc", "power_auc", "f1")] == ["max"] * 5

    points = [("a", 1.0, 0.5), ("b", 2.0, 0.7), ("c", 2.0, 0.6), ("d", 3.0, 0.65), ("e", 4.0, 0.9), ("f", 0.5, 0.1)]
    assert pareto(points, "max") == ["f", "a", "b", "e"]
    assert pareto(points, "min") == ["f"]
    assert pareto([("x", 1.0, 3.0), ("y", 2.0, 1.0)], "min") == ["x", "y"]


def test_the_api_marks_the_front_against_gpu_memory_and_energy(tmp_path: Path, client_for) -> None:
    records = joint_sweep_records(60, seed=5)
    write_synthetic(tmp_path, records)
    c = client_for(tmp_path)
    body = c.get("/api/importance", params={"metric": "score"}).json()
    assert body["resources"][:5] == ["duration_s", "resources.cpu_s", "resources.peak_rss_mib",
                                     "resources.gpu.peak_memory_mib", "resources.gpu.energy_j"]
    assert body["resource_labels"]["resources.gpu.peak_memory_mib"] == "GPU memory (MiB)"
    assert body["goal"] == "max"
    import jsonschema

    from envcap.ui.api import OPENAPI_FILE

    doc = json.loads(Path(OPENAPI_FILE).read_text())
    jsonschema.validate(body, {"$ref": "#/components/schemas/Experiment", "components": doc["components"]},
                        cls=jsonschema.Draft202012Validator)
    for resource in ("resources.gpu.peak_memory_mib", "resources.gpu.energy_j"):
        body = c.get("/api/importance", params={"metric": "score", "resource": resource}).json()
        points = body["scatter"]
        assert len(points) == 60 and body["pareto"]["resource"] == resource
        front = [p for p in points if p["front"]]
        assert [p["run"] for p in sorted(front, key=lambda p: p["x"])] == body["pareto"]["front"]
        # A run is on the front exactly when no other run uses no more of the resource
        # with a metric at least as good (and is strictly better in one of the two).
        for p in points:
            beaten = any(q["x"] <= p["x"] and q["y"] >= p["y"] and (q["x"] < p["x"] or q["y"] > p["y"])
                         for q in points)
            assert beaten != p["front"], p
    # The GPU figures are the devices' added up: 500 + 30 * batch + 400 MiB.
    first = records[0]
    gpu = c.get("/api/importance", params={"metric": "score", "resource": "resources.gpu.peak_memory_mib",
                                           "where": f"id={first.id}"}).json()
    batch = next(p.value for p in first.params if p.name == "batch_size")
    assert gpu["scatter"][0]["x"] == pytest.approx(500 + 30 * batch + 400)
    lower = c.get("/api/importance", params={"metric": "score", "goal": "min"}).json()
    assert lower["goal"] == "min" and lower["pareto"]["front"] != body["pareto"]["front"]


def test_fits_are_kept_per_selection(monkeypatch) -> None:
    from envcap.ui import importance as imp

    calls = []
    real = imp._fanova
    monkeypatch.setattr(imp, "_fanova", lambda *a: calls.append(1) or real(*a))
    views = _views(joint_sweep_records(40, seed=6))
    first = imp.analyze(views, "score")
    again = imp.analyze(views, "score", resource=None)
    assert len(calls) == 1 and again["importance"] == first["importance"]
    assert again["interactions"] == first["interactions"]
    imp.analyze(views[:-1], "score")  # another selection: fitted anew
    assert len(calls) == 2


def test_envcap_importance_prints_what_the_api_serves(tmp_path: Path, client_for) -> None:
    write_synthetic(tmp_path, joint_sweep_records(80, seed=7))
    env = {**os.environ, "ENVCAP_HOME": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "envcap", "importance", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    proc = cli("--where", "labels.experiment=joint", "--metric", "score", "--resource", "resources.gpu.energy_j",
               "--json")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    served = client_for(tmp_path).get("/api/importance", params={
        "where": "labels.experiment=joint", "metric": "score", "resource": "resources.gpu.energy_j"}).json()
    assert printed == served
    text = cli("--metric", "score")
    assert text.returncode == 0, text.stderr
    assert "fANOVA" in text.stdout and "Friedman's H" in text.stdout and "Pareto front" in text.stdout
    assert "constant, left out: epochs" in text.stdout
    for bad in (["--metric", "nope"], ["--where", "params.lr>>1"], ["--resource", "watts"]):
        proc = cli(*bad)
        assert proc.returncode == 2 and proc.stderr.startswith("envcap: error:") and "Traceback" not in proc.stderr


def test_what_cannot_be_estimated_is_said_so() -> None:
    from envcap.ui.importance import analyze

    def view(i, params, metrics):
        return {"id": f"r{i}", "params": [{"name": k, "value": v} for k, v in params.items()], "metrics": metrics}

    # Values past what the forests' float32 holds: a reason, not an error page.
    huge = [view(i, {"a": i * 1e300, "b": i % 3}, {"acc": i / 10}) for i in range(9)]
    found = analyze(huge, "acc")
    assert found["importance"]["params"] == [] and "could not be made" in found["importance"]["reason"]
    assert found["interactions"] is None
    same = [view(i, {"a": i}, {"acc": 0.5}) for i in range(9)]
    assert "the same in every run" in analyze(same, "acc")["importance"]["reason"]
    # Some runs set a flag (always to one value), the others lack it: two categories, not a constant.
    flag = [view(i, {"a": i, **({"amp": True} if i % 2 else {})}, {"acc": i % 2 + i / 100}) for i in range(12)]
    ranked = analyze(flag, "acc")["importance"]
    assert ranked["constant"] == [] and {p["name"]: p["kind"] for p in ranked["params"]}["amp"] == "categorical"
    assert ranked["params"][0]["name"] == "amp"
