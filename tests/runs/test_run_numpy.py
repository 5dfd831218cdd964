"""A real seeded numpy training script: the same seed gives the same run, another seed
differs only where it should."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from runs_helpers import envcap, make_repo, run_id_of, show

pytest.importorskip("numpy", reason="the test extra installs numpy for this test")

TRAIN = """\
import numpy as np
from envcap.runs.api import log_metric, seed_everything, start_run

with start_run(defaults={"epochs": 4, "lr": 0.1, "batch": 16}) as run:
    seeds = seed_everything()                      # the seed given to `envcap run --seed`
    p = run.params
    data = np.loadtxt("data/points.csv", delimiter=",")
    X, y = data[:, :3], data[:, 3]
    w = np.random.normal(size=3)                   # numpy's global generator, seeded
    order = np.random.default_rng(seeds.child("shuffle"))
    noise = np.random.default_rng(seeds.child("augment"))
    for epoch in range(p["epochs"]):
        for start in range(0, len(X), p["batch"]):
            idx = order.permutation(len(X))[: p["batch"]]
            xb = X[idx] + noise.normal(scale=0.01, size=X[idx].shape)
            grad = 2 * xb.T @ (xb @ w - y[idx]) / len(idx)
            w -= p["lr"] * grad
        loss = float(np.mean((X @ w - y) ** 2))
        log_metric("loss", loss, step=epoch)
    log_metric("w0", float(w[0]))
"""


def make_points(path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([X, y]), delimiter=",")


def test_same_seed_same_run_other_seed_differs_only_where_it_should(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    make_points(repo / "data" / "points.csv")
    (repo / "train.py").write_text(TRAIN)
    make_repo(repo)

    def train(seed: int) -> dict:
        proc = envcap("run", "--seed", str(seed), "--param", "lr=0.05", "--data", "data/points.csv",
                      "--", sys.executable, "train.py", cwd=repo, check=True)
        return show(run_id_of(proc))

    a, b, c = train(7), train(7), train(8)
    assert a["id"] != b["id"]
    assert len(a["metrics"]) == 2 and a["metrics"]["loss"] < 1.0
    for key in ("metrics", "params_id", "params", "env_id", "seeds", "data", "git", "manifest"):
        assert a[key] == b[key], key
    # Another seed: other seeds and other numbers; the same parameters, code, data and environment.
    for key in ("params_id", "params", "env_id", "data", "git"):
        assert a[key] == c[key], key
    assert c["seeds"]["global"] == 8 and a["seeds"]["global"] == 7
    assert c["seeds"]["named"]["shuffle"] != a["seeds"]["named"]["shuffle"]
    assert c["metrics"]["loss"] != a["metrics"]["loss"] and c["metrics"]["w0"] != a["metrics"]["w0"]
    params = {p["name"]: (p["value"], p["source"]) for p in a["params"]}
    assert params == {"lr": (0.05, "user"), "epochs": (4, "default"), "batch": (16, "default")}
    seeded = {s["library"] for s in a["seeds"]["set"]}
    assert {"random", "numpy", "PYTHONHASHSEED"} <= seeded
    assert set(a["seeds"]["named"]) == {"shuffle", "augment"}
    assert a["seeds"]["determinism"]["env"]["PYTHONHASHSEED"] == str(7)
