"""Helpers and fixtures of the ui's tests: runs recorded by the real ``envcap run``, and
synthetic records written through the store's own ``put_record`` (for many runs at once).

A test module imports the fixtures it uses from here. (There is no conftest.py in this
folder: a second module named ``conftest`` would shadow the top-level one that other
test modules import from.)"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("starlette", reason="envcap ui's tests need its extra: pip install 'envcap[test-ui]'")

TRAIN = """\
import os
import envcap
lr = float(os.environ["LR"])
with envcap.start_run(params={"lr": lr, "optimizer": os.environ["OPT"]}, seed=7):
    for step in range(8):
        envcap.log_metric("loss", 1.0 / (1 + step * lr), step=step)
    envcap.log_metric("acc", round(0.5 + lr, 4), step=7)
"""


def envcap_run(home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Record a run with the real ``envcap run`` into the store at ``home``; its id."""
    proc = subprocess.run([sys.executable, "-m", "envcap", "run", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "ENVCAP_HOME": str(home), **(env or {})}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.split("run ", 1)[1].split()[0]


def synthetic_record(index: int, params: dict[str, Any], metrics: dict[str, Any], *, start_ms: int,
                     command: str = "python train.py", labels: dict[str, str] | None = None,
                     exit_code: int = 0, duration: float | None = None, resources: dict[str, Any] | None = None) -> Any:
    from envcap.core.run import FINISHED, Param, RunRecord, new_run_id

    started = start_ms + index * 1000
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started / 1000)) + ".000Z"
    return RunRecord(
        id=new_run_id(started), state=FINISHED, mode="cli", argv=tuple(command.split()), command=command,
        cwd="/work", host=f"node{index % 4}", started_at=iso, ended_at=iso,
        duration_s=duration if duration is not None else 1.0 + (index % 7),
        exit_code=exit_code, labels=labels or {},
        params=tuple(Param(name=k, value=v, source="user") for k, v in params.items()),
        params_id=f"sha256:{index:064x}", metrics=metrics, envcap_version="0.1.0",
        git={"in_repository": True, "commit": f"{index:040x}", "branch": "main", "dirty": False},
        resources=resources,
    )


def write_synthetic(home: Path, records: list[Any], notes: dict[int, str] | None = None) -> None:
    """Write records through the store's own path (``store.runs.put_record``)."""
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    with Store(home) as store:
        for i, record in enumerate(records):
            extra = [runs_store.Note("2026-01-01T00:00:00.000Z", notes[i])] if notes and i in notes else []
            runs_store.put_record(store, record, notes=extra)


def experiment_records(n: int, *, seed: int = 1, start_ms: int = 1_760_000_000_000) -> list[Any]:
    """An experiment of ``n`` runs over five parameters where only ``lr`` and ``depth``
    drive the metric; ``dropout``, ``batch`` and ``optimizer`` are noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = {"lr": rng.uniform(0.001, 0.1), "depth": rng.randint(1, 12), "dropout": rng.uniform(0, 0.5),
             "batch": rng.choice([16, 32, 64, 128]), "optimizer": rng.choice(["sgd", "adam", "rmsprop"])}
        score = 10 * p["lr"] / 0.1 + 0.8 * (p["depth"] - 6) ** 2 / 4 + rng.gauss(0, 0.1)
        out.append(synthetic_record(i, p, {"score": round(score, 6)}, start_ms=start_ms,
                                    labels={"experiment": "sweep"}))
    return out


def joint_sweep_records(n: int, *, seed: int = 1, start_ms: int = 1_770_000_000_000) -> list[Any]:
    """The sweep of issue 22: ``score`` depends on ``lr`` and ``depth`` jointly (the best
    learning rate moves with the depth: log10(lr) = -4 + 3 (depth - 1) / 11), on
    ``batch_size`` alone, and not on ``dropout``; ``epochs`` is constant. ``lr`` is drawn
    log-uniformly over three decades. Each run records resources, GPU ones included: the
    larger batches cost more memory, the deeper models more time and energy."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = {"lr": 10 ** rng.uniform(-4, -1), "depth": rng.randint(1, 12), "batch_size": rng.choice([16, 32, 64, 128, 256]),
             "dropout": rng.uniform(0, 0.5), "epochs": 10}
        best = -4 + 3 * (p["depth"] - 1) / 11
        score = 1 - (math.log10(p["lr"]) - best) ** 2 / 2 + 0.3 * math.log2(p["batch_size"] / 16) + rng.gauss(0, 0.02)
        duration = round(20 * p["depth"] * (1 + rng.random() / 5), 2)
        used = {"wall_s": duration, "cpu_s": round(duration * 1.7, 2), "peak_rss_mib": round(900 + 4 * p["batch_size"], 1),
                "gpu": [{"peak_memory_mib": round(500 + 30 * p["batch_size"], 1), "energy_j": round(150 * duration, 1)},
                        {"peak_memory_mib": 400.0, "energy_j": round(50 * duration, 1)}]}
        out.append(synthetic_record(i, p, {"score": round(score, 6)}, start_ms=start_ms, labels={"experiment": "joint"},
                                    duration=duration, resources=used))
    return out


