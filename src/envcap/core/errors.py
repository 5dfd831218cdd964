"""The one error family envcap raises.

Library code raises these; only the CLI turns them into messages and exit codes.
Each message says what went wrong and, where it can, what to check.
"""

from __future__ import annotations


class EnvcapError(Exception):
    """Base class of every error envcap raises on purpose."""

    exit_code = 2


class ManifestError(EnvcapError):
    """A manifest could not be read: corrupt, truncated, of an unknown schema, or tampered."""


class SchemaVersionError(ManifestError):
    """A manifest of a schema major version this envcap does not know."""


class StoreError(EnvcapError):
    """The store is missing, unreadable, or holds an object that fails verification."""


class NotFoundError(EnvcapError):
    """No record matches the id or prefix given."""


class AmbiguousIdError(EnvcapError):
    """An id prefix matches more than one record."""


class UsageError(EnvcapError):
    """The user asked for something that cannot be done as asked."""


class ProbeError(EnvcapError):
    """A probe could not read what it needs; collected as an unknown, never fatal."""


class NotApplicable(ProbeError):
    """A probe does not apply here (a command-running probe under --root, say)."""


class BuildError(EnvcapError):
    """An image could not be built, checked or pushed; nothing was recorded."""


class RebuildError(EnvcapError):
    """A rebuild cannot go on as asked (the code, the data, the image); nothing was run."""
