"""One revalidation job: ``envcap rebuild`` of one key run, on the node it was given.

It runs as a Slurm array task (``envcap revalidate-job ROUND``, its run found by
``SLURM_ARRAY_TASK_ID``) or in the caller's process (``envcap revalidate`` without
``--slurm``). The rebuild writes its verdict into the store as a reproduction of the
run, with the node's platform_id (captured in the container) and the round; the job's
row says how far it got.

A SIGTERM (``scancel``, the time limit, the node going down) or a SIGINT stops it: the
rebuild's container is removed as the stack unwinds, the rebuild run is finished with no
verdict, and the row says ``stopped`` until the submitter learns from the scheduler
whether it was a cancel or a timeout. No NOT REPRODUCED is ever written for a job that
was stopped.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import BinaryIO

from ..core.errors import EnvcapError, UsageError
from ..reproduce.errors import Stopped
from ..store import revalidations
from ..store.base import StoreBackend

Progress = Callable[[str], None]


def _stop(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    raise Stopped(name, "the scheduler ended the job" if signum == signal.SIGTERM else "interrupted")


def run_job(store: StoreBackend, round_id: str, task: int, *, job_id: str, rtol: float = 0.0, atol: float = 0.0,
            progress: Progress = lambda _: None, output: BinaryIO | None = None) -> revalidations.Job:
    """Rebuild the run of this task of the round; the job's row as it ends."""
    from ..reproduce.plan import RebuildOptions
    from ..reproduce.rebuild import rebuild

    job = revalidations.job(store, round_id, task)
    if job is None:
        raise UsageError(f"round {round_id} has no task {task}")
    if job.state == "done":
        progress(f"run {job.run_id} was already revalidated in round {round_id}")
        return job
    node = socket.gethostname()
    revalidations.update_job(store, round_id, job.run_id, state="running", detail=f"on {node}", job_id=job_id)
    options = RebuildOptions(rtol=rtol, atol=atol,
                             purpose={"revalidation": round_id, "node": node, "job": job_id})
    handlers = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = rebuild(store, job.run_id, options, progress=progress, output=output)
    except Stopped as exc:
        revalidations.update_job(store, round_id, job.run_id, state="stopped", detail=str(exc),
                                 only_if_not_final=True)
        raise
    except EnvcapError as exc:
        revalidations.update_job(store, round_id, job.run_id, state="failed", detail=str(exc)[:1000])
        raise
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    verdict = report.verdict
    text = verdict.text if verdict is not None else None
    reasons = "; ".join(verdict.reasons) if verdict is not None else ""
    revalidations.update_job(store, round_id, job.run_id, state="done", rebuild_id=report.rebuild, verdict=text,
                             detail=reasons[:1000])
    found = revalidations.job(store, round_id, task)
    assert found is not None
    return found
