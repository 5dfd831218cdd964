"""Errors of ``envcap rebuild``; each says what to do. Only the CLI makes exit codes of them."""

from __future__ import annotations

# RebuildError lives with the core errors: the container engines (envcap.engines) raise it too.
from ..core.errors import RebuildError

__all__ = ["PreflightError", "RebuildError"]


class PreflightError(RebuildError):
    """The host cannot run the image as the run needs (a GPU driver too old for its CUDA)."""
