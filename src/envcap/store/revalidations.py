"""Key runs and their revalidations, in the store's index.

::

    key_runs           the runs a team relies on (``envcap key``): one row per run, with
                       when it was marked and an optional note
    revalidation_jobs  one row per (round, run) of ``envcap revalidate``: which scheduler
                       ran it (``slurm`` or ``local``), the job id, its state
                       (``pending``, ``running``, ``done``, ``cancelled``, ``timeout``,
                       ``failed``), the rebuild run it made and its verdict

The verdict itself is the rebuild's record (a reproduction of the run, with the node's
platform_id); the row only says how far the job got, so that ``--resume`` knows what is
missing and a second ``envcap revalidate`` does not submit a run twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .base import StoreBackend as Store


# A job in one of these states will not change by itself; the others may.
FINAL_STATES = ("done", "cancelled", "timeout", "failed")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _ready(store: Store) -> None:
    if not (store.has_table("key_runs") and store.has_table("revalidation_jobs")):
        from ._ddl import SQLITE_TABLES

        store.ensure_schema(SQLITE_TABLES["key_runs"] + SQLITE_TABLES["revalidation_jobs"])


# -- key runs ------------------------------------------------------------------------------


def mark(store: Store, run_ids: list[str], note: str = "") -> list[str]:
    """Mark runs as key runs; return those that were not marked before."""
    _ready(store)
    before = set(key_ids(store))
    stamp = _now()
    store.transaction([("INSERT OR IGNORE INTO key_runs VALUES (?, ?, ?)", (r, stamp, note)) for r in run_ids])
    return [r for r in run_ids if r not in before]


def unmark(store: Store, run_ids: list[str]) -> None:
    _ready(store)
    store.transaction([("DELETE FROM key_runs WHERE run_id = ?", (r,)) for r in run_ids])


def key_ids(store: Store) -> list[str]:
    """Every key run's id, oldest run first."""
    if not store.has_table("key_runs"):
        return []
    return [r[0] for r in store.db.execute("SELECT run_id FROM key_runs ORDER BY run_id")]


def is_key(store: Store, run_id: str) -> bool:
    if not store.has_table("key_runs"):
        return False
    return store.db.execute("SELECT 1 FROM key_runs WHERE run_id = ?", (run_id,)).fetchone() is not None


# -- revalidation jobs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    round: str
    run_id: str
    task: int  # the index in the round's job array
    scheduler: str  # "slurm" or "local"
    job_id: str | None  # the scheduler's id of this array task (ARRAYID_TASK)
    state: str
    rebuild_id: str | None
    verdict: str | None
    detail: str
    updated_at: str = ""
    created_at: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "run": self.run_id, "task": self.task, "scheduler": self.scheduler,
                "job_id": self.job_id, "state": self.state, "rebuild": self.rebuild_id, "verdict": self.verdict,
                "detail": self.detail, "updated_at": self.updated_at}


_COLUMNS = "round, run_id, task, scheduler, job_id, state, rebuild_id, verdict, detail, updated_at, created_at"


def put_jobs(store: Store, jobs: list[Job]) -> None:
    """Write (or overwrite) job rows, all in one transaction."""
    _ready(store)
    stamp = _now()
    store.transaction([(f"INSERT OR REPLACE INTO revalidation_jobs ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (j.round, j.run_id, j.task, j.scheduler, j.job_id, j.state, j.rebuild_id, j.verdict,
                         j.detail, stamp, j.created_at or stamp)) for j in jobs])


def update_job(store: Store, round_id: str, run_id: str, *, state: str, detail: str = "",
               rebuild_id: str | None = None, verdict: str | None = None, job_id: str | None = None,
               only_if_not_final: bool = False) -> None:
    """Move one job to ``state``. ``only_if_not_final`` leaves a job that already ended alone
    (the submitter learning of an end the job itself has already written)."""
    _ready(store)
    guard = " AND state NOT IN ('done', 'cancelled', 'timeout', 'failed')" if only_if_not_final else ""
    sets = "state = ?, detail = ?, updated_at = ?"
    params: list[Any] = [state, detail, _now()]
    for column, value in (("rebuild_id", rebuild_id), ("verdict", verdict), ("job_id", job_id)):
        if value is not None:
            sets += f", {column} = ?"
            params.append(value)
    store.transaction([(f"UPDATE revalidation_jobs SET {sets} WHERE round = ? AND run_id = ?{guard}",
                        (*params, round_id, run_id))])


def jobs(store: Store, round_id: str) -> list[Job]:
    """A round's jobs, in array order."""
    if not store.has_table("revalidation_jobs"):
        return []
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM revalidation_jobs WHERE round = ? ORDER BY task",
                            (round_id,)).fetchall()
    return [Job(*r) for r in rows]


def job(store: Store, round_id: str, task: int) -> Job | None:
    found = [j for j in jobs(store, round_id) if j.task == task]
    return found[0] if found else None


def latest_round(store: Store) -> str | None:
    """The round started last."""
    if not store.has_table("revalidation_jobs"):
        return None
    row = store.db.execute("SELECT round FROM revalidation_jobs GROUP BY round ORDER BY min(created_at) DESC, "
                           "round DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None


def rounds(store: Store) -> list[str]:
    if not store.has_table("revalidation_jobs"):
        return []
    return [r[0] for r in store.db.execute("SELECT round FROM revalidation_jobs GROUP BY round "
                                           "ORDER BY min(created_at), round")]


def summary(jobs_: list[Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in jobs_:
        out[j.state] = out.get(j.state, 0) + 1
    return dict(sorted(out.items()))


def dumps(jobs_: list[Job]) -> str:
    return json.dumps([j.to_dict() for j in jobs_], indent=2)
