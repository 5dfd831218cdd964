"""Probes: one module per domain, each a :class:`Probe` with tags.

The probes of package worlds with a build part (Python, system packages, conda) live
with the rest of their ecosystem in :mod:`envcap.ecosystems`. The registry that lists
them all, in the order a snapshot starts them, is :mod:`envcap.capture.registry`: it
stands above both folders (as syft keeps its registry above its catalogers), so that
neither imports the other.

A probe is a name, the manifest section it fills, the layer that section belongs to
(``software`` goes into ``env_id``, ``platform`` into ``platform_id``), tags a user can
select or skip by, and a ``collect(ctx)`` function. ``collect`` returns a
:class:`Finding`: the section (hashed) and observations (kept, never hashed). Probes do
not know where they run and never read each other's results.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from .context import Context

SOFTWARE = "software"
PLATFORM = "platform"


_NOTHING: Mapping[str, Any] = MappingProxyType({})


# NamedTuples, not dataclasses: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Finding(NamedTuple):
    """What a probe found: ``section`` is hashed, ``observed`` is not."""

    section: dict[str, Any] | None
    observed: Mapping[str, Any] = _NOTHING


class Probe(NamedTuple):
    name: str
    section: str
    layer: str
    tags: frozenset[str]
    collect: Callable[[Context], Finding]
    # Whether the probe can work from files alone (and so under --root).
    reads_files: bool = True
