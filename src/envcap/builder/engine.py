"""The build engines, fenced into one module: Docker through its SDK, and buildah.

Both build a rendered context on the host's network (no network is ever created),
push to a registry and run a command in a built image for the fidelity check. Each
failure becomes a :class:`BuildError` that says what to do; build logs are scanned for
the failures users meet most (a version the mirror or the index no longer serves).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import BuildError
from .registry import Repository

Progress = Callable[[str], None]
DOCKER_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "386": "i686",
               "arm": "armv7l", "riscv64": "riscv64"}
BUILD_TIMEOUT = 3600.0


class Engine(Protocol):
    name: str

    def arch(self) -> str: ...
    def resolve_base(self, ref: str) -> str: ...
    def build(self, context: Path, image: str, buildargs: Mapping[str, str], progress: Progress,
              nocache: bool = False) -> str: ...
    def push(self, image: str, repository: Repository, tag: str, progress: Progress) -> str: ...
    def run(self, image: str, argv: Sequence[str], mounts: Iterable[tuple[str, str]]) -> str: ...
    def remove(self, image: str) -> None: ...
    def close(self) -> None: ...


def explain_failure(log: str) -> str:
    """What a failed build's log says went wrong, and what to do, in one sentence."""
    apt = re.search(r"E: Version '([^']+)' for '([^']+)' was not found", log)
    if apt:
        return (f"the apt mirror no longer serves {apt.group(2)}={apt.group(1)}: build against the dated archive "
                "(`envcap lock` writes apt-snapshot.sources; use a base image whose sources point there), "
                "or capture the environment again after upgrading it")
    missing = re.search(r"E: Unable to locate package (\S+)", log)
    if missing:
        return f"the apt mirror has no package {missing.group(1)}: check the base image's sources for this release"
    pip = re.search(r"No matching distribution found for (\S+)", log)
    if pip:
        return (f"the package index does not serve {pip.group(1)} for this interpreter and platform: "
                "name the index it came from with --extra-index-url")
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in log:
        return "a downloaded file did not match its locked hash: the index changed the file; lock again with --refresh"
    if "self-signed certificate" in log or "CERTIFICATE_VERIFY_FAILED" in log:
        return "TLS verification failed inside the build: pass your proxy's CA bundle with --ca-bundle FILE"
    tail = [line for line in log.strip().splitlines() if line.strip()][-12:]
    return "the build failed; the last lines of its log:\n  " + "\n  ".join(tail)


# -- Docker ------------------------------------------------------------------------------


