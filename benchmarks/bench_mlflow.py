"""The run search against MLflow's ``search_runs``, side by side, over the same runs.

Both stores hold the same N runs (default 10,000), made by bench_store.py's generator
(``fill_runs``: parameter ``lr`` = (i % 100) / 1000, metric ``loss`` = 1 / (1 + i % 97),
label/tag ``cluster`` = c(i % 5)): envcap's embedded store, and an MLflow tracking store
on SQLite (``sqlite:///mlflow.db``, MLflow's own tables). The first ``--api-runs`` runs go
into MLflow through its client (``create_run``, ``log_batch``, ``set_terminated``); writing
10,000 that way costs 0.1 to 0.25 s a run here, so the rest are inserted into MLflow's
tables as rows shaped exactly like those its client wrote for the first (a check reads a
few back through MLflow's API and compares them).

The query is issue 18's: the 20 runs with the smallest ``loss`` among those with
``lr > 0.01``. envcap answers it as ``envcap runs --json --where 'params.lr>0.01' --sort
metrics.loss --limit 20``. MLflow compares parameters as strings only, so its client
answers it as a user would, two ways:

- ``MlflowClient.search_runs(order_by=["metrics.loss ASC"])`` a page of 100 at a time,
  the parameter tested in Python, until 20 runs are found (the cheapest MLflow way);
- ``mlflow.search_runs(order_by=..., output_format="list")``: every run, filtered in
  Python (the fluent API; its default output, a pandas DataFrame, needs pandas, which
  the venv does not have).

Each is timed as a whole process (interleaved, --rounds each, CPU time by wait4 and
wall), and within the process (the query alone, after the imports). The answers must
agree: the same 20 ``loss`` values in the same order. Target: envcap <= 0.05x MLflow.

    python benchmarks/bench_mlflow.py [--runs 10000] [--keep DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
TARGET = 0.05
QUERY = ["runs", "--json", "--where", "params.lr>0.01", "--sort", "metrics.loss", "--limit", "20"]

# The MLflow side, run in a child process: prints the losses of the page, then the query's
# own seconds (after the imports) on the last line.
PAGED = """
import json, sys, time
import mlflow
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri(sys.argv[1])
start = time.perf_counter()
client = MlflowClient()
exp = client.get_experiment_by_name("bench").experiment_id
found, token = [], None
while len(found) < 20:
    page = client.search_runs([exp], order_by=["metrics.loss ASC"], max_results=100, page_token=token)
    found += [r for r in page if float(r.data.params["lr"]) > 0.01]
    token = page.token
    if not token:
        break
print(json.dumps([r.data.metrics["loss"] for r in found[:20]]))
print(time.perf_counter() - start)
"""
FRAME = """
import json, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
start = time.perf_counter()
exp = mlflow.get_experiment_by_name("bench").experiment_id
runs = mlflow.search_runs([exp], order_by=["metrics.loss ASC"], max_results=1_000_000, output_format="list")
found = [r for r in runs if float(r.data.params["lr"]) > 0.01][:20]
print(json.dumps([r.data.metrics["loss"] for r in found]))
print(time.perf_counter() - start)
"""


def value(i: int) -> tuple[float, float, str, str]:
    """Run i of bench_store's generator: lr, loss, cluster, status."""
    return (i % 100) / 1000, 1 / (1 + i % 97), f"c{i % 5}", "FAILED" if i % 10 == 0 else "FINISHED"


