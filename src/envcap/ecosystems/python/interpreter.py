"""The recorded interpreter, for an environment whose Python no base image has.

A workstation's Python is often a build of its own: pyenv's, uv's, a source build in a
home folder. The build installs the same CPython version with uv's managed Python
builds (python-build-standalone), which a site can mirror (``ENVCAP_PYTHON_DOWNLOADS``,
``ENVCAP_PYTHON_MIRROR``; see :mod:`envcap.builder.settings`), and moves it to the
recorded prefix, so that every path the environment recorded is where it was.

Which versions can be had is asked before any build step, of the same uv and the same
download list the build will use: the exact version when it is offered; else the newest
of the same minor series, which the build names as a substitute (and the rebuild's
verdict carries); else nothing, and the build is refused, naming the version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...pins.errors import LockError

_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "ppc64le": "powerpc64le", "s390x": "s390x"}


@dataclass(frozen=True, slots=True)
class Offer:
    """The CPython versions a build can install, and where uv is told to find them."""

    versions: tuple[str, ...]
    downloads: str = ""  # uv's download list: a URL, "served:NAME", or "" for uv's own
    mirror: str = ""  # UV_PYTHON_INSTALL_MIRROR, or ""


@dataclass(frozen=True, slots=True)
class Choice:
    """The interpreter a build installs in place of the recorded one."""

    recorded: str  # the recorded version (3.11.7)
    version: str  # the version installed: the recorded one, or its substitute
    prefix: str  # where the recorded interpreter lived (its base prefix)
    checked: bool = True  # False when nobody asked what is offered (a render without a build)
    downloads: str = ""
    mirror: str = ""

    @property
    def substituted(self) -> bool:
        return self.version != self.recorded

    def note(self) -> str | None:
        if self.substituted:
            return (f"python: CPython {self.recorded} cannot be had from the interpreter builds on offer; "
                    f"substituted CPython {self.version} (at {self.prefix})")
        return None


def offered(uv: Path | None, env: dict[str, str], arch: str | None) -> tuple[str, ...]:
    """The CPython versions uv can install for this architecture (glibc builds)."""
    if uv is None:
        raise LockError("the environment's Python is a build of its own (pyenv, uv, a source build) and installing "
                        "it needs uv, which is not installed here: pip install uv, or set ENVCAP_UV")
    argv = [str(uv), "python", "list", "--only-downloads", "--all-versions", "--output-format", "json"]
    child = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    from ...core.proc import run

    try:
        done = run(argv, timeout=120, env={**child, **env, "UV_NO_CONFIG": "1"})
    except Exception as exc:
        raise LockError(f"uv did not say which Python builds it can install: {exc}") from exc
    if done is None:
        raise LockError(f"cannot run uv ({uv}): set ENVCAP_UV to a uv executable")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LockError(f"uv cannot list the Python builds on offer: {why} (check ENVCAP_PYTHON_DOWNLOADS)")
    try:
        rows = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise LockError(f"uv's list of Python builds is not JSON: {exc}") from exc
    want = _ARCH.get(arch or "x86_64", arch)
    versions = {str(r.get("version")) for r in rows if isinstance(r, dict) and r.get("implementation") == "cpython"
                and r.get("os") == "linux" and r.get("libc") == "gnu" and r.get("arch") == want
                and r.get("variant") in (None, "default")}
    return tuple(sorted(versions, key=_key))


def choose(recorded: str, prefix: str, offer: Offer | None) -> Choice:
    if offer is None:
        return Choice(recorded, recorded, prefix, checked=False)
    versions = offer.versions
    if recorded in versions:
        return Choice(recorded, recorded, prefix, downloads=offer.downloads, mirror=offer.mirror)
    minor = recorded.split(".")[:2]
    same = [v for v in versions if v.split(".")[:2] == minor and v.split(".")[2:3] and v.split(".")[2].isdigit()]
    if not same:
        near = ", ".join(versions[-6:]) or "none"
        raise LockError(f"CPython {recorded} (the environment's own interpreter, at {prefix}) is not in the base image, "
                        f"and no CPython {'.'.join(minor)} build is on offer (offered: {near}): point "
                        "ENVCAP_PYTHON_DOWNLOADS at a list that has it, or build on an image that has it (--base)")
    return Choice(recorded, max(same, key=_key), prefix, downloads=offer.downloads, mirror=offer.mirror)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))