class DockerEngine:
    """Docker through the ``docker`` SDK; the classic builder, on the host's network."""

    name = "docker"

    def __init__(self) -> None:
        try:
            import docker
        except ImportError as exc:
            raise BuildError("the docker Python package is not installed: pip install 'envcap[build]'") from exc
        self._docker = docker
        self.client = None
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
            raise BuildError(f"cannot reach the Docker daemon at {host} ({_short(exc)}): start it "
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
                raise BuildError(f"cannot pull the base image {ref} ({_short(exc)}): check the base map "
                                 "(ENVCAP_BASE_MAP) or --base") from exc
        except errors.APIError as exc:
            raise BuildError(f"the Docker daemon cannot look up {ref}: {_short(exc)}") from exc
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
            for chunk in stream:
                if "stream" in chunk:
                    text = chunk["stream"]
                    log.append(text)
                    if text.startswith("Step "):
                        progress(_step_line(text))
                elif "error" in chunk:
                    log.append(chunk["error"])
                    raise BuildError(explain_failure("".join(log)))
                elif isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except self._docker.errors.APIError as exc:
            raise BuildError(f"the Docker daemon refused the build: {_short(exc)}") from exc
        if image_id is None:
            raise BuildError(explain_failure("".join(log)))
        return image

    def push(self, image: str, repository: Repository, tag: str, progress: Progress) -> str:
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
            raise BuildError(f"pushing to {repository} failed: {_short(exc)}") from exc
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


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def _step_line(text: str) -> str:
    line = text.strip().splitlines()[0]
    if " : RUN [" in line:
        head, _, rest = line.partition(" : RUN ")
        parts = re.findall(r'"([^"]*)"', rest)
        script = next((p.rsplit("/", 1)[1] for p in parts if p.endswith(".sh")), "RUN")
        return f"{head} : RUN {script}"
    return line if len(line) <= 120 else line[:117] + "..."


# -- buildah -----------------------------------------------------------------------------


class BuildahEngine:
    """buildah, daemonless: ``bud --timestamp 0`` gives the same image for the same input."""

    name = "buildah"

    def __init__(self, storage: Path | None = None, *, insecure_hosts: Iterable[str] = ()) -> None:
        if shutil.which("buildah") is None:
            raise BuildError("buildah is not installed (apt-get install buildah); --reproducible needs it")
        self.global_args = [f"--root={storage / 'root'}", f"--runroot={storage / 'run'}"] if storage else []
        self.insecure_hosts = set(insecure_hosts)

    def _tls(self, ref: str) -> list[str]:
        host = ref.split("/", 1)[0]
        loop = host.startswith(("127.", "localhost", "[::1]"))
        return ["--tls-verify=false"] if loop or host in self.insecure_hosts else []

    def _run(self, args: Sequence[str], progress: Progress | None = None, timeout: float = BUILD_TIMEOUT) -> str:
        argv = ["buildah", *self.global_args, *args]
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "LC_ALL": "C"}) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if progress and line.startswith("STEP "):
                    progress(_step_line(line))
                if time.monotonic() > deadline:
                    proc.kill()
                    raise BuildError(f"buildah {args[0]} ran past {timeout:.0f} s")
            proc.wait()
        if proc.returncode != 0:
            raise BuildError(explain_failure("".join(lines)))
        return "".join(lines)

    def close(self) -> None:
        pass

    def arch(self) -> str:
        return os.uname().machine

    def resolve_base(self, ref: str) -> str:
        self._run(["pull", "--quiet", *self._tls(ref), ref], timeout=900)
        if "@sha256:" in ref:
            return ref
        out = self._run(["inspect", "--type", "image", "--format", "{{.FromImageDigest}}", ref], timeout=60)
        digest = out.strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise BuildError(f"buildah cannot tell the digest of the base image {ref}; name it by digest")
        return f"{ref.rsplit(':', 1)[0] if ':' in ref.rsplit('/', 1)[-1] else ref}@{digest}"

    def build(self, context: Path, image: str, buildargs: Mapping[str, str], progress: Progress,
              nocache: bool = False) -> str:
        base = _from_line(context / "Dockerfile")
        args = ["bud", "--timestamp", "0", "--network", "host", "--pull=missing", *self._tls(base),
                "--layers=false", "-f", str(context / "Dockerfile"), "-t", image]
        for key, value in sorted(buildargs.items()):
            args += ["--build-arg", f"{key}={value}"]
        if nocache:
            args.append("--no-cache")
        self._run([*args, str(context)], progress)
        return image

    def push(self, image: str, repository: Repository, tag: str, progress: Progress) -> str:
        with tempfile.TemporaryDirectory(prefix="envcap-push-") as tmp:
            digestfile = Path(tmp) / "digest"
            self._run(["push", *self._tls(str(repository)), "--digestfile", str(digestfile), image,
                       f"docker://{repository}:{tag}"], progress, timeout=1800)
            return digestfile.read_text().strip()

    def run(self, image: str, argv: Sequence[str], mounts: Iterable[tuple[str, str]]) -> str:
        container = self._run(["from", "--pull=never", "--quiet", image], timeout=300).strip().splitlines()[-1]
        try:
            volumes = [arg for host, dest in mounts for arg in ("--volume", f"{host}:{dest}:ro")]
            argv_full = ["buildah", *self.global_args, "run", "--network", "host", *volumes, container, "--", *argv]
            proc = subprocess.run(argv_full, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
            if proc.returncode != 0:
                tail = "\n  ".join(proc.stderr.decode("utf-8", "replace").strip().splitlines()[-8:])
                raise BuildError(f"capturing the built image failed (exit {proc.returncode}):\n  {tail}")
            return proc.stdout.decode("utf-8", "replace")
        finally:
            subprocess.run(["buildah", *self.global_args, "rm", container], capture_output=True, timeout=120, check=False)

    def remove(self, image: str) -> None:
        subprocess.run(["buildah", *self.global_args, "rmi", "--force", image], capture_output=True, timeout=300, check=False)

    def remove_all(self) -> None:
        """Empty this engine's storage (its own --root only): containers, then images."""
        if not self.global_args:
            raise BuildError("remove_all() only empties a storage root envcap was given")
        for args in (["rm", "--all"], ["rmi", "--all", "--force"]):
            subprocess.run(["buildah", *self.global_args, *args], capture_output=True, timeout=300, check=False)

    def image_id(self, image: str) -> str:
        return self._run(["inspect", "--type", "image", "--format", "{{.FromImageID}}", image], timeout=60).strip()


def _from_line(dockerfile: Path) -> str:
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    raise BuildError(f"{dockerfile} has no FROM line")


def make_engine(reproducible: bool, storage: Path | None = None) -> Any:
    return BuildahEngine(storage) if reproducible else DockerEngine()
