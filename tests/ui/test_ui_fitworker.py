"""The experiment page's fits in a process of their own (envcap.ui.fitworker): the same
answers as in the server's process, no secret of the server's environment handed over, a
worker that dies replaced, and `envcap ui` with the worker beside it: the server stays
small, the page is served, and the worker ends with the server."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ui_support import joint_sweep_records, write_synthetic


def _columns(n: int = 60, seed: int = 3):
    from envcap.runs.query import run_json
    from envcap.ui import importance

    views = [run_json(r) for r in joint_sweep_records(n, seed=seed)]
    runs, columns, _ = importance.encode(views, "score")
    return columns, [float(v["metrics"]["score"]) for v in runs]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture
def worker(monkeypatch):
    from envcap.ui import importance
    from envcap.ui.fitworker import FitWorker

    monkeypatch.setenv("ENVCAP_TEST_API_TOKEN", "tok-never-handed-over")
    monkeypatch.setenv("ENVCAP_STORE", "postgresql://u:pw-never-handed-over@127.0.0.1:1/db")
    w = FitWorker()
    w.start()
    yield w
    w.close()
    importance.use_worker(None)


def test_the_worker_answers_as_this_process_would(worker) -> None:
    from envcap.ui.importance import compute

    columns, y = _columns()
    for kind, fits in (("fanova", 3), ("h", 0), ("permutation", 2)):
        here = compute(kind, columns, y, fits)
        there = worker.fit(kind, columns, y, fits)
        # JSON between the processes: tuples come back as lists, floats exactly.
        assert there == json.loads(json.dumps(here)), kind
    assert worker.unavailable is None


def test_no_secret_of_the_server_reaches_the_worker(worker) -> None:
    columns, y = _columns(20)
    worker.fit("fanova", columns, y, 1)  # it is up and answering
    env = _environ(worker._child.pid)
    assert "ENVCAP_TEST_API_TOKEN" not in env and "ENVCAP_STORE" not in env
    assert not any("never-handed-over" in v for v in env.values())
    assert env.get("PATH") == os.environ.get("PATH")


def test_a_worker_that_dies_is_replaced_once_then_the_fits_run_here(worker) -> None:
    from envcap.ui.importance import compute

    columns, y = _columns(30)
    first = worker._child.pid
    os.kill(first, signal.SIGKILL)
    assert worker.fit("h", columns, y, 0) == json.loads(json.dumps(compute("h", columns, y, 0)))
    second = worker._child.pid
    assert second != first and worker.unavailable is None
    os.kill(second, signal.SIGKILL)
    assert worker.fit("fanova", columns, y, 1) == compute("fanova", columns, y, 1)  # here, no third worker
    assert worker._child is None and worker.unavailable == "the fit worker ended"


def test_a_worker_that_hangs_is_ended_and_replaced(worker, monkeypatch) -> None:
    from envcap.ui import fitworker, importance

    columns, y = _columns(30)
    expected = json.loads(json.dumps(importance.compute("h", columns, y, 0)))
    assert worker.fit("h", columns, y, 0) == expected
    monkeypatch.setattr(fitworker, "FIT_TIMEOUT", 1.0)
    hung = worker._child.pid
    os.kill(hung, signal.SIGSTOP)
    started = time.monotonic()
    assert worker.fit("h", columns, y, 0) == expected
    assert worker._child.pid != hung and time.monotonic() - started < 60
    assert not os.path.exists(f"/proc/{hung}")  # killed and reaped


def test_an_estimate_that_cannot_be_made_is_the_same_error_from_the_worker(worker) -> None:
    from envcap.ui.importance import Column

    constant = [Column("a", "numeric", (1.0, 2.0, 3.0), None, 0), Column("b", "numeric", (1.0, 1.0, 2.0), None, 0)]
    with pytest.raises((ValueError, RuntimeError)):
        worker.fit("h", constant, [1.0, 2.0], 0)  # y shorter than the columns: the model refuses it
    assert worker.fit("h", *_columns(20), 0)["pairs"]  # and the worker goes on answering


def test_envcap_ui_fits_in_its_worker_and_ends_it(tmp_path: Path) -> None:
    write_synthetic(tmp_path, joint_sweep_records(60, seed=5))
    proc = subprocess.Popen([sys.executable, "-m", "envcap", "ui", "--store", str(tmp_path), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
        assert found
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1 and b"envcap.ui.fitworker" in Path(f"/proc/{children[0]}/cmdline").read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=120)
        conn.request("GET", "/api/importance?metric=score")
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert response.status == 200 and body["importance"]["params"][-1]["name"] == "dropout"
        # The libraries were imported and the fits made in the worker, not in the server.
        modules = {line.split()[-1] for line in Path(f"/proc/{proc.pid}/maps").read_text().splitlines()}
        assert not any("sklearn" in m or "scipy" in m for m in modules)
        worker_maps = Path(f"/proc/{children[0]}/maps").read_text()
        assert "sklearn" in worker_maps
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{children[0]}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{children[0]}")
