"""Run ids, the run record's JSON, parameters and their id, and --where conditions."""

from __future__ import annotations

import json

import pytest

from envcap.core.errors import StoreError, UsageError
from envcap.core.redact import REDACTED, Redactor
from envcap.runs.params import ParamSet, flatten, params_id, parse_assignment
from envcap.runs.query import Condition, select
from envcap.core.run import RUN_ID, Param, RunRecord, looks_like_run_ref, new_run_id, run_id_time


def test_run_ids_sort_by_time_and_are_not_manifest_ids() -> None:
    ids = [new_run_id(now_ms=t) for t in (1_000, 2_000, 1_700_000_000_000, 1_700_000_000_001)]
    assert ids == sorted(ids)
    assert all(RUN_ID.match(i) for i in ids)
    assert run_id_time(ids[2]) == 1_700_000_000.0
    fresh = new_run_id()
    assert len(fresh) == 26 and not fresh.startswith("sha256:")
    assert looks_like_run_ref(fresh[:8]) and looks_like_run_ref(fresh.lower())
    assert not looks_like_run_ref("sha256:abcd") and not looks_like_run_ref("01U")


def record(**changes: object) -> RunRecord:
    base = RunRecord(id=new_run_id(), state="finished", mode="cli", argv=("python", "t.py"), command="python t.py",
                     cwd=".", host="h", started_at="2025-01-01T00:00:00.000Z", exit_code=0,
                     params=(Param(name="lr", value=0.01, source="user"),), params_id="sha256:x",
                     metrics={"acc": 0.5})
    return base.evolve(**changes)


def test_record_round_trips_through_json() -> None:
    r = record(labels={"a": "b"}, git={"commit": "abc", "dirty": False})
    again = RunRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.to_dict() == r.to_dict()
    assert again.status == "ok" and record(state="unfinished").status == "unfinished"
    assert record(exit_code=137, signal="SIGKILL").status == "killed"


def test_a_damaged_record_is_refused_with_the_field_named() -> None:
    data = record().to_dict()
    data["exit_code"] = "zero"
    with pytest.raises(StoreError, match="exit_code"):
        RunRecord.from_dict(data)
    data = record().to_dict()
    data["params"][0]["source"] = "somewhere"
    with pytest.raises(StoreError, match=r"params\[0\]"):
        RunRecord.from_dict(data)


def test_command_line_values_are_json_when_they_are_json() -> None:
    assert parse_assignment("lr=0.01") == ("lr", 0.01)
    assert parse_assignment("layers=[64, 64]") == ("layers", [64, 64])
    assert parse_assignment("name=resnet") == ("name", "resnet")
    assert parse_assignment("tag=007") == ("tag", "007")
    assert parse_assignment("x=NaN") == ("x", "NaN")
    assert parse_assignment("flag=true") == ("flag", True)
    with pytest.raises(UsageError):
        parse_assignment("novalue")


def test_params_id_depends_on_values_only() -> None:
    a = ParamSet(Redactor())
    a.update({"lr": 0.01, "opt.momentum": 0.9}, "user")
    b = ParamSet(Redactor())
    b.set("opt.momentum", 0.9, "default")
    b.set("lr", 0.01, "derived")
    assert params_id(a.params()) == params_id(b.params())
    b.set("lr", 0.02, "user")
    assert params_id(a.params()) != params_id(b.params())


def test_defaults_yield_to_user_values_and_secrets_are_redacted() -> None:
    ps = ParamSet(Redactor())
    ps.set("lr", 0.5, "user")
    ps.set("lr", 0.1, "default")
    ps.set("api_key", "hunter2", "user")
    assert ps.values() == {"api_key": REDACTED, "lr": 0.5}
    assert ps.raw_values()["api_key"] == "hunter2"
    assert flatten({"a": {"b": 1, "c": [1]}, "d": {}}) == {"a.b": 1, "a.c": [1], "d": {}}


def test_where_conditions() -> None:
    views = [
        {"id": "A", "params": [{"name": "lr", "value": 0.1, "source": "user"}], "metrics": {"acc": 0.7},
         "env_id": "sha256:aaaa1111", "labels": {"team": "x"}, "exit_code": 0},
        {"id": "B", "params": [{"name": "lr", "value": 0.001, "source": "user"}], "metrics": {"acc": 0.9},
         "env_id": "sha256:bbbb2222", "labels": {}, "exit_code": 1},
        {"id": "C", "params": [], "metrics": {}, "env_id": "sha256:aaaa1111", "labels": {}, "exit_code": 0},
    ]
    def ids(chosen: list[dict]) -> list[str]:
        return [v["id"] for v in chosen]

    assert ids(select(views, where=["params.lr>0.01"])) == ["A"]
    assert ids(select(views, where=["env_id=sha256:aaaa"])) == ["A", "C"]
    assert ids(select(views, where=["env_id=aaaa11"])) == ["A", "C"]
    assert ids(select(views, where=["exit_code!=0"])) == ["B"]
    assert ids(select(views, labels={"team": "x"})) == ["A"]
    assert ids(select(views, sort="-metrics.acc")) == ["B", "A", "C"]
    assert ids(select(views, sort="metrics.acc", limit=1)) == ["A"]
    with pytest.raises(UsageError):
        Condition.parse("params.lr")
    for typo in ("params.lr>>1", "params.lr=", "params.lr=>0.1", "exit_code!==0"):
        with pytest.raises(UsageError, match="two operators|no value"):
            Condition.parse(typo)