def fill_mlflow(directory: Path, count: int, api_runs: int) -> None:
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    directory.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.create_experiment("bench", artifact_location=str(directory / "artifacts"))
    base = 1_764_547_200_000  # 2025-12-01, in ms
    for i in range(min(api_runs, count)):
        lr, loss, cluster, status = value(i)
        run = client.create_run(exp, start_time=base + i, tags={"cluster": cluster})
        client.log_batch(run.info.run_id, metrics=[Metric("loss", loss, base + i, 0)], params=[Param("lr", str(lr))])
        client.set_terminated(run.info.run_id, status, end_time=base + i + 1)
    if count <= api_runs:
        return
    db = sqlite3.connect(directory / "mlflow.db")
    template = db.execute("SELECT * FROM runs ORDER BY start_time LIMIT 1").fetchone()
    names = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
    tr = dict(zip(names, template))
    runs, params, metrics, latest, tags = [], [], [], [], []
    for i in range(api_runs, count):
        lr, loss, cluster, status = value(i)
        rid = uuid.uuid4().hex
        row = dict(tr, run_uuid=rid, name=f"run-{i}", status=status, start_time=base + i, end_time=base + i + 1,
                   artifact_uri=tr["artifact_uri"].replace(tr["run_uuid"], rid))
        runs.append(tuple(row[n] for n in names))
        params.append(("lr", str(lr), rid))
        metrics.append(("loss", loss, base + i, rid, 0, 0))
        latest.append(("loss", loss, base + i, 0, 0, rid))
        tags += [("cluster", cluster, rid), ("mlflow.runName", f"run-{i}", rid)]
    with db:
        db.executemany(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", runs)
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)",
                       metrics)
        db.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                       "VALUES (?, ?, ?, ?, ?, ?)", latest)
        db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
    db.close()
    # Rows written here read back through MLflow's API as those its client wrote.
    api = client.get_run(tr["run_uuid"])
    made = client.get_run(runs[-1][names.index("run_uuid")])
    i = count - 1
    assert made.data.params == {"lr": str(value(i)[0])} and made.data.metrics == {"loss": value(i)[1]}
    assert made.data.tags["cluster"] == value(i)[2] and made.info.status == value(i)[3]
    assert (made.info.experiment_id, made.info.lifecycle_stage) == (api.info.experiment_id, api.info.lifecycle_stage)
    assert len(client.search_runs([exp], max_results=50_000)) == count


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed")
    return wall, usage.ru_utime + usage.ru_stime, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--api-runs", type=int, default=50, help="runs written through MLflow's client")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep both stores here and reuse them")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from bench_store import fill_runs

    work = args.keep or Path(tempfile.mkdtemp(prefix="envcap-mlflow-bench-"))
    try:
        envcap_store, mlflow_dir = work / f"envcap-{args.runs}", work / f"mlflow-{args.runs}"
        if not (envcap_store / "index.sqlite").exists():
            t = time.perf_counter()
            fill_runs(str(envcap_store), args.runs, max(1, args.runs // 100))
            print(f"envcap store: {args.runs} runs made in {time.perf_counter() - t:.0f} s")
        if not (mlflow_dir / "done").exists():
            shutil.rmtree(mlflow_dir, ignore_errors=True)
            t = time.perf_counter()
            fill_mlflow(mlflow_dir, args.runs, args.api_runs)
            (mlflow_dir / "done").write_text("")
            print(f"MLflow store: {args.runs} runs made in {time.perf_counter() - t:.0f} s")
        uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        env = {**os.environ, "ENVCAP_STORE": str(envcap_store), "MLFLOW_TRACKING_URI": uri}
        commands = {
            "envcap runs": [sys.executable, "-m", "envcap", *QUERY],
            "envcap --help": [sys.executable, "-m", "envcap", "--help"],
            "MLflow client, paged": [sys.executable, "-c", PAGED, uri],
            "mlflow.search_runs, every run": [sys.executable, "-c", FRAME, uri],
        }
        walls: dict[str, list[float]] = {k: [] for k in commands}
        cpus: dict[str, list[float]] = {k: [] for k in commands}
        inner: dict[str, list[float]] = {k: [] for k in commands}
        answers: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                wall, cpu, out = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name == "envcap runs":
                    answers[name] = [r["metrics"]["loss"] for r in json.loads(out)]
                elif name != "envcap --help":
                    lines = out.strip().splitlines()
                    answers[name] = json.loads(lines[-2])
                    inner[name].append(float(lines[-1]))
        expected = answers["envcap runs"]
        for name, got in answers.items():
            if got != expected:
                raise SystemExit(f"{name} answered {got}, envcap {expected}")
        print(f"\n{args.runs} runs; the 20 smallest losses with lr > 0.01 (all answers agree); "
              f"median of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
        print(f"  {'':<30} {'wall':>8} {'CPU':>8} {'query alone':>12}")
        for name in commands:
            alone = f"{statistics.median(inner[name]):11.3f}s" if inner[name] else ""
            print(f"  {name:<30} {statistics.median(walls[name]):7.3f}s {statistics.median(cpus[name]):7.3f}s {alone:>12}")
        ours_wall, ours_cpu = statistics.median(walls["envcap runs"]), statistics.median(cpus["envcap runs"])
        ok = True
        for name in ("MLflow client, paged", "mlflow.search_runs, every run"):
            w, c = statistics.median(walls[name]), statistics.median(cpus[name])
            ok &= ours_wall / w <= TARGET
            print(f"envcap / {name}: {ours_wall / w:.3f}x wall, {ours_cpu / c:.3f}x CPU (target <= {TARGET}x)")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
