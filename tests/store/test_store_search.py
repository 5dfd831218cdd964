"""``search_runs`` (the ``--where`` grammar in SQL) against the in-memory filter, the
reference, on generated stores: the same runs, in the same order, on both backends."""

from __future__ import annotations

import json
import sqlite3
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import run_envcap
from envcap.core.run import FINISHED, UNFINISHED, Param, RunRecord, new_run_id
from envcap.runs.query import find_runs, load_views, select
from envcap.store import runs as runs_store
from envcap.store.search import NotCompilable

IDS = ["sha256:ab12" + "0" * 60, "sha256:ab12" + "1" * 60, "cd34" + "5" * 60, "0" * 40]
SCALARS = st.one_of(
    st.integers(-5, 5), st.sampled_from([0.5, 0.01, 0.1, 1.0, -2.5, 3.0, 1e-3, 100.0]),
    st.sampled_from(["a", "b", "B", "ab", "0.01", "1", "true", "null", "é", "Z", "a_b", "c%d", "", *IDS]),
    st.booleans(), st.none(),
)
NAMES = ["lr", "x", "opt.lr"]
FIELDS = ["params.lr", "params.x", "params.opt.lr", "metrics.loss", "metrics.acc", "labels.team", "exit_code",
          "env_id", "status", "host", "state", "started_at", "git.commit", "id", "duration_s"]
RAWS = ["0", "1", "-1", "0.01", "0.5", "3", "1e-3", "a", "ab", "B", "true", "false", "null", '"a"', "0.1",
        "sha256:ab12", "ab12", "cd34", "0000", "é", "2026-12-01T00:00:05", "finished", "ok", "h1", "[1, 2]",
        "a_b", "c%d", '"1"']
OPS = ["=", "!=", ">", ">=", "<", "<=", "~"]


def record_strategy() -> Any:
    return st.builds(
        lambda params, metrics, team, i, exit_code, finished, commit, host, env: RunRecord(
            id=new_run_id(), state=FINISHED if finished else UNFINISHED, mode="cli", argv=("t",), command="t",
            cwd="/", host=host, started_at=f"2026-12-01T00:00:{i:02d}.000Z",
            ended_at=f"2026-12-01T00:01:{i:02d}.000Z" if finished else None,
            duration_s=float(i) if finished else None,
            exit_code=exit_code if finished else None, labels={"team": team} if team is not None else {},
            env_id=env, git={"commit": commit} if commit else {},
            params=tuple(Param(name=n, value=v, source="user") for n, v in params.items()), metrics=metrics),
        params=st.dictionaries(st.sampled_from(NAMES), SCALARS, max_size=3),
        metrics=st.dictionaries(st.sampled_from(["loss", "acc"]),
                                st.one_of(st.integers(-3, 3), st.floats(-10, 10, allow_nan=False)), max_size=2),
        team=st.one_of(st.none(), st.sampled_from(["a", "b", "a_b", "c%d", "0.01"])),
        i=st.integers(0, 59), exit_code=st.sampled_from([0, 1, 2, -9]), finished=st.booleans(),
        commit=st.sampled_from(["", "0" * 40, "1" * 40]), host=st.sampled_from([None, "h1", "h2"]),
        env=st.sampled_from([None, *IDS]),
    )


def condition_strategy() -> Any:
    return st.builds(lambda f, o, r: f"{f}{o}{r}", st.sampled_from(FIELDS), st.sampled_from(OPS),
                     st.sampled_from(RAWS))


