"""The rebuild's container, fenced into one module: Docker through its SDK, or podman's CLI.

Every container runs on the host's network (no network is ever created), as the
caller's user and group (so that what it writes into the workspace is theirs), with
the code, the data and envcap's own package bind-mounted, and the GPUs when the run
needs them.

Inside, a small POSIX shell launcher starts the environment capture in the background
(envcap's package mounted read-only and run by the image's own interpreter, as the build
fidelity check does: nothing is installed into the image), runs the command in the
foreground, notes when it started and ended, waits for the capture, and exits with the
command's status. No value from a record is ever parsed by that shell: all arrive as
its arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .errors import RebuildError

Progress = Callable[[str], None]

LAUNCHER = r"""out=$1 script=$2 args=$3 n=$4
shift 4
py=
while [ "$n" -gt 0 ]; do
  if [ -z "$py" ] && [ -x "$1" ]; then py=$1; fi
  shift
  n=$((n - 1))
done
cap=
if [ -n "$py" ]; then
  "$py" -I -B -c "$script" "$args" >"$out/manifest.part" 2>"$out/capture.err" </dev/null &
  cap=$!
else
  echo "no Python interpreter in the image to capture it with" >"$out/capture.err"
fi
date +%s.%N >"$out/started" 2>/dev/null
"$@"
status=$?
date +%s.%N >"$out/ended" 2>/dev/null
if [ -n "$cap" ] && wait "$cap"; then mv "$out/manifest.part" "$out/manifest.json"; fi
exit "$status"
"""


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


def launcher(spec: ContainerSpec, out_dir: str, capture_script: str, capture_args: Mapping[str, Any],
             interpreters: Sequence[str]) -> list[str]:
    """The entry point that captures the environment beside the command and runs the command."""
    return ["/bin/sh", "-c", LAUNCHER, "envcap-rebuild", out_dir, capture_script, json.dumps(dict(capture_args)),
            str(len(interpreters)), *interpreters, *spec.argv]


def mount_option(m: Mount) -> str:
    """A ``--mount`` value (docker and podman): CSV, so a field with a comma or quote is quoted."""
    fields = ["type=bind", f"source={m.source}", f"target={m.target}"] + (["readonly"] if m.read_only else [])
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\n\r') else f for f in fields)


def secret_values(names: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    missing = [n for n in names if n not in env]
    if missing:
        raise RebuildError(f"--secret-env {missing[0]}: not set in your environment")
    return {n: env[n] for n in names}


# -- Docker ----------------------------------------------------------------------------------


def docker_create_kwargs(spec: ContainerSpec, entrypoint: Sequence[str], secrets: Mapping[str, str]) -> dict[str, Any]:
    """What ``containers.create`` is given (kept apart so that it can be checked without a daemon)."""
    from docker.types import DeviceRequest
    from docker.types import Mount as DockerMount

    return {
        "image": spec.image,
        "entrypoint": list(entrypoint),
        "command": [],
        "working_dir": spec.workdir,
        "environment": {**spec.env, **secrets},
        "network_mode": "host",
        # Host config only (``volumes=`` would also declare them in the container's config).
        "mounts": [DockerMount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
        "user": spec.user,
        "device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.gpus else None,
        "labels": {"dev.envcap.rebuild-of": spec.label} if spec.label else {},
    }


class DockerRunner:
    name = "docker"

    def __init__(self) -> None:
        from ..builder.engine import DockerEngine
        from ..builder.errors import BuildError

        try:
            self._engine = DockerEngine()
        except BuildError as exc:
            raise RebuildError(str(exc)) from exc
        self.client: Any = self._engine.client
        import docker

        self._errors = docker.errors

    def close(self) -> None:
        self._engine.close()

    def has_image(self, reference: str) -> bool:
        try:
            self.client.images.get(reference)
            return True
        except self._errors.ImageNotFound:
            return False
        except self._errors.APIError as exc:
            raise RebuildError(f"the Docker daemon cannot look up {reference}: {exc}") from exc

    def ensure_image(self, reference: str, progress: Progress) -> str:
        """``present`` or ``pulled``."""
        if self.has_image(reference):
            return "present"
        progress(f"pulling {reference}")
        try:
            self.client.images.pull(reference)
        except self._errors.APIError as exc:
            text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0][:300]
            raise RebuildError(f"cannot pull {reference} ({text}): is the registry up, and does it still hold "
                               "the image? (--registry R builds it again)") from exc
        return "pulled"

    def remove_image(self, reference: str) -> None:
        try:
            self.client.images.remove(reference, force=True)
        except self._errors.APIError:
            pass

    def run(self, spec: ContainerSpec, entrypoint: Sequence[str], secrets: Mapping[str, str],
            output: BinaryIO) -> int:
        try:
            container = self.client.containers.create(**docker_create_kwargs(spec, entrypoint, secrets))
        except self._errors.APIError as exc:
            raise RebuildError(f"the Docker daemon refused the container: {exc}") from exc
        try:
            stream = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True,
                                            demux=True)
            try:
                container.start()
            except self._errors.APIError as exc:
                raise RebuildError(f"the container did not start: {exc}") from exc
            for out, err in stream:
                for chunk in (out, err):
                    if chunk:
                        output.write(chunk)
                        output.flush()
            status = container.wait()
            return int(status.get("StatusCode", 1))
        except KeyboardInterrupt:
            try:
                container.kill(signal="SIGINT")
                container.wait(timeout=10)
            except Exception:  # noqa: BLE001, S110 - it is being removed anyway
                pass
            raise
        finally:
            try:
                container.remove(force=True)
            except self._errors.APIError:
                pass


# -- podman ----------------------------------------------------------------------------------


def _tls(reference: str) -> list[str]:
    host = reference.split("/", 1)[0]
    return ["--tls-verify=false"] if host.startswith(("127.", "localhost", "[::1]")) else []


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

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.podman or "podman", *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def has_image(self, reference: str) -> bool:
        return self._run(["image", "exists", reference], 60).returncode == 0

    def ensure_image(self, reference: str, progress: Progress) -> str:
        if self.has_image(reference):
            return "present"
        progress(f"pulling {reference}")
        out = self._run(["pull", "--quiet", *_tls(reference), reference], 1800)
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
        if fd is not None:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env, check=False).returncode
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False)
        output.write(proc.stdout + proc.stderr)
        output.flush()
        return proc.returncode


def make_runner(engine: str) -> Any:
    return PodmanRunner() if engine == "podman" else DockerRunner()


def default_output() -> BinaryIO:
    return sys.stderr.buffer
