"""The one place envcap talks to a container engine, for the builder and the rebuild alike.

- :mod:`.docker`: Docker through its SDK: build, push and run (the builder's fidelity
  check), and a rebuild's container;
- :mod:`.buildah`: buildah's CLI, daemonless, for reproducible builds;
- :mod:`.podman`: podman's CLI, a rebuild's container without a daemon;
- :mod:`.spec`: a container as envcap describes it (the runners take it, and
  ``envcap rebuild --print`` prints it);
- :mod:`.common`: TLS for loopback registries and what a failed build's log says.

Programs are started through :mod:`envcap.core.proc` only; the engines import nothing of
envcap above the core (docs/architecture.md). Each failure is a :class:`BuildError` (the
builder's engines) or a :class:`RebuildError` (a rebuild's runners) that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from .common import Progress, explain_failure
from .spec import ContainerSpec, Mount, mount_option

__all__ = ["ContainerSpec", "Engine", "Mount", "Progress", "Runner", "explain_failure", "make_engine",
           "make_runner", "mount_option"]


class Engine(Protocol):
    name: str

    def arch(self) -> str: ...
    def resolve_base(self, ref: str) -> str: ...
    def build(self, context: Path, image: str, buildargs: Mapping[str, str], progress: Progress,
              nocache: bool = False) -> str: ...
    def push(self, image: str, repository: object, tag: str, progress: Progress) -> str: ...
    def run(self, image: str, argv: Sequence[str], mounts: Iterable[tuple[str, str]]) -> str: ...
    def remove(self, image: str) -> None: ...
    def close(self) -> None: ...



class Runner(Protocol):
    """What runs a rebuild's container: Docker's SDK or podman's CLI."""

    name: str

    def has_image(self, reference: str) -> bool: ...
    def ensure_image(self, reference: str, progress: Progress) -> str: ...
    def remove_image(self, reference: str) -> None: ...
    def run(self, spec: ContainerSpec, entrypoint: Sequence[str], secrets: Mapping[str, str],
            output: BinaryIO) -> int: ...
    def close(self) -> None: ...


def make_engine(reproducible: bool, storage: Path | None = None) -> Engine:
    """The builder's engine: buildah for a reproducible build, else Docker."""
    if reproducible:
        from .buildah import BuildahEngine

        return BuildahEngine(storage)
    from .docker import DockerEngine

    return DockerEngine()


def make_runner(engine: str) -> Runner:
    """A rebuild's container runner: ``podman`` or ``docker``."""
    if engine == "podman":
        from .podman import PodmanRunner

        return PodmanRunner()
    from .docker import DockerRunner

    return DockerRunner()
