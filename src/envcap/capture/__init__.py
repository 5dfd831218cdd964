"""Capture: run the probes and the ecosystems' catalogers, redact, and compose a
:class:`~envcap.core.manifest.Manifest` (``envcap snapshot``).

``snapshot`` and ``parse_labels`` are loaded on first use, so that reading a manifest's
summary (:mod:`.summary`) does not load the probes."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_labels", "snapshot"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import collect

        return getattr(collect, name)
    raise AttributeError(f"module 'envcap.capture' has no attribute {name!r}")