def _clear(store: Any) -> None:
    store.transaction([(f"DELETE FROM {t}", ()) for t in ("runs", "run_values", "run_notes")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_sql_answers_as_the_in_memory_filter_does(any_store: Any, data: Any) -> None:
    _clear(any_store)
    records = data.draw(st.lists(record_strategy(), min_size=0, max_size=14))
    for r in records:
        runs_store.put_record(any_store, r)
    everything = load_views(any_store, runs_store.all_ids(any_store))
    for _ in range(12):
        where = data.draw(st.lists(condition_strategy(), max_size=2))
        labels = data.draw(st.one_of(st.none(), st.just({"team": "a"})))
        sort = data.draw(st.one_of(st.none(), st.sampled_from(FIELDS), st.sampled_from(FIELDS).map(lambda f: "-" + f)))
        limit = data.draw(st.one_of(st.none(), st.integers(1, 5)))
        expected = [v["id"] for v in select(everything, where=where, labels=labels, sort=sort, limit=limit)]
        try:
            page = any_store.search_runs([_split(w) for w in where], labels=labels, sort=sort, limit=limit,
                                         count=True)
        except NotCompilable:
            # Only an odd value (a list, NaN, a huge integer) sends a query to the records.
            continue
        assert page.ids == expected, (where, labels, sort, limit)
        assert page.total == len(select(everything, where=where, labels=labels)), (where, labels)


def _split(text: str) -> tuple[str, str, str]:
    from envcap.runs.query import Condition

    c = Condition.parse(text)
    return c.field, c.op, c.raw


def test_the_plain_grammar_is_answered_by_sql_and_odd_values_by_the_records(any_store: Any) -> None:
    for i in range(6):
        runs_store.put_record(any_store, RunRecord(
            id=new_run_id(), state=FINISHED, mode="cli", argv=("t",), command="t", cwd="/", host="h",
            started_at=f"2026-12-01T00:00:{i:02d}.000Z", exit_code=i % 2,
            params=(Param(name="lr", value=i / 100, source="user"),
                    Param(name="layers", value=[i, i + 1], source="user")),
            metrics={"loss": 1 / (i + 1)}))
    found = find_runs(any_store, where=["params.lr>0.01"], sort="metrics.loss", limit=2)
    assert found.by == "sql" and [v["params"][0]["value"] for v in found.views] == [0.05, 0.04]
    assert found.total == 4
    # A list value: the records answer, with the same grammar.
    odd = find_runs(any_store, where=["params.layers=[2, 3]"])
    assert odd.by == "records" and [v["params"][0]["value"] for v in odd.views] == [0.02]
    # A rarer path (not in the values table) is answered from the records too.
    assert find_runs(any_store, where=["python~x"]).by == "records"


def test_hostile_queries_are_errors_or_answers_never_tracebacks(store_url: str) -> None:
    env = {"ENVCAP_STORE": store_url}
    run_envcap("snapshot", env=env, check=True)
    run_envcap("run", "--param", "lr=0.1", "--", sys.executable, "-c", "pass", env=env, check=True)
    for where in ("exit_code>100000000000000000000000000", "exit_code=100000000000000000000000000",
                  "id=" + "A" * 100_000, "labels.x=" + "y" * 100_000, "params.lr<" + "[" * 5000):
        proc = run_envcap("runs", "--json", "--where", where, env=env)
        assert proc.returncode == 0, (where[:60], proc.stderr[-500:])
        assert json.loads(proc.stdout) == []
    bad = run_envcap("runs", "--where", "lr>>1", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_snapshot_and_diff_do_not_import_sqlalchemy(tmp_path: Path) -> None:
    # Nor does the plain snapshot import click or inspect (which dataclasses imports): each
    # cost it about a tenth of its time.
    code = ("import sys; from envcap.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "assert 'sqlalchemy' not in sys.modules, sys.argv\n"
            "if sys.argv[1:] == ['snapshot']:\n"
            "    assert not {'click', 'inspect', 'dataclasses'} & set(sys.modules), sys.argv\n")
    env = {**os.environ, "ENVCAP_HOME": str(tmp_path / "home")}
    a = tmp_path / "a.json"
    for argv in (["snapshot", "-o", str(a)], ["diff", str(a), str(a)], ["snapshot"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])


def test_the_ddl_file_is_what_the_declarations_render() -> None:
    from envcap.store import schema

    path = Path(schema.__file__).with_name("_ddl.py")
    assert path.read_text(encoding="utf-8") == schema.render(), "run `python -m envcap.store.schema`"


def _downgrade_to_v1(store: Any) -> None:
    """What an index of schema version 1 looked like: no run values, notes without objects."""
    statements = [("DROP TABLE run_values", ()), ("ALTER TABLE run_notes DROP COLUMN object", ()),
                  ("DROP TABLE IF EXISTS key_runs", ()), ("DROP TABLE IF EXISTS revalidation_jobs", ()),
                  ("DROP TABLE IF EXISTS carried", ())]
    if store.kind == "postgresql":
        statements.append(("DELETE FROM envcap_schema WHERE version >= 2", ()))
    store.transaction(statements)
    if store.kind == "embedded":
        store.db.execute("PRAGMA user_version = 0")


def test_an_index_of_version_1_migrates_with_its_runs_values_and_notes(store_url: str) -> None:
    from envcap.store.factory import open_store

    with open_store(store_url, create=True) as store:
        for i in range(5):
            record = RunRecord(id=new_run_id(), state=FINISHED, mode="cli", argv=("t",), command="t", cwd="/",
                               host="h", started_at=f"2026-12-01T00:00:{i:02d}.000Z", exit_code=0,
                               params=(Param(name="lr", value=i / 10, source="user"),), metrics={"loss": 5 - i})
            runs_store.put_record(store, record)
        runs_store.add_note(store, record.id, runs_store.Note("2026-12-01T00:01:00Z", "kept"))
        _downgrade_to_v1(store)
    with open_store(store_url) as store:
        assert store.info()["schema_version"] == 3
        page = store.search_runs([("params.lr", ">", "0.15")], sort="metrics.loss", count=True)
        assert page.total == 3 and page.ids == [record.id, *page.ids[1:]]
        [(obj,)] = store.db.execute("SELECT object FROM run_notes").fetchall()
        assert runs_store.parse_note(json.loads(store.get_object(obj))) == (record.id, runs_store.Note(
            "2026-12-01T00:01:00Z", "kept"))


def test_reindex_finds_notes_again_from_their_objects(tmp_path: Path) -> None:
    env = {"ENVCAP_HOME": str(tmp_path / "home")}
    run_envcap("run", "--note", "first", "--", sys.executable, "-c", "pass", env=env, check=True)
    run_id = json.loads(run_envcap("runs", "--json", env=env, check=True).stdout)[0]["id"]
    run_envcap("note", run_id, "second", env=env, check=True)
    index = tmp_path / "home" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        if Path(str(index) + suffix).exists():
            Path(str(index) + suffix).unlink()
    index.write_bytes(b"")  # a zero-length index: every note lived only there before
    proc = run_envcap("store", "reindex", env=env)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(run_envcap("show", run_id, "--json", env=env, check=True).stdout)
    assert [n["text"] for n in shown["notes"]] == ["first", "second"]
    assert json.loads(run_envcap("runs", "--json", "--where", "status=ok", env=env, check=True).stdout)


def test_the_fingerprint_cache_of_a_shared_store_stays_on_this_host(pg_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from envcap.runs import data
    from envcap.store.factory import open_store

    monkeypatch.setenv("ENVCAP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "RACY_NS", 0)
    f = tmp_path / "train.csv"
    f.write_text("1,2\n")
    with open_store(pg_url, create=True) as store:
        data.fingerprint(f, data.HashCache(store))
        assert store.db.execute("SELECT count(*) FROM file_hashes").fetchone()[0] == 0
    local = sqlite3.connect(tmp_path / "home" / "hash-cache.sqlite")
    assert local.execute("SELECT path FROM file_hashes").fetchall() == [(str(f),)]
    local.close()


_CLICK_GROUP = "from envcap.cli.main import main\nmain(prog_name='envcap')\n"


def test_runs_without_click_is_the_click_command(store_url: str, tmp_path: Path) -> None:
    """`envcap runs` with its query options runs before click is imported (a third of a
    page's time from an indexed store); it prints, says and exits exactly as the click
    command does, and hands click what it does not take."""
    with runs_store_at(store_url) as store:
        for i, (lr, loss) in enumerate([(0.1, 0.5), (0.001, 0.9), (0.02, 0.3), ("x\x1b[31m", 0.7)]):
            runs_store.put_record(store, RunRecord(
                id=new_run_id(1_800_000_000_000 + i * 1000), state=FINISHED, mode="cli", argv=("t",),
                command=f"python train.py --i {i}", cwd="/", host="h1", started_at=f"2026-12-01T00:00:0{i}.000Z",
                ended_at=f"2026-12-01T00:01:0{i}.000Z", duration_s=1.0 + i, exit_code=0,
                labels={"team": "a" if i % 2 else "b"}, params=(Param(name="lr", value=lr, source="user"),),
                metrics={"loss": loss}))
    cases = [
        ("runs",), ("runs", "--json"), ("runs", "--where", "params.lr>0.01", "--sort", "metrics.loss", "--limit", "2"),
        ("runs", "--json", "--sort", "-metrics.loss"), ("runs", "--where=params.lr<1", "--where", "metrics.loss>0.4",
                                                        "--json"),
        ("runs", "--label", "team=a", "--json"), ("runs", "--label=team=b"), ("runs", "--limit", "0", "--json"), ("runs", "--limit=1", "--json"),
        ("runs", "--where", "params.lr>5"), ("runs", "--where", "lr>>1"), ("runs", "--label", "bad key=x"),
        ("runs", "--limit", "-1"), ("runs", "--limit", "x"), ("runs", "--limit", "+2", "--json"),
        ("runs", "--sort"), ("runs", "--json", "--json"), ("runs", "--where", ""), ("runs", "--bogus"),
        ("runs", "--json", "--store", store_url), ("runs", "--store", str(tmp_path / "none")),
    ]
    env = {**os.environ, "ENVCAP_STORE": store_url, "COLUMNS": "200"}
    for args in cases:
        quick, group = (subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=env,
                                       timeout=120)
                        for entry in (["-m", "envcap"], ["-c", _CLICK_GROUP]))
        assert (quick.returncode, quick.stdout, quick.stderr) == (group.returncode, group.stdout, group.stderr), args
        assert "Traceback" not in quick.stderr and "\x1b" not in quick.stdout, args
    filtered = json.loads(subprocess.run([sys.executable, "-m", "envcap", *cases[4]], capture_output=True, text=True,
                                         env=env, timeout=120).stdout)
    assert [v["metrics"]["loss"] for v in filtered] == [0.5, 0.9]
    # The query ran without click (nor the command group) imported.
    code = ("import sys; from envcap.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "assert not {'click', 'envcap.cli.main'} & set(sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, *cases[2]], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def runs_store_at(url: str) -> Any:
    from envcap.store.factory import open_store

    return open_store(url, create=True)
