"""The probe registry: every probe, in the order a snapshot starts them.

It lives above the probes and the ecosystems (whose package-world probes it lists), as
syft keeps its registry above its catalogers, so that the layer table stays an order.
"""

from __future__ import annotations

from typing import Iterable

from ..core.errors import UsageError
from ..probes import Probe


def _registry() -> tuple[Probe, ...]:
    from ..ecosystems.conda import probe as conda
    from ..ecosystems.python import probe as python
    from ..ecosystems.system import probe as system
    from ..probes import (
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
