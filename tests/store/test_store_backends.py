"""Both backends behind one interface: the same answers from the embedded store and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run_envcap
from envcap.core.run import FINISHED, UNFINISHED, Param, RunRecord, new_run_id
from envcap.runs.query import prefilter, run_json, select
from envcap.store import runs as runs_store


def make_runs(store: Any) -> list[RunRecord]:
    made = []
    for i in range(24):
        record = RunRecord(
            id=new_run_id(), state=FINISHED if i % 6 else UNFINISHED, mode="cli", argv=("t",), command="t", cwd="/",
            host=f"h{i % 3}", started_at=f"2026-12-01T00:00:{i:02d}.000Z",
            exit_code=None if i % 6 == 0 else (1 if i % 5 == 0 else 0),
            labels={"team": "a_b" if i % 2 else "c%d", "node": f"n{i % 4}"} if i % 7 else {},
            env_id=f"sha256:{'ab12' if i % 3 else 'cd34'}{i:060d}", params_id=f"sha256:{i % 4:064d}",
            git={"commit": f"{i % 2}" * 40} if i % 4 else {},
            params=(Param(name="lr", value=0.01 * (i % 5), source="user"),), metrics={"loss": 1.0 / (i + 1)})
        runs_store.put_record(store, record)
        made.append(record)
    return made


CONDITIONS = [
    ["exit_code=0"], ["exit_code!=0"], ["exit_code>0"], ["exit_code<=0"], ["env_id=sha256:ab12"], ["env_id=cd34"],
    ["env_id!=ab12"], ["git.commit=1111"], ["git.commit=" + "0" * 40], ["labels.team=a_b"], ["labels.team=c%d"],
    ["labels.node=n1", "exit_code=0"], ["state=finished"], ["params.lr>0.02"], ["metrics.loss<0.1"],
    ["id=" + "Z" * 8], ["params_id=" + "0" * 63 + "3"], ["labels.team~a"], ["exit_code=null"],
]


@pytest.mark.parametrize("labels", [None, {"team": "a_b"}, {"team": "c%d", "node": "n2"}])
def test_the_database_narrows_runs_exactly_as_the_conditions_select_them(any_store: Any,
                                                                         labels: dict[str, str] | None) -> None:
    make_runs(any_store)
    everything = [run_json(r, n, c) for _, r, n, c, _ in runs_store.load_many(any_store, runs_store.all_ids(any_store))]
    assert len(everything) == 24
    for where in CONDITIONS:
        expected = [v["id"] for v in select(everything, where=where, labels=labels)]
        narrowed = runs_store.ids_where(any_store, *prefilter(where, labels))
        assert set(expected) <= set(narrowed), where  # Never loses a run,
        views = [run_json(r, n, c) for _, r, n, c, _ in runs_store.load_many(any_store, narrowed)]
        assert [v["id"] for v in select(views, where=where, labels=labels)] == expected, where  # same answer.
    # And it does narrow: an id condition reads no other run.
    assert len(runs_store.ids_where(any_store, *prefilter(["env_id=cd34"]))) == 8


def test_every_command_works_the_same_on_either_store(store_url: str, tmp_path: Path) -> None:
    env = {"ENVCAP_STORE": store_url}
    first = run_envcap("snapshot", "--label", "cluster=a", env=env, check=True)
    assert "stored in " in first.stdout
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    proc = run_envcap("run", "--label", "team=x", "--param", "lr=0.1", "--data", str(data), "--",
                      sys.executable, "-c", "print(2)", env=env, check=True)
    run_id = proc.stderr.split("run ", 1)[1].split()[0]
    run_envcap("note", run_id, "looked fine", env=env, check=True)
    listed = json.loads(run_envcap("runs", "--json", "--where", "params.lr=0.1", "--label", "team=x",
                                   env=env, check=True).stdout)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["notes"][0]["text"] == "looked fine"
    snaps = json.loads(run_envcap("ls", "--json", env=env, check=True).stdout)
    assert len(snaps) == 2
    shown = json.loads(run_envcap("show", snaps[0]["id"][:16], "--json", env=env, check=True).stdout)
    assert shown["id"] == snaps[0]["id"]
    assert run_envcap("diff", snaps[0]["record"], run_id, env=env).returncode in (0, 1)
    assert run_envcap("fleet", env=env).returncode in (0, 1)
    audit = run_envcap("audit", run_id, env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # The data fingerprint cache lives in the store too: a second run reads it back.
    again = run_envcap("run", "--data", str(data), "--", sys.executable, "-c", "print(3)", env=env, check=True)
    second = json.loads(run_envcap("show", again.stderr.split("run ", 1)[1].split()[0], "--json", env=env,
                                   check=True).stdout)
    assert second["data"][0]["fingerprint"] == json.loads(
        run_envcap("show", run_id, "--json", env=env, check=True).stdout)["data"][0]["fingerprint"]
    assert "every object intact" in run_envcap("verify", env=env, check=True).stdout
    info = json.loads(run_envcap("store", "info", "--json", env=env, check=True).stdout)
    assert info["counts"]["runs"] == 2 and info["counts"]["snapshots"] == 3 and info["schema_version"] == 3
