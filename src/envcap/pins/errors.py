"""Errors of lock and build. Each says what to do; the CLI turns them into exit codes."""

from __future__ import annotations

# BuildError lives with the core errors: the container engines (envcap.engines) raise it too.
from ..core.errors import BuildError, EnvcapError, ManifestError

__all__ = ["BuildError", "LockError", "ManifestRefused"]


class ManifestRefused(ManifestError):
    """A manifest holds a value that must not reach a Dockerfile, a lockfile or a command."""


class LockError(EnvcapError):
    """Lockfiles could not be made (an index that does not answer, a version it lacks)."""

