"""Capture: run the probes and the ecosystems' catalogers, redact, and compose a
:class:`~envcap.core.manifest.Manifest` (``envcap snapshot``)."""

from .collect import parse_labels, snapshot

__all__ = ["parse_labels", "snapshot"]
