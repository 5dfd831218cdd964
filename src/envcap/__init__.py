"""envcap: capture, record, rebuild and verify the environments ML results come from.

The library is the product; the ``envcap`` command is a thin layer over it::

    import envcap
    m = envcap.snapshot()          # an immutable Manifest
    print(m.env_id)
    envcap.Store().add(m)           # keep it in the embedded store
"""

from __future__ import annotations

from typing import Any

# The ecosystems register their section records with the core, so that any manifest's
# typed accessors (``m.python``, ``m.system``, ``m.conda``) work; this imports no record.
from . import ecosystems as _ecosystems  # noqa: F401

from .core.version import __version__

__all__ = [
    "snapshot",
    "Manifest",
    "Store",
    "EnvcapError",
    "load_manifest",
    "start_run",
    "log_metric",
    "seed_everything",
    "params_from_argparse",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Imports are deferred so that ``import envcap`` (and the CLI's start-up, which
    # sits on the path of every run) costs only what is used.
    if name == "snapshot":
        from .capture.collect import snapshot

        return snapshot
    if name in ("Manifest",):
        from .core.manifest import Manifest

        return Manifest
    if name == "load_manifest":
        from .store.embedded import load_manifest

        return load_manifest
    if name == "Store":
        from .store.embedded import Store

        return Store
    if name in ("start_run", "log_metric", "seed_everything"):
        from .runs import api

        return getattr(api, name)
    if name == "params_from_argparse":
        from .integrations.argparse import params_from_argparse

        return params_from_argparse
    if name == "EnvcapError":
        from .core.errors import EnvcapError

        return EnvcapError
    raise AttributeError(f"module 'envcap' has no attribute {name!r}")
