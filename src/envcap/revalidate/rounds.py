"""``envcap revalidate``: rebuild key runs in a round, through Slurm or one after another here.

A round is named (``--round``; by default the UTC date, since revalidation is a routine
that runs once a day or a week). Within a round each key run is revalidated once: a run
already done is skipped, a job still pending or running is waited on, never submitted
again, so the same command run twice does the work once. A job that was cancelled, timed
out or failed is reported as such and left alone; ``--resume`` submits what is missing
(those, and runs never submitted).

Through Slurm, the round's missing runs go out as one job array (``sbatch --array``), one
task per run, each task ``envcap revalidate-job ROUND``. The job script exports only what
the job needs (``--export=NONE``: sbatch would otherwise hand the job the caller's whole
environment): the store's URL without its password, and a 0600 libpq password file
(:func:`envcap.store.childenv.child_store_env`), PATH, HOME and envcap's own settings.
How a job ended is read from ``scontrol show job`` (no ``sacct``: it needs
``slurmdbd``) and from the job's own row in the store.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..store import revalidations
from ..store.revalidations import Job
from . import slurm
from ..store.base import StoreBackend

Progress = Callable[[str], None]

# The caller's variables a job needs besides the store (none of them a secret).
JOB_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH", "ENVCAP_HOME", "ENVCAP_CONFIG", "ENVCAP_CACHE_DIR", "DOCKER_HOST",
           "SLURM_CONF")
_ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "STAGE_OUT")
_ENDED = {"CANCELLED": ("cancelled", "cancelled through the scheduler (scancel)"),
          "TIMEOUT": ("timeout", "ran past its time limit and was stopped by the scheduler"),
          "DEADLINE": ("timeout", "reached its deadline and was stopped by the scheduler"),
          "PREEMPTED": ("cancelled", "preempted by the scheduler"),
          "NODE_FAIL": ("failed", "its node failed"),
          "BOOT_FAIL": ("failed", "its node did not boot"),
          "OUT_OF_MEMORY": ("failed", "ran out of memory"),
          "FAILED": ("failed", "the job failed")}


@dataclass(frozen=True, slots=True)
class Options:
    partition: str | None = None  # None: here, one after another
    round: str | None = None
    resume: bool = False
    wait: bool = True
    time_limit: str | None = None  # sbatch --time
    rtol: float = 0.0
    atol: float = 0.0
    poll_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Outcome:
    round: str
    jobs: tuple[Job, ...]  # the rows of the runs asked for, as they ended (or stand)
    submitted: tuple[str, ...]  # run ids sent to the scheduler (or run here) by this call
    skipped: tuple[tuple[str, str], ...]  # (run id, why) of those left as they were
    array: str | None = None

    @property
    def exit_code(self) -> int:
        if all(j.state == "done" and j.verdict == "reproduced" for j in self.jobs):
            return 0
        return 1

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "array": self.array, "submitted": list(self.submitted),
                "skipped": [{"run": r, "why": w} for r, w in self.skipped],
                "jobs": [j.to_dict() for j in self.jobs], "summary": revalidations.summary(list(self.jobs))}


def default_round() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def select_key_runs(store: StoreBackend, where: Iterable[str] = ()) -> list[str]:
    """The key runs that meet every ``--where`` condition, oldest first."""
    from ..runs.query import run_json, select
    from ..store import runs as runs_store

    keys = revalidations.key_ids(store)
    where = list(where)
    if not where:
        return keys
    views = [dict(run_json(record), key=True) for _, record, _, _, _ in runs_store.load_many(store, keys)
             if record is not None]
    return [v["id"] for v in select(views, where=where)]


def revalidate(store: StoreBackend, run_ids: list[str], options: Options, *, progress: Progress = lambda _: None,
               store_url: str | None = None) -> Outcome:
    round_id = options.round or (revalidations.latest_round(store) if options.resume else None) or default_round()
    existing = {j.run_id: j for j in revalidations.jobs(store, round_id)}
    targets = list(run_ids)
    if options.resume:
        targets += [r for r in existing if r not in targets]
    if not targets:
        raise UsageError("no key runs to revalidate: mark some with `envcap key RUN…`"
                         + (f" (round {round_id} has none either)" if options.resume else ""))
    alive = _alive_states(existing.values())
    submit: list[str] = []
    skipped: list[tuple[str, str]] = []
    for run_id in targets:
        job = existing.get(run_id)
        if job is None:
            submit.append(run_id)
        elif job.state == "done":
            skipped.append((run_id, f"already revalidated in round {round_id}: {job.verdict}"))
        elif _is_alive(job, alive):
            skipped.append((run_id, f"its job {job.job_id} is still {job.state}: waiting for it"))
        elif options.resume:
            submit.append(run_id)
        else:
            skipped.append((run_id, f"its job ended {job.state} ({job.detail}): --resume submits it again"))
    progress(f"round {round_id}: {len(submit)} to run, {len(skipped)} left as they are")
    array = None
    passfile: str | None = None
    if submit:
        first = max((j.task for j in existing.values()), default=-1) + 1
        created = {r: existing[r].created_at for r in submit if r in existing}
        rows = [Job(round_id, r, first + i, "slurm" if options.partition else "local", None, "pending", None, None,
                    "", created_at=created.get(r, "")) for i, r in enumerate(submit)]
        revalidations.put_jobs(store, rows)
        if options.partition:
            array, passfile = _submit_slurm(store, round_id, rows, options, progress, store_url)
        else:
            _run_here(store, round_id, rows, options, progress)
    if options.partition and options.wait:
        _wait(store, round_id, targets, options, progress)
        if passfile and all(j.final for j in revalidations.jobs(store, round_id)):
            # Every job of the round has ended: the password file it used goes too.
            Path(passfile).unlink(missing_ok=True)
    final = {j.run_id: j for j in revalidations.jobs(store, round_id)}
    return Outcome(round_id, tuple(final[r] for r in targets if r in final), tuple(submit), tuple(skipped), array)


# -- through Slurm --------------------------------------------------------------------------


def _workdir(store: StoreBackend, round_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in round_id)
    path = Path(store.path) / "revalidate" / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_environment(store: StoreBackend, store_url: str | None, private_dir: Path) -> dict[str, str]:
    """What a job's script exports: the store without its password, and the caller's
    non-secret settings in :data:`JOB_ENV`."""
    from ..store.childenv import child_store_env

    env = {k: os.environ[k] for k in JOB_ENV if os.environ.get(k)}
    if store.kind == "postgresql":
        url = store_url or getattr(store, "url", None)
        if not url:
            raise UsageError("cannot tell the jobs where the shared store is")
        env.update(child_store_env(url, private_dir))
    else:
        env["ENVCAP_STORE"] = str(store.path)
    return env


def job_script(round_id: str, env: dict[str, str], options: Options) -> str:
    import shlex

    argv = [sys.executable, "-m", "envcap", "revalidate-job", round_id]
    if options.rtol:
        argv += ["--rtol", repr(options.rtol)]
    if options.atol:
        argv += ["--atol", repr(options.atol)]
    lines = ["#!/bin/sh",
             f"# envcap revalidate, round {round_id}: one array task per key run (its row's task =",
             "# SLURM_ARRAY_TASK_ID). Submitted with --export=NONE: the job sees only what is exported here.",
             *slurm.export_lines(env),
             "exec " + " ".join(shlex.quote(a) for a in argv), ""]
    return "\n".join(lines)


def _submit_slurm(store: StoreBackend, round_id: str, rows: list[Job], options: Options, progress: Progress,
                  store_url: str | None) -> tuple[str, str | None]:
    """Submit the rows as one job array; its id, and the password file its jobs read (if any)."""
    assert options.partition
    work = _workdir(store, round_id)
    env = job_environment(store, store_url, work / "private")
    script = work / f"job-{rows[0].task}.sh"
    script.write_text(job_script(round_id, env, options))
    script.chmod(0o700)
    try:
        array = slurm.submit(str(script), partition=options.partition, tasks=[r.task for r in rows],
                             output=str(work / "slurm-%A_%a.out"), name=f"envcap-revalidate-{round_id}",
                             time_limit=options.time_limit)
    except slurm.SlurmError as exc:
        for r in rows:
            revalidations.update_job(store, round_id, r.run_id, state="failed", detail=f"not submitted: {exc}")
        raise
    for r in rows:
        revalidations.update_job(store, round_id, r.run_id, state="pending", job_id=f"{array}_{r.task}",
                                 only_if_not_final=True)
    progress(f"submitted job array {array} to partition {options.partition}: "
             f"{len(rows)} task(s), logs in {work}")
    return array, env.get("PGPASSFILE")


def _alive_states(jobs: Iterable[Job]) -> dict[str, slurm.TaskState]:
    """The scheduler's view of every unfinished Slurm job among ``jobs``, by job id."""
    found: dict[str, slurm.TaskState] = {}
    arrays = {j.job_id.split("_", 1)[0] for j in jobs
              if j.scheduler == "slurm" and not j.final and j.job_id}
    for array in sorted(arrays):
        for state in slurm.states(array).values():
            found[state.job_id] = state
    return found


