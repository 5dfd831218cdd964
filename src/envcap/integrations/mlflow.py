"""MLflow: an envcap run's environment, attached to the MLflow runs it made.

In a script that logs to MLflow::

    with mlflow.start_run():
        envcap.integrations.mlflow.log_environment()   # the active MLflow run

For a command: ``envcap run --mlflow -- python train.py``. Every MLflow run the command
starts is tagged ``envcap.run_id`` as it is created (:class:`RunContext`, an MLflow run
context provider that envcap registers through its ``mlflow.run_context_provider``
entry point); when the command has ended, envcap finds those runs in the tracking store
(``MLFLOW_TRACKING_URI``, as the command saw it) and attaches the environment to each.
A command that made no MLflow run gets one, made by envcap, with the run's parameters,
metrics and exit status.

Attached are the manifest, as the artifact ``envcap/manifest.json``, and the tags
``envcap.run_id``, ``envcap.env_id``, ``envcap.platform_id``, ``envcap.manifest`` and
``envcap.git.commit``, ``envcap.git.branch``, ``envcap.git.dirty``, ``envcap.git.remote``
(redacted, as in the run record). MLflow is imported only when one of these is called.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from ..core.errors import UsageError
from . import environment_facts, manifest_json

ARTIFACT_DIR = "envcap"
MANIFEST_ARTIFACT = "envcap/manifest.json"


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise UsageError("the MLflow integration needs MLflow: pip install 'envcap[mlflow]'") from exc
    return mlflow


def tags_for(facts: dict[str, Any]) -> dict[str, str]:
    """The MLflow tags for :func:`~envcap.integrations.environment_facts` (text, as MLflow keeps)."""
    tags = {f"envcap.{key}": str(facts[key]) for key in ("run_id", "env_id", "platform_id", "manifest")
            if facts.get(key)}
    for key, value in (facts.get("git") or {}).items():
        tags[f"envcap.git.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return tags


def log_environment(run_id: str | None = None, *, client: Any = None, record: Any = None) -> str:
    """Attach the environment to the MLflow run ``run_id`` (default: the active one).

    ``record`` is the envcap run record to describe; without it, the envcap run this
    script reports into, and a snapshot taken here. Returns the MLflow run id.
    """
    mlflow = _mlflow()
    from mlflow.tracking import MlflowClient

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise UsageError("no active MLflow run: call this inside `with mlflow.start_run():`, or give run_id")
        run_id = active.info.run_id
    from mlflow.entities import RunTag

    client = client or MlflowClient()
    facts = environment_facts(record)
    # One request (one transaction in a SQL store) for every tag.
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags_for(facts).items()])
    with tempfile.TemporaryDirectory(prefix="envcap-mlflow-") as scratch:
        path = os.path.join(scratch, "manifest.json")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(manifest_json(record))
        client.log_artifact(run_id, path, artifact_path=ARTIFACT_DIR)
    if record is None:
        _label_envcap_run(run_id)
    return run_id


def _label_envcap_run(mlflow_run_id: str) -> None:
    from ..runs.api import active_run

    run = active_run()
    if run is not None:
        run.label("mlflow.run_id", mlflow_run_id)


class RunContext:
    """An MLflow run context provider: runs started inside an envcap run are tagged with it.

    MLflow calls it for every run it creates (``mlflow.start_run``), through the entry
    point ``mlflow.run_context_provider`` in envcap's package metadata.
    """

    def in_context(self) -> bool:
        return bool(os.environ.get("ENVCAP_RUN_ID"))

    def tags(self) -> dict[str, str]:
        return {"envcap.run_id": os.environ["ENVCAP_RUN_ID"]}


def check_available() -> None:
    """Refuse ``envcap run --mlflow`` before anything runs when MLflow is not installed."""
    import importlib.util

    try:
        found = importlib.util.find_spec("mlflow") is not None
    except ImportError:
        found = False
    if not found:
        raise UsageError("--mlflow needs MLflow in envcap's environment: pip install 'envcap[mlflow]'")


def prepare() -> threading.Thread:
    """Start, in the background, what ``envcap run --mlflow`` needs once the command has ended.

    Importing MLflow and its SQL store's code costs seconds (about 10 s each on a loaded
    machine), and a tracking database that does not exist yet costs seconds more: MLflow
    makes it by running its whole chain of schema migrations. Done after the command,
    that was all of the time ``--mlflow`` added. Started with the command, the imports
    run while the command does, and so does the making of the empty tracking database,
    once per MLflow version, in envcap's cache (:func:`_template`), never where the
    command may be making its own. After the command, a copy of it is put in place when
    the command made no database (:func:`_place_template`).
    """

    def load() -> None:
        try:
            import mlflow
            from mlflow.tracking import MlflowClient  # noqa: F401

            uri = mlflow.get_tracking_uri()
            if uri.split(":", 1)[0].split("+", 1)[0] in _SQL_SCHEMES:
                import mlflow.store.tracking.sqlalchemy_store
            path = _sqlite_path(uri)
            if path is not None and not os.path.exists(path):
                _template()
        except Exception:  # noqa: BLE001 - it is all tried again, and reported, afterwards
            pass

    thread = threading.Thread(target=load, name="envcap-mlflow-prepare", daemon=True)
    thread.start()
    global _prepared
    _prepared = thread
    return thread


_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_prepared: threading.Thread | None = None


def _sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` tracking URI, as SQLAlchemy (and MLflow) open it."""
    if not uri.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return database if database and database != ":memory:" else None


