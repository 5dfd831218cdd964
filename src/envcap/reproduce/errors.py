"""Errors of ``envcap rebuild``; each says what to do. Only the CLI makes exit codes of them."""

from __future__ import annotations

from ..core.errors import EnvcapError


class RebuildError(EnvcapError):
    """A rebuild cannot go on as asked (the code, the data, the image); nothing was run."""


class PreflightError(RebuildError):
    """The host cannot run the image as the run needs (a GPU driver too old for its CUDA)."""
