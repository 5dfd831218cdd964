"""Answers of programs that depend only on the program's own file, kept between snapshots.

``gcc --version`` or ``nvcc --version`` costs a process start each, several per
snapshot, and a snapshot sits on the start path of every run. Their answer is a function
of the binary, so it is kept in a small cache keyed by the binary's real path and its
size, modification time, change time and inode: replacing or touching the file, or
installing another version, changes the key. Only ELF executables are cached; a script
(a wrapper, a shim) may answer differently with each environment and is always run.

The cache lives in ``$ENVCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/envcap``; deleting it is
always safe.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Sequence

from ..core.config import cache_dir
from ..core.proc import Result

_FILE = "programs.json"
_lock = threading.Lock()
_loaded: dict[str, dict[str, list[Any]]] = {}


def key(argv: Sequence[str]) -> str | None:
    """The cache key of running ``argv``, or ``None`` when its answer must not be cached."""
    real = os.path.realpath(argv[0])
    try:
        st = os.stat(real)
        with open(real, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
    except OSError:
        return None
    return "\0".join([real, str(st.st_size), str(st.st_mtime_ns), str(st.st_ctime_ns), str(st.st_ino), *argv[1:]])


def _entries(directory: str) -> dict[str, list[Any]]:
    if directory not in _loaded:
        try:
            with open(os.path.join(directory, _FILE), encoding="utf-8") as fh:
                data = json.load(fh)
            _loaded[directory] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _loaded[directory] = {}
    return _loaded[directory]


def get(cache_key: str) -> Result | None:
    with _lock:
        entry = _entries(cache_dir()).get(cache_key)
    if isinstance(entry, list) and len(entry) == 3:
        return Result(int(entry[0]), str(entry[1]), str(entry[2]))
    return None


def put(cache_key: str, result: Result) -> None:
    """Remember a successful answer; a cache that cannot be written is simply not kept."""
    directory = cache_dir()
    with _lock:
        entries = _entries(directory)
        entries[cache_key] = [result.returncode, result.stdout, result.stderr]
        tmp = os.path.join(directory, f".{_FILE}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entries, fh)
            os.replace(tmp, os.path.join(directory, _FILE))
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