def template_path() -> str:
    """Where :func:`_template` keeps the empty tracking database of this MLflow version."""
    import mlflow

    from ..core.config import cache_dir

    return os.path.join(cache_dir(), "mlflow", f"tracking-{mlflow.__version__}.db")


def _template() -> str:
    """An empty SQLite tracking database at this MLflow's newest schema: its tables, made by
    MLflow's own migrations, and no experiment (MLflow makes the default one, with its
    artifact location, when it opens the copy). Made once per MLflow version; written
    to a file of its own and renamed into place, so a reader never sees half of it."""
    path = template_path()
    if os.path.exists(path):
        return path
    import logging

    from mlflow.store.db import utils as db_utils

    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".tracking-", suffix=".db", dir=directory)
    os.close(fd)
    # MLflow announces the migrations on stderr, which is the command's while it runs.
    quiet = logging.getLogger(db_utils.__name__)
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    engine = db_utils.create_sqlalchemy_engine(f"sqlite:///{partial}")
    try:
        db_utils._initialize_tables(engine)
        db_utils._verify_schema(engine)
        engine.dispose()
        os.replace(partial, path)
    finally:
        quiet.setLevel(level)
        engine.dispose()
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def _place_template(uri: str) -> bool:
    """When the tracking database of ``uri`` is a SQLite file that does not exist, put a copy
    of :func:`_template` there (made while the command ran) instead of letting MLflow
    run its migrations now. The copy appears whole or not at all (a hard link of a
    finished file, which never replaces one that exists). True when it was put there."""
    import shutil

    path = _sqlite_path(uri)
    if path is None or os.path.exists(path):
        return False
    template = template_path()
    if not os.path.exists(template):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Made as sqlite would make it (the umask's mode), under a name of its own.
    partial = os.path.join(directory, f".mlflow-{os.getpid()}-{threading.get_ident()}.db")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        shutil.copyfile(template, partial)
        os.link(partial, path)
    except OSError:  # there now (made by someone else), or no hard links here: MLflow makes it
        return False
    finally:
        os.unlink(partial)
    return True


def attach_command_run(record: Any) -> list[str]:
    """After ``envcap run --mlflow``: attach ``record``'s environment to the command's MLflow runs.

    Returns their ids; when the command made none, one is made for it here.
    """
    mlflow = _mlflow()
    if _prepared is not None:
        _prepared.join()
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

    try:
        _place_template(mlflow.get_tracking_uri())
    except Exception:  # noqa: BLE001 - without the copy, MLflow makes the database itself
        pass
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`envcap.run_id` = '{record.id}'") \
        if experiments else []
    ids = [r.info.run_id for r in found]
    if not ids:
        ids = [_make_run(client, record, RunStatus)]
    for run_id in ids:
        log_environment(run_id, client=client, record=record)
    return ids


def _make_run(client: Any, record: Any, statuses: Any) -> str:
    import json

    from ..core.run import run_id_time

    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment is None and name:
        found = client.get_experiment_by_name(name)
        experiment = found.experiment_id if found is not None else client.create_experiment(name)
    start_ms = int(run_id_time(record.id) * 1000)
    run = client.create_run(experiment or "0", start_time=start_ms,
                            tags={"mlflow.runName": f"envcap-{record.id[:10].lower()}", "mlflow.source.name":
                                  record.command[:500], "envcap.run_id": record.id})
    run_id = run.info.run_id
    for p in record.params:
        value = p.value if isinstance(p.value, str) else json.dumps(p.value)
        client.log_param(run_id, p.name, value[:6000])
    for key, value in record.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            client.log_metric(run_id, key, float(value))
    status = "FINISHED" if record.status == "ok" else ("KILLED" if record.status == "killed" else "FAILED")
    end_ms = start_ms + int((record.duration_s or 0) * 1000)
    client.set_terminated(run_id, status=status, end_time=end_ms)
    return str(run_id)
