"""The one place envcap starts other programs.

Every command runs with an argument list (never a shell), a timeout, no standard input
and a C locale so that its output parses the same everywhere.
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple, Sequence


# A NamedTuple, not a dataclass: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    timeout: float = 10.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Result | None:
    """Run ``argv``; ``None`` when the program does not exist.

    A timeout raises ``subprocess.TimeoutExpired``, which probes let through to the
    runner so that it is reported as an unknown rather than mistaken for absence.
    """
    # Imported here: a snapshot whose program answers all come from the cache never
    # starts a program, and need not pay for the module.
    import subprocess

    run_env = dict(os.environ if env is None else env)
    run_env["LC_ALL"] = "C"
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=run_env,
            cwd=cwd,
            check=False,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    return Result(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
