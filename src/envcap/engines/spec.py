"""A container as envcap describes it to an engine (and prints it for a person to run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Mount:
    source: str  # on the host
    target: str  # in the container
    read_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "read_only": self.read_only}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec:
    """One container: what runs, where, with which variables and mounts."""

    image: str  # REPOSITORY@sha256:...
    argv: tuple[str, ...]  # the run's command
    workdir: str
    env: Mapping[str, str] = field(default_factory=dict)  # values (never secrets)
    secrets: tuple[str, ...] = ()  # names: values from the caller's environment
    mounts: tuple[Mount, ...] = ()
    user: str | None = None
    gpus: bool = False
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "argv": list(self.argv), "workdir": self.workdir, "env": dict(self.env),
                "secrets": list(self.secrets), "mounts": [m.to_dict() for m in self.mounts], "user": self.user,
                "gpus": self.gpus}



def mount_option(m: Mount) -> str:
    """A ``--mount`` value (docker and podman): CSV, so a field with a comma or quote is quoted."""
    fields = ["type=bind", f"source={m.source}", f"target={m.target}"] + (["readonly"] if m.read_only else [])
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\n\r') else f for f in fields)

