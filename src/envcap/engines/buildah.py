"""buildah, daemonless: ``bud --timestamp 0`` gives the same image for the same input."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..core import proc
from ..core.errors import BuildError
from .common import Progress, explain_failure, step_line, tls_args, STEP_NOTE

BUILD_TIMEOUT = 3600.0


class BuildahEngine:
    """buildah, daemonless: ``bud --timestamp 0`` gives the same image for the same input."""

    name = "buildah"

    def __init__(self, storage: Path | None = None, *, insecure_hosts: Iterable[str] = ()) -> None:
        if shutil.which("buildah") is None:
            raise BuildError("buildah is not installed (apt-get install buildah); --reproducible needs it")
        self.global_args = [f"--root={storage / 'root'}", f"--runroot={storage / 'run'}"] if storage else []
        self.insecure_hosts = set(insecure_hosts)

    def _tls(self, ref: str) -> list[str]:
        return tls_args(ref, self.insecure_hosts)

    def _run(self, args: Sequence[str], progress: Progress | None = None, timeout: float = BUILD_TIMEOUT) -> str:
        argv = ["buildah", *self.global_args, *args]
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        with proc.start(argv, stdout=proc.PIPE, stderr=proc.STDOUT) as child:
            assert child.stdout is not None
            for raw in child.stdout:
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if progress and line.startswith("STEP "):
                    progress(step_line(line))
                elif progress and line.startswith(STEP_NOTE):  # what envcap's own step scripts say
                    progress(line[len(STEP_NOTE):].rstrip())
                if time.monotonic() > deadline:
                    child.kill()
                    raise BuildError(f"buildah {args[0]} ran past {timeout:.0f} s")
            child.wait()
        if child.returncode != 0:
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

    def push(self, image: str, repository: object, tag: str, progress: Progress) -> str:
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
            out = proc.run_bytes(argv_full, timeout=600, c_locale=False)
            if out is None or out.returncode != 0:
                code = "no buildah" if out is None else out.returncode
                tail = "\n  ".join(out.stderr.decode("utf-8", "replace").strip().splitlines()[-8:] if out else [])
                raise BuildError(f"capturing the built image failed (exit {code}):\n  {tail}")
            return out.stdout.decode("utf-8", "replace")
        finally:
            proc.run_bytes(["buildah", *self.global_args, "rm", container], timeout=120, c_locale=False)

    def remove(self, image: str) -> None:
        proc.run_bytes(["buildah", *self.global_args, "rmi", "--force", image], timeout=300, c_locale=False)

    def remove_all(self) -> None:
        """Empty this engine's storage (its own --root only): containers, then images."""
        if not self.global_args:
            raise BuildError("remove_all() only empties a storage root envcap was given")
        for args in (["rm", "--all"], ["rmi", "--all", "--force"]):
            proc.run_bytes(["buildah", *self.global_args, *args], timeout=300, c_locale=False)

    def image_id(self, image: str) -> str:
        return self._run(["inspect", "--type", "image", "--format", "{{.FromImageID}}", image], timeout=60).strip()


def _from_line(dockerfile: Path) -> str:
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    raise BuildError(f"{dockerfile} has no FROM line")

