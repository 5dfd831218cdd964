"""What recording a run costs: envcap against Sacred, MLflow and W&B, side by side.

The same trivial run (two parameters, lr=0.01 and epochs=3, and one metric, loss=0.25)
recorded by each tool, as a whole process from start to exit, interleaved for --rounds
rounds (after one warm-up round that is not counted: MLflow creates its tables, W&B
its folders):

    envcap run      envcap run --param lr=0.01 --param epochs=3 -- python script.py
                    (the script reports the metric with envcap.log_metric)
    envcap api      python script.py, with envcap.start_run(params=...) in it
    sacred          python script.py with a FileStorageObserver
    mlflow          python script.py, mlflow.start_run on a sqlite:/// tracking store
    wandb           python script.py, wandb.init in offline mode

envcap captures the whole environment (every package, the system, the GPUs), the git
state and the resource usage in that time; the others record what they record by
default. Medians and ratios are printed; the goals: envcap no slower than Sacred, and
at most 0.25x W&B.

    pip install -e '.[bench,mlflow,wandb]'
    python benchmarks/bench_trackers.py [--python PY] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

_ENTRY = "from envcap.cli import main\nmain(prog_name='envcap')\n"

SCRIPTS = {
    "envcap-cli.py": """\
import envcap
envcap.log_metric("loss", 0.25)
""",
    "envcap-api.py": """\
import envcap
with envcap.start_run(params={"lr": 0.01, "epochs": 3}):
    envcap.log_metric("loss", 0.25)
""",
    "sacred-run.py": """\
import os
from sacred import Experiment
from sacred.observers import FileStorageObserver
ex = Experiment("bench", save_git_info=False)
ex.observers.append(FileStorageObserver(os.environ["BENCH_SACRED_DIR"]))

@ex.config
def config():
    lr = 0.01
    epochs = 3

@ex.main
def main(_run, lr, epochs):
    _run.log_scalar("loss", 0.25)

ex.run_commandline()
""",
    "mlflow-run.py": """\
import os, mlflow
mlflow.set_tracking_uri(os.environ["BENCH_MLFLOW_URI"])
with mlflow.start_run():
    mlflow.log_params({"lr": 0.01, "epochs": 3})
    mlflow.log_metric("loss", 0.25)
""",
    "wandb-run.py": """\
import wandb
run = wandb.init(project="bench", config={"lr": 0.01, "epochs": 3})
run.log({"loss": 0.25})
run.finish()
""",
}


def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="an interpreter with envcap and the peers")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    py = args.python
    with tempfile.TemporaryDirectory() as scratch:
        for name, text in SCRIPTS.items():
            with open(os.path.join(scratch, name), "w") as fh:
                fh.write(text)
        env = {**os.environ, "ENVCAP_HOME": os.path.join(scratch, "envcap-store"),
               "BENCH_SACRED_DIR": os.path.join(scratch, "sacred-runs"),
               "BENCH_MLFLOW_URI": f"sqlite:///{os.path.join(scratch, 'mlflow.db')}",
               "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": scratch,
               "WANDB_DATA_DIR": os.path.join(scratch, "wandb-data"),
               "WANDB_CACHE_DIR": os.path.join(scratch, "wandb-cache"),
               "WANDB_CONFIG_DIR": os.path.join(scratch, "wandb-config"),
               "MLFLOW_ARTIFACTS_DESTINATION": os.path.join(scratch, "mlartifacts")}
        for name in ("ENVCAP_RUN_DIR", "ENVCAP_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            env.pop(name, None)
        cases = {
            "envcap run": [py, "-c", _ENTRY, "run", "--param", "lr=0.01", "--param", "epochs=3", "--",
                           py, "envcap-cli.py"],
            "envcap api": [py, "envcap-api.py"],
            "sacred": [py, "sacred-run.py"],
            "mlflow": [py, "mlflow-run.py"],
            "wandb": [py, "wandb-run.py"],
        }
        for argv in cases.values():  # warm-up, not counted
            timed(argv, env, scratch)
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, argv in cases.items():
                times[name].append(timed(argv, env, scratch))
        bare = [timed([py, "-c", "pass"], env, scratch) for _ in range(args.rounds)]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"interpreter: {py}; {args.rounds} rounds, whole process, medians (min-max):")
    print(f"  {'python -c pass':<12} {statistics.median(bare) * 1000:8.0f} ms")
    for name, values in times.items():
        print(f"  {name:<12} {med[name] * 1000:8.0f} ms  ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})")
    for ours in ("envcap run", "envcap api"):
        print(f"  {ours}: {med[ours] / med['sacred']:.2f}x sacred (goal <= 1), "
              f"{med[ours] / med['mlflow']:.2f}x mlflow, {med[ours] / med['wandb']:.2f}x wandb (goal <= 0.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
