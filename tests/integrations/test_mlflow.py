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


def _timed(code: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds ``code`` (a Python snippet that sets ``took``) says it took, in a new interpreter."""
    proc = subprocess.run([sys.executable, "-c", f"import time\n{code}\nprint(took)"], env=env, check=True,
                          capture_output=True, text=True, timeout=600, cwd=cwd)
    return float(proc.stdout.split()[-1])


def test_mlflow_adds_little_after_the_command_ends(tmp_path: Path) -> None:
    # What `envcap run --mlflow` waited for after the command: MLflow's import (and its
    # SQL store's), the migrations that make a new tracking database, and the teardown of
    # MLflow's modules at exit. The first two now run while the command does, and the
    # third is skipped. Measured against `envcap run` without --mlflow as the control,
    # for a tracking database that exists (as once a team uses MLflow) and for one that
    # does not (a first run, or a command that never used MLflow), each against what
    # MLflow's import and migrations cost on this machine now.
    import os
    import time

    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    imports = _timed("t = time.monotonic()\nimport mlflow, mlflow.store.tracking.sqlalchemy_store\n"
                     "took = time.monotonic() - t", env, tmp_path)
    migrations = _timed("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
                        "t = time.monotonic()\nSqlAlchemyStore('sqlite:///calibrate.db', './mlruns')\n"
                        "took = time.monotonic() - t", env, tmp_path)
    from envcap.integrations.mlflow import template_path

    # Commands that do not use MLflow themselves, long enough for what envcap prepares
    # while they run (on a loaded machine, importing in a thread of a busy process takes
    # longer than alone). With a new database, the first run of this MLflow version
    # makes the empty database in envcap's cache: that command waits for it to be there
    # (at most long enough for anything else to have taken its place), then 1 s more.
    short = ["--", sys.executable, "-c", "import time; time.sleep(1)"]
    waits = ["--", sys.executable, "-c",
             f"import os, time\nend = time.monotonic() + {10 * (imports + migrations) + 10:.0f}\n"
             f"while not os.path.exists({template_path()!r}) and time.monotonic() < end: time.sleep(0.2)\n"
             "time.sleep(1)"]
    long = ["--", sys.executable, "-c", f"import time; time.sleep({3 * imports + 3:.1f})"]

    def overhead(cwd: Path, command: list[str], *flags: str) -> float:
        began = time.monotonic()
        # The default tracking URI: sqlite:///mlflow.db where the command runs.
        proc = envcap("run", *flags, *command, cwd=cwd, env=env, timeout=900)
        wall = time.monotonic() - began
        assert proc.returncode == 0, proc.stderr
        assert "Creating initial MLflow database tables" not in proc.stderr
        return wall - show(run_id_of(proc))["duration_s"]

    for name in ("plain", "new", "old"):
        (tmp_path / name).mkdir()
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"], env=env,
                   check=True, capture_output=True, timeout=600, cwd=tmp_path / "old")
    plain = overhead(tmp_path / "plain", short)
    new = overhead(tmp_path / "new", waits, "--mlflow") - plain
    existing = overhead(tmp_path / "old", long, "--mlflow") - plain
    assert (tmp_path / "new" / "mlflow.db").exists() and not (tmp_path / "plain" / "mlflow.db").exists()
    figures = f"MLflow's imports take {imports:.1f} s and its migrations {migrations:.1f} s here"
    assert new < 0.3 * migrations + 0.8, f"--mlflow added {new:.1f} s after the command, new database ({figures})"
    assert existing < 0.3 * imports + 0.8, f"--mlflow added {existing:.1f} s after the command ({figures})"


def test_mlflows_migrations_run_once_per_version_not_after_each_command(tmp_path: Path) -> None:
    # A command that never used MLflow, where no tracking database is yet: envcap makes
    # MLflow's empty database once (while the command runs), in its cache, and after the
    # command puts a copy where the tracking URI names it; the next such run reuses it.
    import os

    import mlflow
    from mlflow.tracking import MlflowClient

    from envcap.integrations.mlflow import template_path

    template = Path(template_path())
    assert str(template).startswith(os.environ["ENVCAP_CACHE_DIR"]) and not template.exists()
    made = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        proc = envcap("run", "--mlflow", "--param", "lr=0.1", "--", sys.executable, "-c", "pass",
                      cwd=tmp_path / name, env={"MLFLOW_TRACKING_URI": "sqlite:///runs/mlflow.db"})
        assert proc.returncode == 0, proc.stderr
        assert "Creating initial MLflow database tables" not in proc.stderr
        made.append(template.stat())
        database = tmp_path / name / "runs" / "mlflow.db"
        client = MlflowClient(tracking_uri=f"sqlite:///{database}")
        (run,) = client.search_runs(["0"])
        assert run.data.tags["envcap.run_id"] == run_id_of(proc) and run.data.params == {"lr": "0.1"}
        # The default experiment is this database's own: its artifacts lie where the
        # command ran, as when MLflow makes the database itself.
        location = client.get_experiment("0").artifact_location
        assert location.endswith(f"/{name}/mlruns/0"), location
        assert database.stat().st_mode & 0o777 == 0o666 & ~_umask()
        assert not [p.name for p in database.parent.iterdir() if p.name != "mlflow.db"]
    assert (made[0].st_ino, made[0].st_mtime_ns) == (made[1].st_ino, made[1].st_mtime_ns)
    assert template.name == f"tracking-{mlflow.__version__}.db"
    # The same database MLflow makes for itself: every table, index and trigger, at the
    # same schema revision.
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'own.db'}").search_experiments()
    assert _schema(tmp_path / "own.db") == _schema(tmp_path / "second" / "runs" / "mlflow.db")


def _schema(database: Path) -> tuple[list[Any], list[Any]]:
    """Every object of ``database`` with its definition's lines in order (MLflow's own
    migrations list a table's constraints in an order that varies from one run to the
    next), and the schema revision."""
    import sqlite3

    with sqlite3.connect(database) as db:
        objects = [(kind, name, table, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                   for kind, name, table, sql in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")]
        return sorted(objects), db.execute("SELECT version_num FROM alembic_version").fetchall()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_run_mlflow_inside_a_callers_process_returns_to_the_caller(tmp_path: Path, tracking: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick exit is the program's own: a caller running the command in its process
    (click's CliRunner, as notebooks and test suites do) gets the exit status back and
    keeps its process."""
    from click.testing import CliRunner

    from envcap.cli.main import main as cli

    monkeypatch.chdir(tmp_path)
    for name, value in tracking.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["run", "--mlflow", "--", sys.executable, "-c", "raise SystemExit(3)"])
    assert result.exit_code == 3, result.output
    (run,) = _client(tracking).search_runs(["0"])
    assert run.data.tags["envcap.run_id"]
