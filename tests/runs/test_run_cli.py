"""`envcap run`, `runs`, `show` and `note` as a user meets them, in a real git repository."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runs_helpers import envcap, make_repo, run_id_of, show

SCRIPT = """\
import json, os, sys
print("training output", flush=True)
print("to stderr", file=sys.stderr, flush=True)
with open(os.path.join(os.environ["ENVCAP_RUN_DIR"], "metrics.jsonl"), "a") as fh:
    for step, acc in enumerate([0.5, 0.75, float(sys.argv[1])]):
        fh.write(json.dumps({"name": "acc", "value": acc, "step": step}) + "\\n")
    fh.write("this line is not json\\n")
with open("model.bin", "wb") as fh:
    fh.write(b"weights")
sys.exit(int(sys.argv[2]))
"""


def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj", {"train.py": SCRIPT, "data/train.csv": "x,y\n1,2\n", ".gitignore": "model.bin\n"})


def test_run_streams_output_records_everything_and_exits_like_the_command(tmp_path: Path) -> None:
    repo = project(tmp_path)
    proc = envcap("run", "--param", "lr=0.01", "--seed", "7", "--seed", "shuffle=3", "--data", "data/train.csv",
                  "--note", "first try", "--label", "team=vision", "--output", "model.bin",
                  "--", sys.executable, "train.py", "0.875", "0", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "training output\n"
    assert "to stderr" in proc.stderr
    run_id = run_id_of(proc)
    view = show(run_id[:10])
    assert view["id"] == run_id and view["state"] == "finished" and view["status"] == "ok"
    assert view["exit_code"] == 0 and view["signal"] is None
    assert view["command"].endswith("train.py 0.875 0")
    assert view["cwd"] == "."
    assert view["env_id"].startswith("sha256:") and view["manifest"].startswith("sha256:")
    assert view["python"] == {"executable": sys.executable, "from": "command"}
    assert view["git"]["commit"] and view["git"]["dirty"] is False and view["git"]["branch"] == "main"
    assert view["params"] == [{"name": "lr", "value": 0.01, "source": "user"}]
    assert view["seeds"]["global"] == 7 and view["seeds"]["named"] == {"shuffle": 3}
    assert view["data"][0]["name"] == "train.csv" and view["data"][0]["fingerprint"].startswith("sha256:")
    assert view["metrics"] == {"acc": 0.875}
    assert view["metrics_log"]["points"] == 3
    assert any("not JSON" in p for p in view["problems"])
    assert view["outputs"][0]["path"] == "model.bin" and view["outputs"][0]["files"] == 1
    assert view["labels"] == {"team": "vision"}
    assert [n["text"] for n in view["notes"]] == ["first try"]
    # The manifest is an ordinary stored manifest: `envcap show` of it works.
    assert envcap("show", view["manifest"][7:19], cwd=repo, check=True).returncode == 0


def test_a_failing_command_is_recorded_and_its_status_passed_through(tmp_path: Path) -> None:
    repo = project(tmp_path)
    proc = envcap("run", "--", sys.executable, "train.py", "0.1", "3", cwd=repo)
    assert proc.returncode == 3
    view = show(run_id_of(proc))
    assert view["status"] == "failed" and view["exit_code"] == 3


def test_runs_lists_filters_and_sorts(tmp_path: Path) -> None:
    repo = project(tmp_path)
    for lr, acc, team in (("0.1", "0.6", "a"), ("0.001", "0.9", "b"), ("0.05", "0.7", "a")):
        envcap("run", "--param", f"lr={lr}", "--label", f"team={team}", "--", sys.executable, "train.py", acc, "0",
               cwd=repo, check=True)
    everything = json.loads(envcap("runs", "--json", check=True).stdout)
    assert [r["params"][0]["value"] for r in everything] == [0.1, 0.001, 0.05]
    assert all({"id", "env_id", "command", "exit_code", "git", "params", "params_id", "seeds", "data",
                "metrics", "notes"} <= set(r) for r in everything)
    big = json.loads(envcap("runs", "--json", "--where", "params.lr>0.01", check=True).stdout)
    assert [r["params"][0]["value"] for r in big] == [0.1, 0.05]
    env_id = everything[0]["env_id"]
    same_env = json.loads(envcap("runs", "--json", "--where", f"env_id={env_id[:20]}", check=True).stdout)
    assert len(same_env) == 3
    team_a = json.loads(envcap("runs", "--json", "--label", "team=a", "--sort", "-metrics.acc", check=True).stdout)
    assert [r["metrics"]["acc"] for r in team_a] == [0.7, 0.6]
    table = envcap("runs", check=True).stdout
    assert everything[1]["id"] in table and "acc=0.9" in table
    assert envcap("runs", "--where", "metrics.acc>5", check=True).stdout.strip() == "no runs match"


def test_notes_are_appended_with_their_time(tmp_path: Path) -> None:
    repo = project(tmp_path)
    run_id = run_id_of(envcap("run", "--", sys.executable, "train.py", "0.5", "0", cwd=repo, check=True))
    before = show(run_id)
    out = envcap("note", run_id[:12], "looks overfit", check=True)
    assert run_id in out.stdout
    after = show(run_id)
    assert [n["text"] for n in after["notes"]] == ["looks overfit"]
    assert after["notes"][0]["time"]
    del before["notes"], after["notes"]
    assert before == after  # the record itself is unchanged
    text = envcap("show", run_id, check=True).stdout
    assert "looks overfit" in text and "status      ok (exit 0)" in text


def test_runs_with_no_store_says_so_and_creates_nothing(isolated: Path) -> None:
    proc = envcap("runs")
    # The same answer as `envcap ls` gives with no store: exit 2 and what to do.
    assert proc.returncode == envcap("ls").returncode == 2
    assert "no envcap store" in proc.stderr
    assert not (isolated / "index.sqlite").exists()


def test_a_run_outside_git_says_so(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    proc = envcap("run", "--", sys.executable, "-c", "print(1)", cwd=tmp_path / "plain", check=True)
    view = show(run_id_of(proc))
    assert view["git"]["in_repository"] is False and view["git"]["commit"] is None
    assert view["git"]["reason"] == "not in a git repository"
    assert view["cwd"] == str(tmp_path / "plain")


def test_working_directory_is_relative_to_the_repository_root(tmp_path: Path) -> None:
    repo = project(tmp_path)
    proc = envcap("run", "--", sys.executable, "-c", "pass", cwd=repo / "data", check=True)
    assert show(run_id_of(proc))["cwd"] == "data"


def test_runs_shows_whole_ids_every_param_and_the_host(tmp_path: Path) -> None:
    import os

    params = {"lr": "0.001", "optimizer": "adamw-with-decoupled-decay", "batch_size": "128",
              "weight_decay": "0.0001", "scheduler": "cosine-with-restarts", "dropout": "0.1"}
    ids = []
    for _ in range(2):
        proc = envcap("run", *(a for k, v in params.items() for a in ("--param", f"{k}={v}")), "--",
                      sys.executable, "-c", "pass", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        ids.append(run_id_of(proc))
    out = envcap("runs", check=True, env={"COLUMNS": "100"}).stdout
    lines = out.splitlines()
    for run_id in ids:
        assert any(run_id in line for line in lines), out  # whole, on one line
    for name, value in params.items():
        assert f"{name}={value}" in out, out
    assert "host" in lines[0] and os.uname().nodename in out
