"""A snapshot taken inside a script is of the environment the script was given.

scikit-learn sets ``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK`` in its own process
when imported. Those are not the environment the script was run in: the snapshot the
script takes (``start_run``, the MLflow integration) must be the one the command that
started it would take, read from ``/proc/self/environ``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# Not imported here: scikit-learn would set its variables in the test process too.
if importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("mlflow") is None:
    pytest.skip("needs scikit-learn and MLflow", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import envcap, make_repo, run_id_of, show  # noqa: E402

# Each script shows that scikit-learn did set the variables in its process.
KMP_SET = "assert os.environ['KMP_DUPLICATE_LIB_OK'] and os.environ['KMP_INIT_AT_FORK']\n"


def _clean_env() -> dict[str, str]:
    # The variables must come from scikit-learn, not from the shell running the tests.
    return {k: v for k, v in os.environ.items() if not k.startswith("KMP_")}


def test_the_mlflow_tag_of_a_script_importing_sklearn_names_the_runs_environment(tmp_path: Path) -> None:
    tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    repo = make_repo(tmp_path / "repo", {"train.py": textwrap.dedent("""\
        import os
        import mlflow
        import sklearn.linear_model
        import envcap.integrations.mlflow as em
        """) + KMP_SET + textwrap.dedent("""\
        mlflow.set_experiment("kmp")
        with mlflow.start_run() as run:
            em.log_environment()
        print(run.info.run_id)
        """)})
    env = {**_clean_env(), **tracking}
    proc = subprocess.run([sys.executable, "-m", "envcap", "run", "--", sys.executable, "train.py"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=tracking["MLFLOW_TRACKING_URI"]).get_run(proc.stdout.strip().splitlines()[-1])
    assert run.data.tags["envcap.env_id"] == view["env_id"]
    # The tag names a manifest the store holds.
    stored = envcap("show", run.data.tags["envcap.env_id"], "--json")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["env_id"] == view["env_id"]


def test_a_library_recorded_run_importing_sklearn_passes_its_audit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": textwrap.dedent("""\
        import os
        import envcap
        import sklearn.linear_model
        """) + KMP_SET + textwrap.dedent("""\
        with envcap.start_run(params={"C": 1.0}) as run:
            envcap.log_metric("acc", 0.9)
        print(run.id)
        """)})
    proc = subprocess.run([sys.executable, "train.py"], cwd=repo, env=_clean_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    view: dict[str, Any] = show(run_id)
    assert "KMP_DUPLICATE_LIB_OK" not in json.loads(envcap("show", view["manifest"], "--json", check=True).stdout)[
        "sections"]["environment"]["variables"]
    audit = subprocess.run([sys.executable, "-m", "envcap", "audit", run_id], cwd=repo, env=_clean_env(),
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "KMP_" not in audit.stdout
