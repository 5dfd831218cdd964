"""`envcap audit`: a clean run passes; an edited parameter file, changed data, a changed
environment and a damaged object are each caught."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from conftest import git
from runs_helpers import envcap, make_repo, run_id_of, show

from envcap.store import runs as runs_store
from envcap.store.embedded import Store


def recorded_run(tmp_path: Path, **env: str) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "proj", {"params.yaml": "lr: 0.1\nepochs: 3\n", "data/x.csv": "1,2\n",
                                         "train.py": "print('ok')\n"})
    (repo / "params.yaml").write_text("lr: 0.2\nepochs: 3\n")  # dirty: the diff is part of what was read
    (repo / "extra.toml").write_text("batch = 32\n")  # untracked
    proc = envcap("run", "--params-file", "params.yaml", "--params-file", "extra.toml", "--data", "data",
                  "--", sys.executable, "train.py", cwd=repo, env={"OMP_NUM_THREADS": "2", **env}, check=True)
    return repo, run_id_of(proc)


def audit(run_id: str, **env: str) -> tuple[int, dict]:
    proc = envcap("audit", run_id, "--json", env={"OMP_NUM_THREADS": "2", **env})
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def failures(report: dict) -> list[str]:
    return [f["what"] for f in report["findings"] if f["status"] == "mismatch"]


def test_a_clean_run_passes_every_check(tmp_path: Path) -> None:
    _, run_id = recorded_run(tmp_path)
    assert {p["name"]: p["value"] for p in show(run_id)["params"]} == {"lr": 0.2, "epochs": 3, "batch": 32}
    code, report = audit(run_id)
    assert code == 0, report
    ok = {f["what"] for f in report["findings"] if f["status"] == "ok"}
    assert {"run record", "uncommitted diff", "commit", "parameter file params.yaml at the recorded commit",
            "parameter file extra.toml at the recorded commit", "parameter file params.yaml now", "data data",
            "environment"} <= ok
    text = envcap("audit", run_id, env={"OMP_NUM_THREADS": "2"}, check=True).stdout
    assert text.rstrip().endswith("everything matches")


def test_an_edited_parameter_file_is_caught(tmp_path: Path) -> None:
    repo, run_id = recorded_run(tmp_path)
    (repo / "params.yaml").write_text("lr: 0.3\nepochs: 3\n")
    code, report = audit(run_id)
    assert code == 1
    assert failures(report) == ["parameter file params.yaml now"]
    # Committing the edit does not hide it either.
    git(repo, "commit", "-qam", "tune")
    assert failures(audit(run_id)[1]) == ["parameter file params.yaml now"]


def test_a_changed_environment_is_caught_with_the_drift_listed(tmp_path: Path) -> None:
    _, run_id = recorded_run(tmp_path)
    code, report = audit(run_id, OMP_NUM_THREADS="8")
    assert code == 1 and failures(report) == ["environment"]
    assert any("OMP_NUM_THREADS" in line and "8" in line for line in report["drift"]), report["drift"]


def test_changed_data_and_a_damaged_object_are_caught(tmp_path: Path, isolated: Path) -> None:
    repo, run_id = recorded_run(tmp_path)
    (repo / "data" / "x.csv").write_text("1,3\n")
    view = show(run_id)
    diff_object = view["git"]["diff"]["object"]
    with Store() as store:
        path = store.object_path(diff_object)
        os.chmod(path, 0o644)
        path.write_bytes(path.read_bytes() + b"tampered")
    code, report = audit(run_id)
    assert code == 1
    assert set(failures(report)) == {"data data", "uncommitted diff"}


def test_a_parameter_file_that_does_not_match_commit_and_diff_is_caught(tmp_path: Path) -> None:
    _, run_id = recorded_run(tmp_path)
    # A record whose parameter file claims content that the commit plus diff do not give
    # (as if the diff had been lost or the record forged): audit recomputes and refuses it.
    with Store() as store:
        record = runs_store.load(store, run_id)
        files = [dict(pf) for pf in record.params_files]
        files[0]["sha256"] = "sha256:" + "0" * 64
        runs_store.put_record(store, record.evolve(params_files=tuple(files)))
    report = audit(run_id)[1]
    assert "parameter file params.yaml at the recorded commit" in failures(report)


def test_unknown_run_is_a_clean_error() -> None:
    envcap("snapshot", "--no-store")
    proc = envcap("audit", "01ZZZZZZZZ")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
