"""The Python API: a run of a script's own, attaching to `envcap run`, seeds, datasets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runs_helpers import envcap, make_repo, run_id_of, run_rows, show

import envcap as envcap_pkg


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, check=False)


def only_run(home: Path) -> dict:
    rows = run_rows(home)
    assert len(rows) == 1, rows
    return show(rows[0][0])


def test_the_api_is_exported_from_the_package() -> None:
    from envcap.runs import api

    assert envcap_pkg.start_run is api.start_run
    assert envcap_pkg.log_metric is api.log_metric
    assert envcap_pkg.seed_everything is api.seed_everything


def test_a_script_on_its_own_records_a_run(tmp_path: Path, isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"data/a.txt": "a\n", "data/b.txt": "b\n"})
    proc = python("""
        import random
        from envcap.runs.api import start_run, log_metric
        with start_run(params={"lr": 0.1, "model": {"depth": 4}}, defaults={"lr": 1.0, "wd": 0.0},
                       seed=11, data={"train": "data"}, labels={"kind": "smoke"}, note="from the API") as run:
            ds = run.datasets[0].step("sample", "half", seed=run.seeds.child("sample"), fraction=0.5)
            print(run.id, random.random())
            for step in range(3):
                log_metric("loss", 1.0 / (step + 1), step=step)
        """, repo)
    assert proc.returncode == 0, proc.stderr
    view = only_run(isolated)
    assert view["id"] == proc.stdout.split()[0]
    assert view["mode"] == "api" and view["state"] == "finished" and view["exit_code"] == 0
    assert view["python"] == {"executable": sys.executable, "from": "self"}
    assert view["env_id"] and view["git"]["commit"]
    params = {p["name"]: (p["value"], p["source"]) for p in view["params"]}
    assert params == {"lr": (0.1, "user"), "model.depth": (4, "user"), "wd": (0.0, "default")}
    assert view["seeds"]["global"] == 11 and "sample" in view["seeds"]["named"]
    data = view["data"][0]
    assert data["name"] == "train" and data["files"] == 2 and data["source"] == "api"
    assert data["lineage"] == [{"kind": "sample", "name": "half", "params": {"fraction": 0.5},
                                "seed": view["seeds"]["named"]["sample"]}]
    assert view["metrics"] == {"loss": 1.0 / 3}
    assert view["labels"] == {"kind": "smoke"} and view["notes"][0]["text"] == "from the API"
    # The seed makes the script repeatable: random.random() is the same on a second run.
    again = python("import random\nfrom envcap.runs.api import seed_everything\nseed_everything(11)\n"
                   "print(random.random())", repo)
    assert again.stdout.strip() == proc.stdout.split()[1]


def test_an_exception_in_the_script_is_recorded_as_a_failure(tmp_path: Path, isolated: Path) -> None:
    proc = python("""
        from envcap.runs.api import start_run
        with start_run():
            raise RuntimeError("boom")
        """, tmp_path)
    assert proc.returncode == 1 and "boom" in proc.stderr
    view = only_run(isolated)
    assert view["status"] == "failed" and view["exit_code"] == 1


def test_inside_envcap_run_the_script_attaches_instead_of_starting_a_second_run(tmp_path: Path,
                                                                               isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    script = repo / "train.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        from envcap.runs.api import start_run, log_metric, seed_everything
        with start_run(defaults={"lr": 1.0, "epochs": 2}) as run:
            nested = start_run()
            assert nested is run and run.attached
            print(json.dumps(run.params, sort_keys=True))
            seed_everything()
            run.log_param("lr_scaled", run.params["lr"] * 2, source="derived")
            run.note("attached note")
            log_metric("acc", 0.5)
    """))
    proc = envcap("run", "--param", "lr=0.25", "--seed", "5", "--", sys.executable, "train.py", cwd=repo, check=True)
    assert json.loads(proc.stdout) == {"epochs": 2, "lr": 0.25}
    assert len(run_rows(isolated)) == 1
    view = show(run_id_of(proc))
    params = {p["name"]: (p["value"], p["source"]) for p in view["params"]}
    assert params == {"lr": (0.25, "user"), "epochs": (2, "default"), "lr_scaled": (0.5, "derived")}
    assert view["seeds"]["global"] == 5 and view["metrics"] == {"acc": 0.5}
    assert [n["text"] for n in view["notes"]] == ["attached note"]


def test_log_metric_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    proc = python("from envcap.runs.api import log_metric\nlog_metric('x', 1)", tmp_path)
    assert proc.returncode == 1 and "no run to record the metric in" in proc.stderr


def test_the_api_imports_no_numerical_library(tmp_path: Path) -> None:
    proc = python("""
        import sys
        import envcap
        from envcap.runs import api
        for name in ("start_run", "log_metric", "seed_everything"):
            getattr(envcap, name, None)
        api.seed_everything(3)
        heavy = [m for m in ("numpy", "torch", "tensorflow", "jax", "yaml", "click", "rich") if m in sys.modules]
        print(heavy)
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_library_imported_after_seeding_is_seeded_when_imported(tmp_path: Path, isolated: Path) -> None:
    pytest.importorskip("numpy")
    code = """
        from envcap.runs.api import start_run
        with start_run(seed=21) as run:
            import numpy as np
            print(np.random.rand())
        """
    first, second = python(code, tmp_path), python(code, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    view = show(run_rows(isolated)[0][0])
    numpy_seed = [s for s in view["seeds"]["set"] if s["library"] == "numpy"]
    assert numpy_seed and "when imported" in numpy_seed[0]["how"]


def test_a_metric_declared_at_log_time_keeps_its_declaration_in_metrics_jsonl(tmp_path: Path) -> None:
    from envcap.runs import rundir

    lines = [{"name": "train_time_s", "value": 1.5, "reproducible": False}, {"name": "acc", "value": 0.5, "rtol": 0.01},
             {"name": "loss", "value": 0.25}, {"name": "bad", "value": 1, "rtol": "x"}]
    (tmp_path / rundir.METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    points, problems = rundir.read_metrics(str(tmp_path))
    assert points == [{"name": "train_time_s", "value": 1.5, "reproducible": False},
                      {"name": "acc", "value": 0.5, "rtol": 0.01}, {"name": "loss", "value": 0.25}]
    assert problems == ["metrics.jsonl line 4: rtol must be a finite number of at least 0"]
