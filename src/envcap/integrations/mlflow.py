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
    """Start importing MLflow and its tracking store's code in the background.

    ``envcap run --mlflow`` needs them only once the command has ended, but importing
    them costs seconds (about 10 s for ``mlflow`` and as much again for its SQL store on
    a loaded machine): done after the command, that was all of the time ``--mlflow``
    added. Started with the command, the import runs while the command does. The
    tracking store itself (which may create the database) is opened only afterwards,
    when the command can no longer be creating it too.
    """

    def load() -> None:
        try:
            import mlflow
            from mlflow.tracking import MlflowClient  # noqa: F401

            uri = os.environ.get("MLFLOW_TRACKING_URI", "")
            if not uri or uri.split(":", 1)[0] in _SQL_SCHEMES:
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        except Exception:  # noqa: BLE001 - the import is tried again, and reported, afterwards
            pass

    thread = threading.Thread(target=load, name="envcap-mlflow-import", daemon=True)
    thread.start()
    return thread


_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def attach_command_run(record: Any) -> list[str]:
    """After ``envcap run --mlflow``: attach ``record``'s environment to the command's MLflow runs.

    Returns their ids; when the command made none, one is made for it here.
    """
    _mlflow()
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

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
