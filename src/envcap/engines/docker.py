"""Docker, through its SDK: the builder's engine (build, push, run the fidelity check)
and a rebuild's container runner. Every container runs on the host's network; no
network is ever created."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ..core.errors import BuildError, RebuildError
from .common import Progress, explain_failure, short, step_line, STEP_NOTE
from .spec import ContainerSpec

DOCKER_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "386": "i686",
               "arm": "armv7l", "riscv64": "riscv64"}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DockerEngine:
    """Docker through the ``docker`` SDK; the classic builder, on the host's network."""

    name = "docker"

    def __init__(self) -> None:
        try:
            import docker
        except ImportError as exc:
            raise BuildError("the docker Python package is not installed: pip install 'envcap[build]'") from exc
        self._docker = docker
        self.client: Any = None
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
            raise BuildError(f"cannot reach the Docker daemon at {host} (no such socket): start it "
                             "(scripts/testbed.sh up on the test bed, or systemctl start docker), "
                             "or point DOCKER_HOST at a running one")
        try:
            self.client = docker.from_env(timeout=600)
            self.client.ping()
        except docker.errors.DockerException as exc:
            self.close()
            raise BuildError(f"cannot reach the Docker daemon at {host} ({short(exc)}): start it "
                             "(scripts/testbed.sh up on the test bed, or systemctl start docker), "
                             "or point DOCKER_HOST at a running one") from exc

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def arch(self) -> str:
        go = str(self.client.version().get("Arch", ""))
        return DOCKER_ARCH.get(go, go)

    def resolve_base(self, ref: str) -> str:
        errors = self._docker.errors
        try:
            image = self.client.images.get(ref)
        except errors.ImageNotFound:
            try:
                image = self.client.images.pull(ref)
            except errors.APIError as exc:
                raise BuildError(f"cannot pull the base image {ref} ({short(exc)}): check the base map "
                                 "(ENVCAP_BASE_MAP) or --base") from exc
        except errors.APIError as exc:
            raise BuildError(f"the Docker daemon cannot look up {ref}: {short(exc)}") from exc
        if "@sha256:" in ref:
            return ref
        name = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
        for repo_digest in image.attrs.get("RepoDigests") or []:
            if repo_digest.startswith(name + "@"):
                return str(repo_digest)
        raise BuildError(f"the base image {ref} has no registry digest here; name it by digest in the base map")

    def build(self, context: Path, image: str, buildargs: Mapping[str, str], progress: Progress,
              nocache: bool = False) -> str:
        log: list[str] = []
        image_id = None
        try:
            stream = self.client.api.build(path=str(context), tag=image, buildargs=dict(buildargs),
                                           network_mode="host", rm=True, forcerm=True, decode=True,
                                           nocache=nocache, pull=False)
            pending = ""
            for chunk in stream:
                if "stream" in chunk:
                    text = chunk["stream"]
                    log.append(text)
                    # A chunk is any part of the output, not a line: split it into lines.
                    *lines, pending = (pending + text).split("\n")
                    for line in lines:
                        line = _ANSI.sub("", line)  # the daemon colours a step's standard error
                        if line.startswith("Step "):
                            progress(step_line(line))
                        elif line.startswith(STEP_NOTE):  # what envcap's own step scripts say
                            progress(line[len(STEP_NOTE):].rstrip())
                elif "error" in chunk:
                    log.append(chunk["error"])
                    raise BuildError(explain_failure("".join(log)))
                elif isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except self._docker.errors.APIError as exc:
            raise BuildError(f"the Docker daemon refused the build: {short(exc)}") from exc
        if image_id is None:
            raise BuildError(explain_failure("".join(log)))
        return image

    def push(self, image: str, repository: object, tag: str, progress: Progress) -> str:
        try:
            self.client.api.tag(image, str(repository), tag)
            digest = None
            for chunk in self.client.api.push(str(repository), tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise BuildError(f"pushing to {repository} failed: {chunk['error']}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
        except self._docker.errors.APIError as exc:
            raise BuildError(f"pushing to {repository} failed: {short(exc)}") from exc
        if digest is None:
            raise BuildError(f"the push to {repository}:{tag} finished without a digest")
        return digest

    def run(self, image: str, argv: Sequence[str], mounts: Iterable[tuple[str, str]]) -> str:
        # Mounts go to the host config only (``volumes=`` would also declare them in the
        # container's config, where a later commit would keep them).
        binds = [self._docker.types.Mount(dest, host, type="bind", read_only=True) for host, dest in mounts]
        container = self.client.containers.create(image, entrypoint=list(argv[:1]), command=list(argv[1:]),
                                                  network_mode="host", mounts=binds)
        try:
            container.start()
            status = container.wait(timeout=600)
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            if status.get("StatusCode") != 0:
                err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
                tail = "\n  ".join(err.strip().splitlines()[-8:])
                raise BuildError(f"capturing the built image failed (exit {status.get('StatusCode')}):\n  {tail}")
            return out
        finally:
            container.remove(force=True)

    def remove(self, image: str) -> None:
        try:
            self.client.images.remove(image, noprune=False)
        except self._docker.errors.APIError:
            pass



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
        try:
            self._engine = DockerEngine()
        except BuildError as exc:
            raise RebuildError(str(exc)) from exc
        self.client: Any = self._engine.client
        self._errors = self._engine._docker.errors

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
            except Exception:  # noqa: BLE001 - it is being removed anyway
                pass
            raise
        finally:
            try:
                container.remove(force=True)
            except self._errors.APIError:
                pass

