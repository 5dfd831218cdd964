"""The build backend of the run's own package, made once and mounted into its rebuilds.

An editable install builds the package (PEP 660): pip needs its build backend, the
``build-system.requires`` of its ``pyproject.toml``. The image holds the environment, not
that backend (the recorded environment did not have it either: pip built in an isolated
environment), so without it pip makes an isolated build environment in the container and
fetches the backend from the index on every rebuild (about ten seconds), after an
offline attempt with whatever the image has (which fails where that is too old).

Here the backend is resolved once by uv, from the index, as pip's isolated build would
resolve it, for the environment's Python version and platform (``uv pip install
--target``), and kept in the store (``cache/build-backend/<key>``, the key being what was
asked: the requirements, the Python version, the platform). The rebuild mounts it
read-only into the container and pip installs the package with ``--no-build-isolation
--no-index`` and that folder on ``PYTHONPATH`` for that step only: nothing of it is in
the image or the environment the run sees, and the environment captured is the same.
Where uv is missing, the index cannot be reached or the pyproject cannot be read, there
is no folder, and the launcher keeps pip's own way (said in a note).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EnvcapError

# PEP 517's answer for a project that declares no build system (pip's own fallback).
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")
_PLATFORMS = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}


@dataclass(frozen=True, slots=True)
class Backend:
    path: Path | None  # the folder to mount, or None (pip's own way)
    requires: tuple[str, ...]
    installed: tuple[str, ...] = ()  # name==version, what uv put there
    note: str = ""  # why there is no folder, or how it was had (made, cached)


def requires_of(checkout: Path) -> tuple[str, ...] | None:
    """``build-system.requires`` of the checkout's pyproject.toml (PEP 517's default when it
    has none); None when the pyproject cannot be read."""
    pyproject = checkout / "pyproject.toml"
    if not pyproject.is_file():
        return DEFAULT_REQUIRES if (checkout / "setup.py").is_file() else None
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    system = data.get("build-system")
    if not isinstance(system, Mapping):
        return DEFAULT_REQUIRES
    requires = system.get("requires")
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        return None
    return tuple(requires)


def prepare(checkouts: Sequence[Path], python_version: str, arch: str | None, cache: Path,
            ca_bundle: Path | None = None) -> Backend:
    """The backend folder for the packages at ``checkouts`` (one folder for all of them)."""
    requires: list[str] = []
    for checkout in checkouts:
        found = requires_of(checkout)
        if found is None:
            return Backend(None, (), note=f"cannot read the build system of {checkout}")
        requires += [r for r in found if r not in requires]
    minor = ".".join(python_version.split(".")[:2])
    platform = _PLATFORMS.get(arch or "x86_64")
    if not requires or not minor or platform is None:
        return Backend(None, tuple(requires), note="no build backend to prepare for this platform")
    key = hashlib.sha256(json.dumps([sorted(requires), minor, platform]).encode()).hexdigest()[:32]
    folder = cache / "build-backend" / key
    done = folder / ".envcap-installed"
    if done.is_file():
        return Backend(folder, tuple(requires), tuple(done.read_text().split()), note="cached")
    from ..builder.settings import BuildSettings

    try:
        uv = BuildSettings.load().uv_binary()
    except EnvcapError as exc:  # a bad ENVCAP_UV: pip's own way, said
        return Backend(None, tuple(requires), note=str(exc))
    if uv is None:
        return Backend(None, tuple(requires), note="uv is not installed here")
    work = cache / "build-backend" / f".{key}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    child = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k != "PYTHONPATH"}
    child.update({"UV_NO_CONFIG": "1", "UV_NO_PROGRESS": "1"})
    if ca_bundle is not None:
        child["SSL_CERT_FILE"] = str(Path(ca_bundle).resolve())
    else:
        child["UV_NATIVE_TLS"] = "1"
    # The interpreter running envcap answers uv's questions (the caller can run it); the
    # environment's version and platform choose the wheels.
    argv = [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "--target", str(work),
            "--python-version", minor,
            "--python-platform", platform, "--only-binary", ":all:", *requires]
    from ..core.proc import run

    try:
        out = run(argv, timeout=300, env=child)
    except Exception as exc:  # noqa: BLE001 - subprocess.TimeoutExpired or OSError: pip's own way, said
        out = None
        why = str(exc)
    else:
        why = "uv did not run" if out is None else (out.stderr.strip().splitlines() or ["no message"])[-1]
    if out is None or out.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        return Backend(None, tuple(requires), note=f"uv could not install {' '.join(requires)}: {why[:300]}")
    installed = sorted(p.name[:-len(".dist-info")].replace("-", "==", 1) for p in work.glob("*.dist-info"))
    (work / ".envcap-installed").write_text("\n".join(installed) + "\n")
    try:
        work.rename(folder)
    except OSError:  # another rebuild made it meanwhile: theirs is as good
        shutil.rmtree(work, ignore_errors=True)
    return Backend(folder, tuple(requires), tuple(installed), note="made")
