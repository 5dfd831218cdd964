"""Errors of lock and build. Each says what to do; the CLI turns them into exit codes."""

from __future__ import annotations

from ..core.errors import EnvcapError, ManifestError


class ManifestRefused(ManifestError):
    """A manifest holds a value that must not reach a Dockerfile, a lockfile or a command."""


class LockError(EnvcapError):
    """Lockfiles could not be made (an index that does not answer, a version it lacks)."""


class BuildError(EnvcapError):
    """An image could not be built, checked or pushed; nothing was recorded."""
