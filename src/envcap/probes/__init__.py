"""Probes: one module per domain, registered in one list with tags.

The probes of package worlds with a build part (Python, system packages, conda) live
with the rest of their ecosystem in :mod:`envcap.ecosystems`; they are listed here too.

A probe is a name, the manifest section it fills, the layer that section belongs to
(``software`` goes into ``env_id``, ``platform`` into ``platform_id``), tags a user can
select or skip by, and a ``collect(ctx)`` function. ``collect`` returns a
:class:`Finding`: the section (hashed) and observations (kept, never hashed). Probes do
not know where they run and never read each other's results.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from ..core.errors import UsageError
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


def _registry() -> tuple[Probe, ...]:
    from ..ecosystems.conda import probe as conda
    from ..ecosystems.python import probe as python
    from ..ecosystems.system import probe as system
    from . import (
        compilers,
        container_context as container,
        cpu,
        cuda,
        environment,
        gpu,
        kernel,
        libc,
        memory,
        os_release,
    )

    # Probes that wait on programs, drivers or many files come first, so that the
    # snapshot's few worker threads start them at once and the cheap ones fill the gaps.
    return (
        python.PROBE,
        compilers.PROBE,
        gpu.PROBE,
        cuda.PROBE,
        system.PROBE,
        os_release.PROBE,
        kernel.PROBE,
        libc.PROBE,
        cpu.PROBE,
        memory.PROBE,
        conda.PROBE,
        container.PROBE,
        environment.PROBE,
    )


_PROBES: tuple[Probe, ...] | None = None


def all_probes() -> tuple[Probe, ...]:
    """Every registered probe, in registration order."""
    global _PROBES
    if _PROBES is None:
        _PROBES = _registry()
    return _PROBES


def choose(
    probes: Iterable[Probe], select: Iterable[str] = (), skip: Iterable[str] = ()
) -> list[Probe]:
    """The probes named or tagged by ``select`` (all when empty), less those in ``skip``."""
    probes = list(probes)
    known = {p.name for p in probes} | {t for p in probes for t in p.tags}
    select, skip = set(select), set(skip)
    unknown = sorted((select | skip) - known)
    if unknown:
        raise UsageError(
            f"no probe or tag named {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    chosen = [p for p in probes if not select or p.name in select or p.tags & select]
    return [p for p in chosen if p.name not in skip and not (p.tags & skip)]
