"""envcap push and pull: records between this machine's store and the shared one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_envcap
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store
from envcap.store.postgres import PostgresStore

psycopg = pytest.importorskip("psycopg")


def fill(n: int) -> list[str]:
    with Store(create=True) as store:
        return [store.add(Manifest.create({"os": {"n": i, "pad": "x" * 2000}}, {"software": ["os"], "platform": []},
                                          observed={"hostname": "laptop", "time": f"t{i:05d}"})) for i in range(n)]


def record_run(*extra: str) -> str:
    proc = run_envcap("run", *extra, "--note", "offline", "--", sys.executable, "-c", "print('hi')", check=True)
    return proc.stderr.split("run ", 1)[1].split()[0]


def test_push_sends_what_is_missing_once_and_pull_brings_a_run_back(pg_url: str, tmp_path: Path) -> None:
    run_id = record_run("--label", "team=a")
    fill(3)
    env = {"ENVCAP_STORE": pg_url}
    first = json.loads(run_envcap("push", "--json", env=env, check=True).stdout)
    assert first["runs"] == 1 and first["snapshots"] == 4 and first["objects_sent"] > 5
    assert first["store"].startswith("postgresql://envcap@")
    again = json.loads(run_envcap("push", "--json", env=env, check=True).stdout)
    assert again["objects_sent"] == 0 and again["objects_present"] == first["objects_sent"]
    shown = json.loads(run_envcap("show", run_id, "--json", env=env, check=True).stdout)
    assert shown["labels"] == {"team": "a"} and [n["text"] for n in shown["notes"]] == ["offline"]
    with PostgresStore(pg_url) as shared:
        assert shared.verify() == []
        assert shared.db.execute("SELECT count(*) FROM run_notes").fetchone()[0] == 1
    # Another machine (an empty home) pulls the run; its own store has it whole.
    other = tmp_path / "other-home"
    pulled = run_envcap("pull", run_id[:8], env={**env, "ENVCAP_HOME": str(other)}, check=True)
    assert "1 new run(s), 1 new snapshot(s)" in pulled.stdout and "pulled into" in pulled.stdout
    local = {"ENVCAP_HOME": str(other)}
    assert json.loads(run_envcap("show", run_id, "--json", env=local, check=True).stdout)["env_id"] == shown["env_id"]
    assert run_envcap("audit", run_id, env=local).returncode == 0
    assert "every object intact" in run_envcap("verify", env=local, check=True).stdout


def test_push_of_one_run_sends_that_run_only(pg_url: str) -> None:
    keep, other = record_run(), record_run()
    run_envcap("push", keep, env={"ENVCAP_STORE": pg_url}, check=True)
    with PostgresStore(pg_url) as shared:
        from envcap.store import runs

        assert runs.all_ids(shared) == [keep]
        assert len(shared.snapshots()) == 1 and other not in json.dumps(shared.snapshots())


def test_push_killed_midway_then_rerun_completes_without_duplicates(pg_url: str) -> None:
    records = fill(600)
    PostgresStore(pg_url, create=True).close()
    env = {**os.environ, "ENVCAP_STORE": pg_url}
    proc = subprocess.Popen([sys.executable, "-m", "envcap", "push"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline and conn.execute("SELECT count(*) FROM blobs").fetchone()[0] < 200:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        sent = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
        assert 200 <= sent < 1200  # Killed half-way through the objects,
        assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0  # before any row.
    again = json.loads(run_envcap("push", "--json", env={"ENVCAP_STORE": pg_url}, check=True).stdout)
    assert again["objects_present"] >= sent - 1 and again["objects_sent"] + again["objects_present"] == 1200
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM blobs").fetchone() == (1200, 1200)
    with PostgresStore(pg_url) as shared:
        assert sorted(r.record for r in shared.snapshots()) == sorted(records)
        assert shared.verify() == []


def test_push_without_a_shared_store_is_a_clear_error() -> None:
    fill(1)
    proc = run_envcap("push")
    assert proc.returncode == 2 and "no shared store is set" in proc.stderr


def test_config_set_store_points_every_command_at_it(pg_url: str, isolated: Path) -> None:
    fill(1)
    run_envcap("push", env={"ENVCAP_STORE": pg_url}, check=True)
    run_envcap("config", "set", "store", pg_url, check=True)
    assert (isolated / "no-config.toml").stat().st_mode & 0o077 == 0
    info = run_envcap("store", "info", check=True).stdout
    assert "(postgresql)" in info and "snapshots:      1" in info
    # The flag wins over the configuration, after the command as well as before it.
    for args in (["store", "info", "--store", str(isolated / "elsewhere")],
                 ["--store", str(isolated / "elsewhere"), "store", "info"]):
        proc = run_envcap(*args)
        assert proc.returncode == 2 and "no envcap store at" in proc.stderr
    run_envcap("config", "unset", "store", check=True)
    assert "(embedded)" in run_envcap("store", "info", check=True).stdout


def test_pushing_twice_says_nothing_was_sent_the_second_time(pg_url: str) -> None:
    run_id = record_run()
    env = {"ENVCAP_STORE": pg_url}
    first = run_envcap("push", run_id, env=env, check=True).stdout
    assert "1 new run(s), 1 new snapshot(s)" in first and "pushed to" in first
    again = run_envcap("push", run_id, env=env, check=True).stdout
    assert "pushed" not in again and again.startswith("nothing to copy:") and "nothing was sent" in again
