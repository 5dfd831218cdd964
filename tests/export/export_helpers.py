"""A real recorded run for the export tests: a git project, parameters, a seed, data,
an output and a metric, recorded by the real ``envcap run``."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import git, run_envcap

TRAIN = """\
import json, os
open("model.bin", "wb").write(b"weights " * 100)
with open(os.environ["ENVCAP_RUN_DIR"] + "/metrics.jsonl", "a") as fh:
    fh.write(json.dumps({"name": "acc", "value": 0.75}) + "\\n")
    fh.write(json.dumps({"name": "loss", "value": 0.125, "step": 3}) + "\\n")
"""


@dataclass
class RecordedRun:
    id: str
    repo: Path
    view: dict  # envcap show RUN --json

    def sha256(self, rel: str) -> str:
        return "sha256:" + hashlib.sha256((self.repo / rel).read_bytes()).hexdigest()


def record_run(tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
               remote: str | None = None) -> RecordedRun:
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "train.csv").write_text("x,y\n1,2\n3,4\n")
    (repo / ".gitignore").write_text("model.bin\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    if remote:
        git(repo, "remote", "add", "origin", remote)
    proc = run_envcap_in(repo, "run", "--param", "lr=0.01", "--param", "epochs=3", "--seed", "7",
                         "--data", "train.csv", "--output", "model.bin", *extra, "--", sys.executable, "train.py",
                         env=env)
    assert proc.returncode == 0, proc.stderr
    run_id = next(line.split()[2] for line in proc.stderr.splitlines()
                  if line.startswith("envcap: run ") and "recorded" not in line)
    view = json.loads(run_envcap("show", run_id, "--json", check=True).stdout)
    return RecordedRun(run_id, repo, view)


def run_envcap_in(cwd: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import os
    import subprocess

    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
