"""The ``envcap run``, ``runs``, ``note`` and ``audit`` commands: click code only.

The work is in :mod:`envcap.runs`. ``envcap show RUN`` and ``envcap import BUNDLE``
reach runs through :func:`show_run_if_run` and :func:`envcap.runs.bundle`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..store.base import StoreBackend
from .common import echo, err, open_store


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A hyperparameter (repeatable); VALUE is read as JSON when it is JSON.")
@click.option("--params-file", "params_files", multiple=True, metavar="FILE",
              help="Hyperparameters from a YAML, JSON or TOML file (repeatable).")
@click.option("--seed", "seeds", multiple=True, metavar="N|NAME=N",
              help="The global seed, or a named one (repeatable); given to the command as ENVCAP_SEED.")
@click.option("--data", "data", multiple=True, metavar="PATH", help="A file or directory the run reads (repeatable).")
@click.option("--note", "notes", multiple=True, metavar="TEXT", help="A note to keep with the run.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")
@click.option("--output", "outputs", multiple=True, metavar="PATH", help="A file or directory to hash after the run.")
@click.option("--python", "python", metavar="PATH",
              help="The interpreter whose environment to record (default: the one the command runs).")
@click.option("--mlflow", "mlflow", is_flag=True,
              help="Attach the environment to the MLflow runs the command makes (or make one).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(params: tuple[str, ...], params_files: tuple[str, ...], seeds: tuple[str, ...], data: tuple[str, ...],
        notes: tuple[str, ...], labels: tuple[str, ...], outputs: tuple[str, ...], python: str | None,
        mlflow: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND and record it: environment, code, parameters, seeds, data, metrics.

    \b
    envcap run --param lr=0.01 --seed 7 --data data/train.csv -- python train.py
    The command's output streams through untouched; envcap exits with its exit status.
    """
    from ..runs.runner import execute, plan_run

    plan = plan_run(list(command), params=params, params_files=params_files, seeds=seeds, data=data,
                    notes=notes, labels=labels, outputs=outputs, python=python)
    if mlflow:
        from ..integrations.mlflow import check_available, prepare

        check_available()
        prepare()  # MLflow's import, while the command runs
    with open_store(create=True) as store:
        record = execute(store, plan, announce=lambda run_id: err(f"run {run_id}"))
        if mlflow:
            _attach_mlflow(store, record)
    from ..runs.query import run_json
    from ..runs.describe import status_text

    problems = "".join(f"\nenvcap:   {p}" for p in record.problems)
    err(f"run {record.id} recorded: {status_text(run_json(record))}, {record.duration_s:.2f} s{problems}")
    code = record.exit_code if record.exit_code is not None else 1
    if mlflow and sys.stdout is sys.__stdout__:
        # Only as the program itself: a caller running the command in its own process
        # (click's CliRunner swaps the streams) keeps its process.
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit as Python would, less the teardown of every module one by one: with MLflow's
    thousands loaded that alone took about 1 s after the command had ended and all was
    written. As at a normal exit, threads that are not daemons are told to stop (thread
    pools) and waited for, the exit handlers run, and the streams are flushed."""
    import atexit
    import os
    import threading

    # What the interpreter's own exit calls first (its thread pools' hooks, then a join
    # of every thread that is not a daemon).
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _attach_mlflow(store: StoreBackend, record: Any) -> None:
    """The command has ended and is recorded: tell MLflow. A failure here is a warning."""
    from ..core.run import utc_now
    from ..integrations.mlflow import attach_command_run
    from ..store.runs import Note, add_note

    try:
        ids = attach_command_run(record)
    except Exception as exc:  # noqa: BLE001 - the run is recorded; MLflow is told as a courtesy
        err(f"warning: run {record.id}: the environment could not be attached to MLflow: {exc}")
        return
    add_note(store, record.id, Note(utc_now(), f"MLflow run(s): {', '.join(ids)}"))
    err(f"run {record.id}: environment attached to MLflow run(s) {', '.join(ids)}")


@click.command(name="runs")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Keep runs where COND holds (repeatable), e.g. 'params.lr>0.01', 'env_id=sha256:ab12'.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Keep runs with this label (repeatable).")
@click.option("--sort", metavar="FIELD", help="Sort by FIELD (e.g. metrics.acc); -FIELD for descending.")
@click.option("--limit", type=int, metavar="N", help="Show at most N runs (the newest, unless sorted).")
def runs(as_json: bool, where: tuple[str, ...], labels: tuple[str, ...], sort: str | None, limit: int | None) -> None:
    """List recorded runs, oldest first."""
    from .quick import list_runs

    list_runs(as_json=as_json, where=where, labels=labels, sort=sort, limit=limit, echo=click.echo)


def _view(store: StoreBackend, ref: str) -> dict[str, Any]:
    from ..store import runs as runs_store
    from ..runs.query import run_json

    from ..runs.query import mark_key

    run_id = runs_store.resolve(store, ref)
    return mark_key(store, [run_json(runs_store.load(store, run_id), runs_store.notes(store, run_id),
                                     runs_store.reproductions(store, run_id))])[0]


def show_run_if_run(ref: str, as_json: bool) -> bool:
    """``envcap show REF`` for a run id (or prefix); False when REF names no run."""
    from ..runs.query import find_run_ref
    from ..runs.describe import show_lines

    found = find_run_ref(ref)
    if found is None:
        return False
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        for line in show_lines(found):
            echo(line)
    return True


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--name", "names", multiple=True, metavar="METRIC", help="Only this metric (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def metrics(run_ref: str, names: tuple[str, ...], as_json: bool) -> None:
    """Show every recorded point of a run's metrics: name, step, value."""
    from ..store import runs as runs_store
    from ..runs.describe import metrics_lines
    from ..runs.query import metric_history

    with open_store() as store:
        record = runs_store.load(store, runs_store.resolve(store, run_ref))
        history = metric_history(store, record, names)
    if as_json:
        click.echo(json.dumps({"run": record.id, "metrics": history}, indent=2, ensure_ascii=False))
    elif not history:
        click.echo(f"run {record.id} recorded no metrics")
    else:
        for line in metrics_lines(history):
            click.echo(line)


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("text")
def note(run_ref: str, text: str) -> None:
    """Add a note to a run (notes are the one thing added to a finished run)."""
    from ..core.redact import default_redactor
    from ..store import runs as runs_store
    from ..core.run import utc_now

    with open_store() as store:
        run_id = runs_store.resolve(store, run_ref)
        runs_store.add_note(store, run_id, runs_store.Note(utc_now(), default_redactor().free_text(text)))
    click.echo(f"note added to run {run_id}")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def audit(run_ref: str, as_json: bool) -> None:
    """Re-verify a run: stored hashes, parameter files, data, outputs, environment.

    Exit 0 when everything matches, 1 on any mismatch, 2 on error.
    """
    from ..store import runs as runs_store
    from ..runs.audit import audit_run

    with open_store() as store:
        run_id = runs_store.resolve(store, run_ref)
        report = audit_run(store, run_id)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in report.lines():
            echo(line)
    sys.exit(0 if report.ok else 1)
