"""MLflow: a real tracking store (sqlite, no server), read back through MlflowClient."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow")
# MLflow's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates: theirs, not envcap's.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import envcap, make_repo, run_id_of, show  # noqa: E402

TRAIN = textwrap.dedent("""\
    import mlflow
    mlflow.set_experiment("envcap-test")
    with mlflow.start_run():
        mlflow.log_param("lr", 0.01)
        mlflow.log_param("epochs", 3)
        mlflow.log_metric("loss", 0.25)
""")


@pytest.fixture
def tracking(tmp_path: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _client(env: dict[str, str]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def _manifest(client: Any, run_id: str, tmp_path: Path) -> dict[str, Any]:
    assert [f.path for f in client.list_artifacts(run_id, "envcap")] == ["envcap/manifest.json"]
    local = client.download_artifacts(run_id, "envcap/manifest.json", str(tmp_path))
    return json.loads(Path(local).read_text())


def test_envcap_run_mlflow_attaches_to_the_commands_own_run(tmp_path: Path, tracking: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN})
    proc = envcap("run", "--mlflow", "--", sys.executable, "train.py", cwd=repo, env=tracking)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    client = _client(tracking)
    experiment = client.get_experiment_by_name("envcap-test")
    (run,) = client.search_runs([experiment.experiment_id])
    tags = run.data.tags
    assert tags["envcap.run_id"] == view["id"]
    assert tags["envcap.env_id"] == view["env_id"] and tags["envcap.platform_id"] == view["platform_id"]
    assert tags["envcap.manifest"] == view["manifest"]
    assert tags["envcap.git.commit"] == view["git"]["commit"] and tags["envcap.git.branch"] == "main"
    assert tags["envcap.git.dirty"] == "false"
    assert run.data.params == {"lr": "0.01", "epochs": "3"} and run.data.metrics == {"loss": 0.25}
    manifest = _manifest(client, run.info.run_id, tmp_path / "dl")
    assert manifest["id"] == view["manifest"] and manifest["env_id"] == view["env_id"]
    assert any(run.info.run_id in n["text"] for n in view["notes"])


def test_a_command_without_mlflow_gets_a_run_made_for_it(tmp_path: Path, tracking: dict[str, str]) -> None:
    (tmp_path / "plain.py").write_text("import envcap\nenvcap.log_metric('acc', 0.9)\n")
    proc = envcap("run", "--mlflow", "--param", "lr=0.1", "--param", "name=resnet", "--", sys.executable,
                  "plain.py", cwd=tmp_path, env=tracking)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    client = _client(tracking)
    (run,) = client.search_runs(["0"])
    assert run.data.tags["envcap.run_id"] == view["id"]
    assert run.data.params == {"lr": "0.1", "name": "resnet"}
    assert run.data.metrics == {"acc": 0.9}
    assert run.info.status == "FINISHED"
    assert _manifest(client, run.info.run_id, tmp_path / "dl")["env_id"] == view["env_id"]


def test_log_environment_in_a_script(tmp_path: Path, tracking: dict[str, str]) -> None:
    (tmp_path / "s.py").write_text(textwrap.dedent("""\
        import mlflow, envcap.integrations.mlflow as em
        with mlflow.start_run() as run:
            em.log_environment()
        print(run.info.run_id)
    """))
    proc = subprocess.run([sys.executable, "s.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, **tracking})
    assert proc.returncode == 0, proc.stderr
    client = _client(tracking)
    run = client.get_run(proc.stdout.strip().splitlines()[-1])
    manifest = _manifest(client, run.info.run_id, tmp_path / "dl")
    assert run.data.tags["envcap.env_id"] == manifest["env_id"]
    assert run.data.tags["envcap.manifest"] == manifest["id"]
    assert "envcap.run_id" not in run.data.tags  # no envcap run here: nothing claims one


def test_mlflow_missing_is_a_clean_error_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mlflow': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n")
    proc = envcap("run", "--mlflow", "--", sys.executable, "-c", "pass", cwd=tmp_path,
                  env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "pip install 'envcap[mlflow]'" in proc.stderr


def test_mlflow_adds_little_after_the_command_ends(tmp_path: Path, tracking: dict[str, str]) -> None:
    # MLflow's import (and its SQL store's) is what `envcap run --mlflow` waited for after
    # the command: it now runs while the command does. The tracking database exists
    # already, as it does once a team uses MLflow.
    import os
    import time

    env = {**os.environ, **tracking}
    # (In tmp_path: the default experiment keeps its artifacts under ./mlruns of where it was made.)
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"], env=env,
                   check=True, capture_output=True, timeout=600, cwd=tmp_path)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import mlflow, mlflow.store.tracking.sqlalchemy_store"], env=env,
                   check=True, capture_output=True, timeout=600, cwd=tmp_path)
    imports = time.monotonic() - started
    # A command longer than the import, which does not use MLflow itself.
    command = ["--", sys.executable, "-c", f"import time; time.sleep({imports + 3:.1f})"]

    def overhead(*flags: str) -> float:
        began = time.monotonic()
        proc = envcap("run", *flags, *command, cwd=tmp_path, env=tracking, timeout=600)
        wall = time.monotonic() - began
        assert proc.returncode == 0, proc.stderr
        return wall - show(run_id_of(proc))["duration_s"]

    plain, with_mlflow = overhead(), overhead("--mlflow")
    added = with_mlflow - plain
    assert added < 0.5 * imports + 1.5, (f"--mlflow added {added:.1f} s after the command "
                                         f"(MLflow's import takes {imports:.1f} s here)")