def write_numpy_pair(home: Path) -> tuple[str, str]:
    """Two runs whose environments are this machine's (a real snapshot of its OS and
    Python) with numpy at 1.26.0 and at 2.1.0; their ids."""
    from envcap.capture.collect import snapshot
    from envcap.core.manifest import Manifest
    from envcap.store.embedded import Store

    m = snapshot(select=["python", "os"])
    manifests = []
    for version in ("1.26.0", "2.1.0"):
        sections = dict(m.sections)
        python = dict(sections["python"])
        packages = [p for p in python.get("packages", []) if p.get("name") != "numpy"]
        python["packages"] = [*packages, {"name": "numpy", "version": version}]
        sections["python"] = python
        manifests.append(Manifest.create(sections, {k: list(v) for k, v in m.layers.items()},
                                         observed=dict(m.observed), labels=dict(m.labels)))
    with Store(home) as store:
        for manifest in manifests:
            store.add(manifest)
    runs = [synthetic_record(i, {"lr": 0.1, "numpy": v}, {"acc": a}, start_ms=1_750_000_000_000,
                             labels={"experiment": "numpy-upgrade"}).evolve(manifest=mf.id, env_id=mf.env_id)
            for i, (mf, v, a) in enumerate(zip(manifests, ("1.26.0", "2.1.0"), (0.91, 0.89)))]
    write_synthetic(home, runs)
    return runs[0].id, runs[1].id


def cli_runs(home: Path, *args: str) -> list[dict[str, Any]]:
    """``envcap runs --json`` of the real CLI: the ground truth for filtering and sorting."""
    proc = subprocess.run([sys.executable, "-m", "envcap", "runs", "--json", *args], capture_output=True, text=True,
                          env={**os.environ, "ENVCAP_HOME": str(home)}, timeout=120, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with three runs recorded by ``envcap run`` (a training script logging
    curves), one of them noted; shared by the tests that only read it."""
    home = tmp_path_factory.mktemp("ui-recorded")
    work = tmp_path_factory.mktemp("ui-project")
    (work / "train.py").write_text(TRAIN)
    ids = []
    for lr, opt, batch in ((0.1, "sgd", 32), (0.3, "adam", 64), (0.2, "adam", 32)):
        ids.append(envcap_run(home, work, "--param", f"batch={batch}", "--label", "experiment=demo", "--",
                              sys.executable, "train.py", env={"LR": str(lr), "OPT": opt}))
    subprocess.run([sys.executable, "-m", "envcap", "note", ids[1], "best so far"], check=True, capture_output=True,
                   env={**os.environ, "ENVCAP_HOME": str(home)})
    return {"home": home, "ids": ids}


@pytest.fixture
def client_for() -> Iterator[Any]:
    """A function that makes a test client of the app over the store at a path."""
    from starlette.testclient import TestClient

    from envcap.ui.app import create_app, store_opener

    clients = []

    def make(home: Path) -> Any:
        c = TestClient(create_app(store_opener(str(home))))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
