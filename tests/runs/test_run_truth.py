"""A run's record says what really happened: the parameters and seeds the script used."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from runs_helpers import envcap, make_repo, run_id_of, run_rows, show

from envcap.runs.seeds import derive

TRAIN = textwrap.dedent("""
    import argparse
    import envcap
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with envcap.start_run() as run:
        run.log_args(args, parser)
        print("loss", args.lr * args.epochs)
""")


def test_what_the_script_reports_wins_over_param_and_the_disagreement_is_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    proc = envcap("run", "--param", "lr=0.2", "--param", "epochs=3", "--", sys.executable, "train.py",
                  cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["loss", str(0.1 * 3)]
    view = show(run_id_of(proc))
    params = {p["name"]: p for p in view["params"]}
    # The script ran with its argparse default: that is what the record says, and it says
    # what --param asked for instead.
    assert params["lr"] == {"name": "lr", "value": 0.1, "source": "default",
                            "given": {"value": 0.2, "source": "user"}}
    # Where the two agree nothing is said.
    assert params["epochs"] == {"name": "epochs", "value": 3, "source": "user"}
    assert any("lr" in p and "0.2" in p and "0.1" in p for p in view["problems"]), view["problems"]
    assert "lr = 0.1  (default; given 0.2, not used)" in envcap("show", view["id"], check=True).stdout


def test_a_value_the_script_was_given_on_its_own_command_line_is_recorded_as_user(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    proc = envcap("run", "--param", "lr=0.2", "--", sys.executable, "train.py", "--lr", "0.3", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    params = {p["name"]: p for p in show(run_id_of(proc))["params"]}
    assert params["lr"]["value"] == 0.3 and params["lr"]["source"] == "user"
    assert params["lr"]["given"] == {"value": 0.2, "source": "user"}
    assert params["epochs"] == {"name": "epochs", "value": 3, "source": "default"}


def test_a_named_seed_given_on_the_command_line_is_the_one_the_script_gets(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": textwrap.dedent("""
        import envcap
        with envcap.start_run() as run:
            seeds = envcap.seed_everything()
            print(seeds.seed, seeds.child("shuffle"), seeds.child("augment"))
    """)})
    proc = envcap("run", "--seed", "7", "--seed", "shuffle=5", "--", sys.executable, "train.py", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["7", "5", str(derive(7, "augment"))]
    view = show(run_id_of(proc))
    assert view["seeds"]["global"] == 7
    assert view["seeds"]["named"] == {"shuffle": 5, "augment": derive(7, "augment")}
    assert not [p for p in view["problems"] if "seed" in p], view["problems"]


def test_seed_everything_after_start_run_uses_its_seed_and_blames_no_seed_option(
        tmp_path: Path, isolated: Path) -> None:
    import subprocess

    repo = make_repo(tmp_path / "proj")
    code = textwrap.dedent("""
        import random, envcap
        with envcap.start_run(seed=11) as run:
            first = random.random()
            seeds = envcap.seed_everything()
            print(seeds.seed, random.random() == first)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["11", "True"]
    (row,) = run_rows(isolated)
    view = show(row[0])
    assert view["seeds"]["global"] == 11
    assert not [p for p in view["problems"] if "seed" in p], view["problems"]


