"""Key runs, revalidation jobs and drift on both store backends; the pieces of revalidate and
bisect that need no container: the job's environment, Slurm's answers, package changes and
what needs what, the intermediate image's Dockerfile. (End to end: test_revalidate_e2e.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))

from reval_support import write_wheel
from ui_support import synthetic_record

START = 1_780_000_000_000


def put(store: Any, record: Any) -> None:
    from envcap.store import runs as runs_store

    runs_store.put_record(store, record)


def revalidation(original: Any, index: int, verdict: str | None, metrics: dict[str, Any], *, round_id: str,
                 reasons: tuple[str, ...] = (), environment: tuple[str, ...] = ()) -> Any:
    record = synthetic_record(index, {}, metrics, start_ms=START)
    return record.evolve(reproduction={"of": original.id, "verdict": verdict, "reasons": list(reasons),
                                       "revalidation": round_id, "node": "node1", "platform_id": "sha256:" + "1" * 64,
                                       "environment": list(environment), "metrics": metrics})


def test_key_marks_and_jobs_on_both_backends(any_store: Any) -> None:
    from envcap.store import revalidations as rv

    runs = [synthetic_record(i, {"lr": i}, {"acc": 0.5}, start_ms=START) for i in range(3)]
    for r in runs:
        put(any_store, r)
    assert rv.mark(any_store, [runs[0].id, runs[2].id], "table 2") == [runs[0].id, runs[2].id]
    assert rv.mark(any_store, [runs[0].id]) == []  # already marked
    assert rv.key_ids(any_store) == [runs[0].id, runs[2].id]
    assert rv.is_key(any_store, runs[2].id) and not rv.is_key(any_store, runs[1].id)
    rv.put_jobs(any_store, [rv.Job("r1", r.id, i, "slurm", None, "pending", None, None, "") for i, r in
                            enumerate(runs[:2])])
    rv.update_job(any_store, "r1", runs[0].id, state="cancelled", detail="scancel", job_id="7_0")
    # The job's own late write does not undo what the scheduler said.
    rv.update_job(any_store, "r1", runs[0].id, state="stopped", detail="SIGTERM", only_if_not_final=True)
    rv.update_job(any_store, "r1", runs[1].id, state="done", rebuild_id=runs[2].id, verdict="reproduced")
    jobs = rv.jobs(any_store, "r1")
    assert [(j.state, j.job_id, j.verdict) for j in jobs] == [("cancelled", "7_0", None),
                                                              ("done", None, "reproduced")]
    assert rv.job(any_store, "r1", 1) == jobs[1] and rv.latest_round(any_store) == "r1"
    rv.put_jobs(any_store, [rv.Job("later", runs[0].id, 0, "local", None, "pending", None, None, "",
                                   created_at="2999-01-01T00:00:00Z")])
    assert rv.latest_round(any_store) == "later" and rv.rounds(any_store) == ["r1", "later"]
    rv.unmark(any_store, [runs[0].id])
    assert rv.key_ids(any_store) == [runs[2].id]


def test_drift_lists_what_changed_and_why(any_store: Any) -> None:
    from envcap.runs.drift import key_runs
    from envcap.store import revalidations as rv

    steady, drifting, stopped, never = (synthetic_record(i, {}, {"score": 1.0}, start_ms=START) for i in range(4))
    for r in (steady, drifting, stopped, never):
        put(any_store, r)
    rv.mark(any_store, [steady.id, drifting.id, stopped.id, never.id])
    put(any_store, revalidation(steady, 10, "reproduced", {"score": 1.0}, round_id="r1"))
    put(any_store, revalidation(drifting, 11, "reproduced", {"score": 1.0}, round_id="r1"))
    put(any_store, revalidation(drifting, 12, "not reproduced", {"score": 2.0}, round_id="r2",
                                reasons=("metric score differs: 1.0 → 2.0",),
                                environment=("python package rv-c: 1.0 → 2.0",)))
    put(any_store, revalidation(stopped, 13, "reproduced", {"score": 1.0}, round_id="r1"))
    put(any_store, revalidation(stopped, 14, None, {}, round_id="r2", reasons=("stopped by SIGTERM",)))
    found = {k.run: k for k in key_runs(any_store)}
    assert [r for r, k in found.items() if k.drift] == [drifting.id]
    k = found[drifting.id]
    assert k.status == "drifted" and k.causes[0].startswith("verdict changed since the revalidation before")
    assert "metric score differs: 1.0 → 2.0" in k.causes
    assert "environment: python package rv-c: 1.0 → 2.0" in k.causes
    # A stopped job wrote no verdict: it is no revalidation, and no drift.
    assert found[stopped.id].status == "reproduces" and len(found[stopped.id].revalidations) == 1
    assert found[never.id].status == "never revalidated" and found[steady.id].status == "reproduces"


def test_drift_and_key_through_the_cli(tmp_path: Path) -> None:
    from envcap.store.embedded import Store

    home = tmp_path / "home"
    runs = [synthetic_record(i, {"lr": 0.1 * (i + 1)}, {"score": 1.0}, start_ms=START) for i in range(3)]
    with Store(home, create=True) as store:
        for r in runs:
            put(store, r)

    def envcap(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "envcap", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "ENVCAP_HOME": str(home)}, check=False)

    none = envcap("drift")
    assert none.returncode == 0 and "0 of 0 key run(s) drifted" in none.stdout
    nothing = envcap("revalidate")
    assert nothing.returncode == 2 and "envcap key" in nothing.stderr
    marked = envcap("key", "--where", "params.lr>0.15")
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout.split() == [runs[1].id + ":", "key", "run", runs[2].id + ":", "key", "run"]
    listed = json.loads(envcap("runs", "--json").stdout)
    assert [v.get("key", False) for v in listed] == [False, True, True]
    assert json.loads(envcap("runs", "--json", "--where", "key=true").stdout)[0]["id"] == runs[1].id
    with Store(home) as store:
        put(store, revalidation(runs[1], 10, "not reproduced", {"score": 3.0}, round_id="r1",
                                reasons=("metric score differs: 1.0 → 3.0",)))
    drift = envcap("drift")
    assert drift.returncode == 1 and runs[1].id in drift.stdout and "metric score differs" in drift.stdout
    assert "1 of 2 key run(s) drifted; 1 never revalidated" in drift.stdout
    bad = envcap("key", "NOPE0000")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_job_gets_the_store_without_its_password(pg_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from envcap.revalidate.rounds import Options, job_environment, job_script
    from envcap.store.postgres import PostgresStore

    password = urlsplit(pg_url).password
    assert password
    monkeypatch.setenv("PGPASSWORD", password)  # never copied: only the allow-listed variables go
    with PostgresStore(pg_url, create=True) as store:
        env = job_environment(store, pg_url, tmp_path / "private")
    script = job_script("r1", env, Options(partition="p"))
    assert password not in script and "PGPASSWORD" not in script
    assert env["ENVCAP_STORE"] == pg_url.replace(f":{password}@", "@")
    passfile = Path(env["PGPASSFILE"])
    assert passfile.stat().st_mode & 0o777 == 0o600 and password in passfile.read_text()
    # The script's own job reaches the store with them alone.
    probe = subprocess.run(["/bin/sh", "-c", "\n".join(line for line in script.splitlines() if line.startswith("export"))
                            + f"\nexec {sys.executable} -m envcap store info"],
                           capture_output=True, text=True, timeout=120, env={}, check=False)
    assert probe.returncode == 0, probe.stderr
    assert password not in probe.stdout + probe.stderr


def test_slurm_array_task_ids() -> None:
    from envcap.revalidate.slurm import _fields, _tasks

    assert _tasks("3") == [3] and _tasks("0-2") == [0, 1, 2] and _tasks("1,4-5%2") == [1, 4, 5]
    assert _tasks("0-6:3") == [0, 3, 6]
    line = "JobId=9 ArrayJobId=8 ArrayTaskId=1 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15"
    assert _fields(line)["JobState"] == "CANCELLED" and _fields(line)["ArrayTaskId"] == "1"


def manifest_with(packages: list[dict[str, Any]]) -> Any:
    from envcap.core.manifest import Manifest

    sections = {"python": {"version": "3.11.2", "prefix": "/opt/venv", "base_prefix": "/usr",
                           "executable": "/opt/venv/bin/python", "packages": packages}}
    return Manifest.create(sections, {"software": ["python"]})


def test_changes_between_two_envs_and_what_needs_what(tmp_path: Path) -> None:
    from envcap.revalidate.changes import between, closure
    from envcap.revalidate.layers import dockerfile

    def pkg(name: str, version: str, folder: str, requires: tuple[str, ...] = ()) -> dict[str, Any]:
        wheel = write_wheel(tmp_path / folder, name, version, 1.0, requires)
        return {"name": name.replace("_", "-"), "version": version,
                "origin": {"kind": "file", "url": f"file://{wheel}", "sha256": "a" * 64}}

    good = manifest_with([pkg("rv_a", "1.0", "g"), pkg("rv_d", "1.0", "g"), pkg("rv_e", "1.0", "g"),
                          pkg("rv_x", "1.0", "g")])
    bad = manifest_with([pkg("rv_a", "1.0", "b"), pkg("rv_d", "2.0", "b"), pkg("rv_e", "2.0", "b", ("rv-d>=2",)),
                         pkg("rv_new", "0.1", "b")])
    changes = {c.name: c for c in between(good, bad)}
    assert sorted(changes) == ["rv-d", "rv-e", "rv-new", "rv-x"]  # rv-a is the same
    assert changes["rv-e"].needs == ("rv-d",) and changes["rv-d"].needs == ()
    assert (changes["rv-x"].good, changes["rv-x"].bad) == ("1.0", None)
    assert closure(["rv-e"], changes) == ["rv-d", "rv-e"]
    text = dockerfile("reg/x@sha256:" + "0" * 64, "/opt/venv/bin/python", [changes["rv-e"], changes["rv-x"]])
    assert text.count("\nRUN ") == 1 and "--no-index" in text and "pip check" in text
    assert "rv-e==2.0" in text and "uninstall -q -y rv-x" in text
