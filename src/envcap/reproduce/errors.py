"""Errors of ``envcap rebuild``; each says what to do. Only the CLI makes exit codes of them."""

from __future__ import annotations

# RebuildError lives with the core errors: the container engines (envcap.engines) raise it too.
from ..core.errors import RebuildError

__all__ = ["PreflightError", "RebuildError", "Stopped"]


class PreflightError(RebuildError):
    """The host cannot run the image as the run needs (a GPU driver too old for its CUDA)."""


class Stopped(BaseException):
    """A signal ended the rebuild from outside (a scheduler's SIGTERM: ``scancel``, a time limit).

    Not an :class:`EnvcapError` and not an ``Exception``: nothing on the way up may take it
    for a failure of the run and write a verdict; the container is removed as the stack
    unwinds (the engine's runner removes it in a ``finally``).
    """

    def __init__(self, signal_name: str, why: str = "the scheduler ended the job") -> None:
        super().__init__(f"stopped by {signal_name}: {why}")
        self.signal_name = signal_name
        self.why = why
