"""``envcap key``, ``envcap revalidate``, ``envcap drift`` and ``envcap bisect``: click code
only; the work is in :mod:`envcap.revalidate` (and :mod:`envcap.runs.drift`)."""

from __future__ import annotations

import json
import sys

import click

from .common import echo, err, open_store


@click.command()
@click.argument("run_refs", metavar="RUN…", nargs=-1)
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Mark every run that meets COND (as envcap runs --where; repeatable).")
@click.option("--note", default="", help="Why these runs matter (kept with the mark).")
@click.option("--remove", is_flag=True, help="Take the mark off instead.")
@click.option("--list", "list_", is_flag=True, help="List the key runs.")
def key(run_refs: tuple[str, ...], where: tuple[str, ...], note: str, remove: bool, list_: bool) -> None:
    """Mark runs as key runs: the results a team relies on, revalidated by envcap revalidate."""
    from ..core.errors import UsageError
    from ..runs.query import Condition
    from ..store import revalidations
    from ..store import runs as runs_store

    for w in where:
        Condition.parse(w)
    with open_store(create=not list_) as store:
        if list_:
            for run_id in revalidations.key_ids(store):
                click.echo(run_id)
            return
        ids = [runs_store.resolve(store, r) for r in run_refs]
        if where:
            from ..runs.query import find_run_ids

            ids += [i for i in find_run_ids(store, where=where) if i not in ids]
        if not ids:
            raise UsageError("name runs (RUN…) or --where COND: no run was chosen")
        if remove:
            revalidations.unmark(store, ids)
            for run_id in ids:
                click.echo(f"{run_id}: no longer a key run")
            return
        new = revalidations.mark(store, ids, note)
    for run_id in ids:
        click.echo(f"{run_id}: key run" + ("" if run_id in new else " (already)"))


@click.command()
@click.option("--where", "where", multiple=True, metavar="COND", help="Only the key runs that meet COND.")
@click.option("--slurm", "partition", metavar="PARTITION",
              help="Submit one Slurm job per run (a job array) to this partition; without it, run here.")
@click.option("--round", "round_id", metavar="NAME", help="The round (default: today's UTC date).")
@click.option("--resume", is_flag=True, help="Run again what the round is missing: cancelled, timed out, failed.")
@click.option("--no-wait", is_flag=True, help="Submit and return (a later envcap revalidate waits for the round).")
@click.option("--time", "time_limit", metavar="LIMIT", help="Each job's time limit (sbatch --time, e.g. 30 or 1:00:00).")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for metrics.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance for metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print the round as JSON.")
def revalidate(where: tuple[str, ...], partition: str | None, round_id: str | None, resume: bool, no_wait: bool,
               time_limit: str | None, rtol: float, atol: float, as_json: bool) -> None:
    """Rebuild the key runs (envcap rebuild each, in its image) and record each verdict.

    Exit 0 when every run reproduced, 1 when one did not or its job did not finish.
    """
    from ..revalidate.rounds import Options, revalidate as run_round, select_key_runs
    from ..runs.query import Condition
    from ..store.factory import store_url

    for w in where:
        Condition.parse(w)
    options = Options(partition=partition, round=round_id, resume=resume, wait=not no_wait, time_limit=time_limit,
                      rtol=rtol, atol=atol)
    with open_store(create=True) as store:
        runs = select_key_runs(store, where)
        outcome = run_round(store, runs, options, progress=err, store_url=store_url())
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
        sys.exit(outcome.exit_code)
    for why in outcome.skipped:
        echo(f"{why[0]}  skipped: {why[1]}")
    for job in outcome.jobs:
        result = job.verdict if job.state == "done" else job.state.upper()
        extra = f"  → run {job.rebuild_id}" if job.rebuild_id else ""
        echo(f"{job.run_id}  {result}{extra}  (job {job.job_id or '-'}{': ' + job.detail if job.detail else ''})")
    from ..store.revalidations import summary

    click.echo(f"round {outcome.round}: " + ", ".join(f"{n} {s}" for s, n in summary(list(outcome.jobs)).items()))
    sys.exit(outcome.exit_code)