def _is_alive(job: Job, alive: dict[str, slurm.TaskState]) -> bool:
    if job.final or job.scheduler != "slurm" or not job.job_id:
        return False
    state = alive.get(job.job_id)
    return state is not None and state.state in _ALIVE


def _wait(store: StoreBackend, round_id: str, run_ids: list[str], options: Options, progress: Progress) -> None:
    """Until every job of these runs has ended: the scheduler's word, then the job's own row."""
    announced: dict[str, str] = {}
    while True:
        rows = [j for j in revalidations.jobs(store, round_id) if j.run_id in run_ids]
        pending = [j for j in rows if not j.final]
        if not pending:
            return
        states = _alive_states(pending)
        for job in pending:
            seen = states.get(job.job_id or "")
            if seen is not None and seen.state in _ALIVE:
                if announced.get(job.run_id) != seen.state:
                    progress(f"run {job.run_id}: job {job.job_id} {seen.state.lower()}")
                    announced[job.run_id] = seen.state
                continue
            _settle(store, round_id, job, seen, progress)
        time.sleep(options.poll_s)


def _settle(store: StoreBackend, round_id: str, job: Job, seen: slurm.TaskState | None, progress: Progress) -> None:
    """Record how a job the scheduler no longer runs ended."""
    now = next((j for j in revalidations.jobs(store, round_id) if j.run_id == job.run_id), job)
    if now.final:
        progress(f"run {job.run_id}: job {job.job_id} {now.state}" + (f": {now.verdict}" if now.verdict else ""))
        return
    if seen is None:
        state, why = "failed", "the scheduler no longer knows the job and it wrote no verdict"
    elif seen.state in _ENDED:
        state, why = _ENDED[seen.state]
    elif seen.state == "COMPLETED":
        # The job's own last write comes before its process ends: read the row once more.
        time.sleep(0.5)
        again = next((j for j in revalidations.jobs(store, round_id) if j.run_id == job.run_id), job)
        if again.final:
            return
        state, why = "failed", "the job ended without a verdict"
    else:
        state, why = "failed", f"the scheduler says {seen.state}"
    if seen is not None and seen.exit_code:
        why += f" (exit code {seen.exit_code})"
    revalidations.update_job(store, round_id, job.run_id, state=state, detail=why, only_if_not_final=True)
    progress(f"run {job.run_id}: job {job.job_id} {state}: {why}; no verdict was written")


# -- here -----------------------------------------------------------------------------------


def _run_here(store: StoreBackend, round_id: str, rows: list[Job], options: Options, progress: Progress) -> None:
    from ..core.errors import EnvcapError
    from ..reproduce.errors import Stopped
    from .job import run_job

    for row in rows:
        progress(f"run {row.run_id}: rebuilding here ({row.task + 1 - rows[0].task} of {len(rows)})")
        try:
            done = run_job(store, round_id, row.task, job_id=f"local_{row.task}", rtol=options.rtol,
                           atol=options.atol, progress=progress, output=sys.stderr.buffer)
            progress(f"run {row.run_id}: {done.verdict}")
        except Stopped as exc:
            revalidations.update_job(store, round_id, row.run_id, state="cancelled", detail=str(exc))
            progress(f"run {row.run_id}: {exc}; the rest of the round is left for --resume")
            return
        except EnvcapError as exc:
            progress(f"run {row.run_id}: failed: {exc}")
