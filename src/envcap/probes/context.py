"""How a probe sees the machine.

A probe never touches the file system, the environment or other programs directly: it
asks its :class:`Context`. A context over ``/`` reads the live machine; a context over
another directory reads that tree (a fixture, an unpacked container file system) as if
it were ``/``, resolving absolute symbolic links inside the tree, and refuses to run
commands, so the same probe code serves every case.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from typing import Mapping, Sequence

from ..core import proc as _subprocess
from . import _programs
from ..core.errors import NotApplicable
from ..core.redact import Redactor, default_redactor

_MAX_LINKS = 40


def start_environment() -> Mapping[str, str]:
    """The environment this process was given when it started.

    A library imported by a script may set variables in its own process (scikit-learn
    sets ``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK`` when imported): they are not
    the environment the script was run in, and a snapshot taken inside the script would
    otherwise differ from one taken by the command that started it. On Linux the kernel
    keeps the start environment in ``/proc/self/environ``; elsewhere (or when it cannot
    be read) the process's environment as it is now is all there is.
    """
    try:
        with open("/proc/self/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return os.environ
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return env


class Context:
    """The machine as one probe run sees it."""

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        conda_prefix: str | None = None,
        redactor: Redactor | None = None,
        env_allow: Sequence[str] = (),
        command_timeout: float = 10.0,
        files_only: bool = False,
    ) -> None:
        # Plain strings rather than pathlib: this module is on the path of every snapshot,
        # and pathlib (with the URL and address modules it imports) costs a few ms to load.
        self.root = os.path.realpath(os.fspath(root))
        # ``files_only`` reads even "/" as a file tree: what a capture of an unpacked image
        # with --root sees, taken from inside that image instead.
        self.live = self.root == "/" and not files_only
        # Under --root the tree's own environment is unknown; envcap's is not the tree's.
        self.env: Mapping[str, str] = dict(start_environment() if env is None else env) if self.live else {}
        self.python = python
        self.conda_prefix = conda_prefix
        self.redactor = redactor or default_redactor()
        self.env_allow = tuple(env_allow)
        self.command_timeout = command_timeout
        # Probes are independent, yet two may ask one program the same question (nvcc
        # --version for the compilers and for the CUDA toolkit): within one snapshot the
        # answer is asked once and shared, keyed by the program's real path.
        self._runs: dict[tuple[str, ...], _subprocess.Result | None] = {}
        self._runs_lock = threading.Lock()
        self._run_locks: dict[tuple[str, ...], threading.Lock] = {}

    # -- files ---------------------------------------------------------------------

    def host_path(self, path: str) -> str:
        """Where ``path`` (absolute, as seen inside the tree) lies on this machine."""
        if self.live:
            return path
        return os.path.join(self.root, self._resolve(path).lstrip("/"))

    def _resolve(self, path: str) -> str:
        """Resolve ``path`` inside the tree, following links as the tree would."""
        parts = [p for p in path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            if os.path.islink(candidate):
                hops += 1
                if hops > _MAX_LINKS:
                    raise OSError(f"too many levels of symbolic links in {path}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            resolved.append(part)
        return "/" + "/".join(resolved)

    def read_text(self, path: str, limit: int | None = None) -> str | None:
        """The text of a file, or ``None`` when it does not exist or cannot be read."""
        try:
            with open(self.host_path(path), "rb") as fh:
                data = fh.read() if limit is None else fh.read(limit)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            return None
        return data.decode("utf-8", "replace")

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with open(self.host_path(path), "rb") as fh:
                return fh.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            return None

    def exists(self, path: str) -> bool:
        try:
            return os.path.exists(self.host_path(path))
        except OSError:
            return False

    def is_dir(self, path: str) -> bool:
        try:
            return os.path.isdir(self.host_path(path))
        except OSError:
            return False

    def listdir(self, path: str) -> list[str]:
        """Sorted entry names of a directory; empty when it is absent."""
        try:
            return sorted(os.listdir(self.host_path(path)))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []

    def glob(self, directory: str, pattern: str) -> list[str]:
        """Absolute (tree) paths of the entries of ``directory`` matching ``pattern``."""
        base = directory.rstrip("/")
        return [f"{base}/{name}" for name in fnmatch.filter(self.listdir(directory), pattern)]

    def readlink(self, path: str) -> str | None:
        """The target of a symbolic link, as written in the link; ``None`` if not a link."""
        if self.live:
            target = path
        else:
            parent, _, name = path.rstrip("/").rpartition("/")
            target = os.path.join(self.root, self._resolve(parent or "/").lstrip("/"), name)
        try:
            return os.readlink(target)
        except OSError:
            return None

    def realpath(self, path: str) -> str:
        """``path`` with every link resolved, as a path inside the tree."""
        if self.live:
            return os.path.realpath(path)
        return self._resolve(path)

    def stat_size(self, path: str) -> int | None:
        try:
            return os.stat(self.host_path(path)).st_size
        except OSError:
            return None

    # -- programs ------------------------------------------------------------------

    def which(self, name: str) -> str | None:
        """The program ``name`` on the live machine's PATH (as ``shutil.which``, without
        importing shutil and the compression modules it brings)."""
        if not self.live:
            return None
        for directory in self.env.get("PATH", os.defpath).split(os.pathsep):
            candidate = os.path.join(directory or ".", name)
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                return candidate
        return None

    def run(
        self, argv: Sequence[str], timeout: float | None = None, *, cacheable: bool = False
    ) -> _subprocess.Result | None:
        """Run a program on the live machine; not applicable under --root.

        ``cacheable`` says the answer depends only on the program's file (``--version``):
        it may then come from the cache in :mod:`envcap.probes._programs`.
        """
        if not self.live:
            raise NotApplicable("runs programs, which cannot be done for a file tree")
        key = (os.path.realpath(argv[0]) if "/" in argv[0] else argv[0], *argv[1:])
        with self._runs_lock:
            lock = self._run_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._runs:
                self._runs[key] = self._run_or_recall(argv, timeout, cacheable)
            return self._runs[key]

    def recall(self, argv: Sequence[str]) -> _subprocess.Result | None:
        """The cached answer of a cacheable ``argv`` (see :meth:`run`), without running it."""
        cache_key = self._cache_key(argv)
        return _programs.get(cache_key) if cache_key is not None else None

    def _cache_key(self, argv: Sequence[str]) -> str | None:
        return _programs.key(argv) if self.live and "/" in argv[0] else None

    def _run_or_recall(
        self, argv: Sequence[str], timeout: float | None, cacheable: bool
    ) -> _subprocess.Result | None:
        cache_key = self._cache_key(argv) if cacheable else None
        if cache_key is not None:
            known = _programs.get(cache_key)
            if known is not None:
                return known
        result = _subprocess.run(argv, timeout=timeout or self.command_timeout, env=self.env)
        if cache_key is not None and result is not None and result.returncode == 0:
            _programs.put(cache_key, result)
        return result
