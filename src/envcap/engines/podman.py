"""podman, through its CLI: a rebuild's container without a daemon."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from ..core import proc
from ..core.errors import RebuildError
from .common import Progress, tls_args
from .spec import ContainerSpec, mount_option


def podman_argv(spec: ContainerSpec, entrypoint: Sequence[str]) -> list[str]:
    argv = ["podman", "run", "--rm", "--network", "host", "--workdir", spec.workdir,
            "--entrypoint", json.dumps(list(entrypoint))]
    for m in spec.mounts:
        argv += ["--mount", mount_option(m)]
    for name, value in sorted(spec.env.items()):
        argv += ["--env", f"{name}={value}"]
    for name in spec.secrets:
        argv += ["--env", name]  # podman takes the value from its own environment
    if spec.user:
        argv += ["--user", spec.user]
    if spec.gpus:
        argv += ["--device", "nvidia.com/gpu=all"]
    if spec.label:
        argv += ["--label", f"dev.envcap.rebuild-of={spec.label}"]
    return [*argv, spec.image]



class PodmanRunner:
    name = "podman"

    def __init__(self) -> None:
        self.podman = shutil.which("podman")
        if self.podman is None:
            raise RebuildError("podman is not installed (apt-get install podman), or use --engine docker")

    def close(self) -> None:
        pass

    def _run(self, args: list[str], timeout: float) -> proc.Result:
        out = proc.run([self.podman or "podman", *args], timeout=timeout, c_locale=False)
        if out is None:
            raise RebuildError("podman is not installed (apt-get install podman), or use --engine docker")
        return out

    def has_image(self, reference: str) -> bool:
        return self._run(["image", "exists", reference], 60).returncode == 0

    def ensure_image(self, reference: str, progress: Progress) -> str:
        if self.has_image(reference):
            return "present"
        progress(f"pulling {reference}")
        out = self._run(["pull", "--quiet", *tls_args(reference), reference], 1800)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["failed"])[-1]
            raise RebuildError(f"podman cannot pull {reference} ({last})")
        return "pulled"

    def remove_image(self, reference: str) -> None:
        self._run(["rmi", "--force", reference], 300)

    def run(self, spec: ContainerSpec, entrypoint: Sequence[str], secrets: Mapping[str, str],
            output: BinaryIO) -> int:
        argv = podman_argv(spec, entrypoint)
        argv[0] = self.podman or "podman"
        env = {**os.environ, **secrets}
        try:
            fd = output.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        # podman's own output goes straight to ``output`` when it has a descriptor, else
        # through a pipe, chunk by chunk as it comes.
        child = proc.start(argv, env=env, stdout=fd if fd is not None else proc.PIPE, stderr=proc.STDOUT,
                           c_locale=False)
        try:
            stream = child.stdout
            while stream is not None and (chunk := os.read(stream.fileno(), 65536)):
                output.write(chunk)
                output.flush()
            return child.wait()
        except BaseException:
            # As subprocess.run does: envcap stops waiting, so podman must not go on alone.
            child.kill()
            child.wait()
            raise