def test_a_script_that_seeds_otherwise_than_seed_says_so_in_the_words_of_what_happened(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": textwrap.dedent("""
        import envcap
        with envcap.start_run(seed=11) as run:
            envcap.seed_everything(12)
    """)})
    proc = envcap("run", "--", sys.executable, "train.py", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    assert view["seeds"]["global"] == 12
    (problem,) = [p for p in view["problems"] if "seed" in p]
    assert "--seed" not in problem and "11" in problem and "12" in problem
    proc = envcap("run", "--seed", "3", "--", sys.executable, "train.py", cwd=repo)
    (problem, *_) = [p for p in show(run_id_of(proc))["problems"] if "seed" in p]
    assert "--seed 3" in problem


# -- envcap diff RUN_A RUN_B ------------------------------------------------------------

METRIC = textwrap.dedent("""
    import json, os, sys
    with open(os.path.join(os.environ["ENVCAP_RUN_DIR"], "metrics.jsonl"), "a") as fh:
        fh.write(json.dumps({"name": "loss", "value": float(sys.argv[1])}) + "\\n")
""")


def test_diff_of_two_runs_compares_code_params_seeds_data_and_metrics(tmp_path: Path) -> None:
    import json

    from conftest import git

    repo = make_repo(tmp_path / "proj", {"train.py": METRIC, "data/a.txt": "one\n"})
    first = run_id_of(envcap("run", "--param", "lr=0.1", "--seed", "1", "--data", "data", "--",
                             sys.executable, "train.py", "0.5", cwd=repo, check=True))
    (repo / "data" / "a.txt").write_text("two\n")
    (repo / "README.md").write_text("changed\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    second = run_id_of(envcap("run", "--param", "lr=0.2", "--seed", "2", "--data", "data", "--",
                              sys.executable, "train.py", "0.25", cwd=repo, check=True))
    proc = envcap("diff", first, second)
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    for line in ("code: differs", "params: differs", "  ~ lr: 0.1 → 0.2", "seeds: differs", "  ~ global: 1 → 2",
                 "data: differs", "metrics: differs", "  ~ loss: 0.5 → 0.25", "environment: same"):
        assert line in text, text
    assert "  ~ commit: " in text and "identical" not in text
    report = json.loads(envcap("diff", first, second, "--json").stdout)
    assert report["identical"] is False
    assert {c["key"] for c in report["parts"]["code"]["changes"]} == {"commit"}
    (data,) = report["parts"]["data"]["changes"]
    assert data["key"] == "data" and data["before"]["fingerprint"] != data["after"]["fingerprint"]
    assert report["parts"]["environment"]["same"] is True
    # A run compared with itself is identical; a run with a manifest compares environments.
    same = envcap("diff", first, first)
    assert same.returncode == 0 and "identical: same command, code" in same.stdout
    env_id = show(first)["env_id"]
    assert envcap("diff", first, env_id).returncode == 0


# -- lineage and audit of data -------------------------------------------------------------

PRODUCE = textwrap.dedent("""
    import os, sys
    os.makedirs("out", exist_ok=True)
    for i in range(3):
        with open(f"out/part-{i}.txt", "w") as fh:
            fh.write(f"row {i}\\n")
""")


def test_a_run_reading_an_earlier_runs_output_is_linked_to_it(tmp_path: Path) -> None:
    import json

    repo = make_repo(tmp_path / "proj", {"produce.py": PRODUCE, "consume.py": "print(open('out/part-0.txt').read())\n"})
    producer = run_id_of(envcap("run", "--output", "out", "--", sys.executable, "produce.py", cwd=repo, check=True))
    consumer = run_id_of(envcap("run", "--data", "out", "--", sys.executable, "consume.py", cwd=repo, check=True))
    (data,) = show(consumer)["data"]
    assert data["lineage"] == [{"kind": "output", "name": producer, "params": {"output": "out"}, "seed": None}]
    # Through the API too, and a dataset no run wrote has no such step.
    (repo / "api.py").write_text(textwrap.dedent("""
        import envcap
        with envcap.start_run(data={"made": "out", "own": "produce.py"}) as run:
            pass
    """))
    api_run = run_id_of(envcap("run", "--", sys.executable, "api.py", cwd=repo, check=True))
    lineage = {d["name"]: d["lineage"] for d in show(api_run)["data"]}
    assert lineage == {"made": [{"kind": "output", "name": producer, "params": {"output": "out"}, "seed": None}],
                       "own": []}
    # The producer is not linked to itself, nor to a run after it.
    assert all(not d["lineage"] for d in show(producer)["data"])
    report = json.loads(envcap("diff", producer, consumer, "--json").stdout)
    assert report["parts"]["data"]["changes"][0]["kind"] == "added"


def test_audit_names_the_files_that_changed_in_a_dataset(tmp_path: Path) -> None:
    import json

    files = {f"data/f{i:02d}.txt": f"{i}\n" for i in range(30)}
    repo = make_repo(tmp_path / "proj", {"noop.py": "pass\n", **files})
    run_id = run_id_of(envcap("run", "--data", "data", "--", sys.executable, "noop.py", cwd=repo, check=True))
    assert envcap("audit", run_id).returncode == 0
    (repo / "data" / "f03.txt").write_text("three\n")
    (repo / "data" / "f07.txt").unlink()
    (repo / "data" / "sub").mkdir()
    (repo / "data" / "sub" / "new.txt").write_text("new\n")
    proc = envcap("audit", run_id)
    assert proc.returncode == 1
    assert "1 changed, 1 added, 1 removed" in proc.stdout, proc.stdout
    for line in ("changed f03.txt", "added   sub/new.txt", "removed f07.txt"):
        assert line in proc.stdout, proc.stdout
    report = json.loads(envcap("audit", run_id, "--json").stdout)
    (finding,) = [f for f in report["findings"] if f["what"] == "data data"]
    assert finding["files"] == {"changed": ["f03.txt"], "added": ["sub/new.txt"], "removed": ["f07.txt"]}


# -- envcap runs and envcap metrics -----------------------------------------------------------

CURVE = textwrap.dedent("""
    import envcap
    with envcap.start_run() as run:
        for step in range(4):
            envcap.log_metric("loss", 1.0 / (step + 1), step=step)
        envcap.log_metric("acc", 0.9)
""")


def test_runs_lists_params_by_name_and_value(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"noop.py": "pass\n"})
    envcap("run", "--param", "lr=0.01", "--param", "model=resnet", "--", sys.executable, "noop.py",
           cwd=repo, check=True)
    out = envcap("runs", check=True).stdout
    assert "lr=0.01" in out and "model=resnet" in out, out


def test_metrics_shows_every_point_of_a_metric_history(tmp_path: Path) -> None:
    import json

    repo = make_repo(tmp_path / "proj", {"curve.py": CURVE})
    run_id = run_id_of(envcap("run", "--", sys.executable, "curve.py", cwd=repo, check=True))
    proc = envcap("metrics", run_id, check=True)
    lines = proc.stdout.splitlines()
    assert any(line.split() == ["loss", "0", "1.0"] for line in lines), proc.stdout
    assert any(line.split() == ["loss", "3", "0.25"] for line in lines), proc.stdout
    assert any(line.split() == ["acc", "-", "0.9"] for line in lines), proc.stdout
    history = json.loads(envcap("metrics", run_id, "--name", "loss", "--json", check=True).stdout)
    assert history["run"] == run_id and list(history["metrics"]) == ["loss"]
    points = history["metrics"]["loss"]
    assert [(p["step"], p["value"]) for p in points] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25)]
    assert all(isinstance(p["time"], float) for p in points)  # the API stamps each point
    missing = envcap("metrics", run_id, "--name", "nope")
    assert missing.returncode == 2 and "no metric nope" in missing.stderr and "loss" in missing.stderr


def test_one_missing_object_does_not_break_the_runs_listing(tmp_path: Path, isolated: Path) -> None:
    import json
    import sqlite3

    repo = make_repo(tmp_path / "proj", {"noop.py": "pass\n"})
    good = run_id_of(envcap("run", "--param", "a=1", "--", sys.executable, "noop.py", cwd=repo, check=True))
    bad = run_id_of(envcap("run", "--param", "a=2", "--", sys.executable, "noop.py", cwd=repo, check=True))
    db = sqlite3.connect(isolated / "index.sqlite")
    (record,) = db.execute("SELECT record FROM runs WHERE id = ?", (bad,)).fetchone()
    db.close()
    obj = isolated / "objects" / "sha256" / record[7:9] / record[9:]
    obj.chmod(0o644)
    obj.unlink()
    proc = envcap("runs")
    assert proc.returncode == 0, proc.stderr
    assert good in proc.stdout and bad in proc.stdout and "unreadable" in proc.stdout, proc.stdout
    views = {v["id"]: v for v in json.loads(envcap("runs", "--json", check=True).stdout)}
    assert views[good]["status"] == "ok"
    assert views[bad]["status"] == "unreadable" and "missing" in views[bad]["problems"][0]
    # A filter still works on the rows that can be read.
    kept = json.loads(envcap("runs", "--json", "--where", "params.a=1", check=True).stdout)
    assert [v["id"] for v in kept] == [good]
