"""Slurm through its own commands: ``sbatch`` to submit a job array, ``scontrol show job``
to learn how each task ended, ``scancel``.

Plain ``sbatch`` rather than submitit: submitit learns job states from ``sacct``, which
answers "accounting storage is disabled" on a cluster without ``slurmdbd``. ``scontrol
show job`` answers on every cluster, for as long as the controller keeps a finished job
(``MinJobAge``, 300 s by default); the job also writes its own end into the store, so a
job the controller has forgotten is still accounted for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core import proc
from ..core.errors import EnvcapError

# Variables of the caller that sbatch itself may read (where the controller is, and
# its own defaults); nothing else of the caller's environment reaches sbatch, and the
# job gets none of it (--export=NONE).
_SBATCH_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "SLURM_CONF")
_SBATCH_TIMEOUT = 60.0


class SlurmError(EnvcapError):
    """A Slurm command failed or is missing."""


@dataclass(frozen=True, slots=True)
class TaskState:
    task: int
    job_id: str  # ARRAYID_TASK
    state: str  # PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, FAILED, ...
    exit_code: str  # "0:0", "3:0", "0:15"
    reason: str


def _run(argv: Sequence[str], what: str) -> str:
    env = {k: os.environ[k] for k in _SBATCH_ENV if k in os.environ}
    try:
        out = proc.run(argv, timeout=_SBATCH_TIMEOUT, env=env)
    except Exception as exc:  # noqa: BLE001 - subprocess.TimeoutExpired, said plainly
        raise SlurmError(f"{argv[0]} did not answer ({exc})") from None
    if out is None:
        raise SlurmError(f"{argv[0]} is not installed here: --slurm needs Slurm's client commands "
                         "(Debian's slurm-client) on this machine")
    if out.returncode != 0:
        raise SlurmError(f"{what} failed: {(out.stderr or out.stdout).strip()[:500]}")
    return out.stdout


def submit(script: str, *, partition: str, tasks: Sequence[int], output: str, name: str,
           time_limit: str | None = None) -> str:
    """Submit ``script`` as a job array with these task indexes; the array's job id."""
    argv = ["sbatch", "--parsable", f"--partition={partition}", f"--array={','.join(str(t) for t in tasks)}",
            f"--job-name={name}", f"--output={output}", "--export=NONE", "--no-requeue"]
    if time_limit:
        argv.append(f"--time={time_limit}")
    argv.append(script)
    text = _run(argv, "sbatch").strip()
    job_id = text.split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {text!r}, not a job id")
    return job_id


def _fields(line: str) -> dict[str, str]:
    out = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


def _tasks(spec: str) -> list[int]:
    """The task indexes of ``ArrayTaskId=`` (``3``, ``0-2``, ``1,4-5%2``)."""
    spec = spec.split("%", 1)[0]
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+))?", part)
        if not m:
            continue
        first, last, step = int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)
        out += list(range(first, last + 1, step))
    return out


def states(array_id: str) -> dict[int, TaskState]:
    """Each task of the array the controller still knows, by task index."""
    env = {k: os.environ[k] for k in _SBATCH_ENV if k in os.environ}
    out = proc.run(["scontrol", "show", "job", "-o", array_id], timeout=_SBATCH_TIMEOUT, env=env)
    if out is None:
        raise SlurmError("scontrol is not installed here")
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return {}  # gone: older than MinJobAge
        raise SlurmError(f"scontrol show job {array_id} failed: {out.stderr.strip()[:300]}")
    found: dict[int, TaskState] = {}
    for line in out.stdout.splitlines():
        f = _fields(line)
        if f.get("ArrayJobId") != array_id or "ArrayTaskId" not in f:
            continue
        for task in _tasks(f["ArrayTaskId"]):
            found[task] = TaskState(task, f"{array_id}_{task}", f.get("JobState", "UNKNOWN"),
                                    f.get("ExitCode", ""), f.get("Reason", ""))
    return found


def cancel(job_id: str) -> None:
    _run(["scancel", job_id], f"scancel {job_id}")


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export NAME=VALUE`` lines for a job script (values quoted for sh)."""
    import shlex

    return [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