@click.command(name="revalidate-job")
@click.argument("round_id", metavar="ROUND")
@click.option("--task", type=int, help="The task (default: $SLURM_ARRAY_TASK_ID).")
@click.option("--rtol", type=float, default=0.0)
@click.option("--atol", type=float, default=0.0)
def revalidate_job(round_id: str, task: int | None, rtol: float, atol: float) -> None:
    """Run one task of a revalidation round: what each Slurm job of envcap revalidate runs."""
    import os

    from ..core.errors import UsageError
    from ..reproduce.errors import Stopped
    from ..revalidate.job import run_job

    if task is None:
        raw = os.environ.get("SLURM_ARRAY_TASK_ID", "")
        if not raw.isdigit():
            raise UsageError("no --task and no SLURM_ARRAY_TASK_ID: this command runs as a Slurm array task")
        task = int(raw)
    job_id = f"{os.environ.get('SLURM_ARRAY_JOB_ID', 'local')}_{task}"
    with open_store() as store:
        try:
            job = run_job(store, round_id, task, job_id=job_id, rtol=rtol, atol=atol, progress=err,
                          output=sys.stderr.buffer)
        except Stopped as exc:
            err(f"{exc}: the container is stopped and no verdict is written")
            sys.exit(143)
    err(f"run {job.run_id}: {job.verdict} (rebuild run {job.rebuild_id})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print every key run's state as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List the key runs that did not drift too.")
def drift(as_json: bool, show_all: bool) -> None:
    """List the key runs whose latest revalidation differs from the recording or from the one
    before, and why. Exit 1 when any drifted (so that a scheduled job can alert)."""
    from ..runs.drift import key_runs

    with open_store() as store:
        found = key_runs(store)
    drifted = [k for k in found if k.drift]
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in (found if show_all else drifted)], indent=2))
        sys.exit(1 if drifted else 0)
    for k in found if show_all else drifted:
        latest = k.latest
        echo(f"{k.run}  {k.status.upper()}" + (f"  (latest revalidation: run {latest.rebuild}, round "
                                                 f"{latest.round}, on {latest.node or 'unknown node'})"
                                                 if latest else ""))
        echo(f"    {k.command}")
        for cause in k.causes:
            echo(f"    - {cause}")
    never = sum(1 for k in found if not k.revalidations)
    click.echo(f"{len(drifted)} of {len(found)} key run(s) drifted" + (f"; {never} never revalidated" if never else ""))
    sys.exit(1 if drifted else 0)


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--good", "good", required=True, metavar="ENV_A", help="The environment the run reproduces in.")
@click.option("--bad", "bad", required=True, metavar="ENV_B", help="The environment it does not reproduce in.")
@click.option("--dry-run", is_flag=True, help="Print the plan (the changes, what needs what) and the number of runs.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for metrics.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance for metrics.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the rollback lockfile.")
@click.option("--keep-images", is_flag=True, help="Keep the intermediate images (removed by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def bisect(run_ref: str, good: str, bad: str, dry_run: bool, rtol: float, atol: float, output: str,
           keep_images: bool, as_json: bool) -> None:
    """Find the Python package change(s) between ENV_A and ENV_B that flip RUN's verdict.

    Exit 0 with the culprit named, 2 when it cannot bisect.
    """
    from pathlib import Path

    from ..revalidate.bisect import Options, bisect as run_bisect

    options = Options(dry_run=dry_run, rtol=rtol, atol=atol, output=Path(output), keep_images=keep_images)
    with open_store() as store:
        outcome = run_bisect(store, run_ref, good, bad, options, progress=err)
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
        return
    echo(f"bisect run {outcome.run}: good {outcome.good[:19]}…, bad {outcome.bad[:19]}…")
    echo(f"{len(outcome.changes)} Python package change(s):")
    for c in outcome.changes:
        echo(f"  {c.text}" + (f"  (needs {', '.join(c.needs)})" if c.needs else ""))
    if outcome.others:
        echo(f"not bisected ({len(outcome.others)} other difference(s), not Python packages):")
        for line in outcome.others[:10]:
            echo(f"  {line}")
    if outcome.dry_run:
        echo("plan: rebuild the run in ENV_A's image (must reproduce) and in ENV_B's (must not), then in "
             "ENV_A's image plus half of the suspects, one layer per step, keeping the half that flips")
        echo(f"steps: at most {outcome.planned} runs for one culprit (2 checks + halving)")
        return
    for s in outcome.steps:
        echo(f"  {s.number}. {s.what}: " + (f"{len(s.changes)} change(s) → {s.verdict}" if s.verdict
                                           else s.note) + (f"  (run {s.rebuild})" if s.rebuild else ""))
    skipped = sum(1 for s in outcome.steps if s.verdict is None)
    echo(f"{outcome.runs} run(s), {skipped} skipped subset(s)")
    for note in outcome.notes:
        echo(f"note: {note}")
    echo("culprit: " + ", ".join(c.text for c in outcome.culprits))
    echo(f"last good image: {outcome.good_image}")
    echo(f"lockfile: {outcome.lockfile} (the bad environment, the culprit held at its good version)")
    echo("pin back:")
    echo(f"  {outcome.pin_command}")
