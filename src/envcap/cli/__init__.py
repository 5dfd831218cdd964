"""The ``envcap`` command: click code only, one module per command group, every command
a call into the library. See :mod:`.main` for the group and its exit codes.

``main`` here is the entry point (the console script and ``python -m envcap``): a command
line :mod:`.quick` answers without click (two manifest files to diff, a plain snapshot, a
query of runs) is run there; any other goes to the click group, :data:`envcap.cli.main.main`.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence


def main(args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
    """Run the ``envcap`` command with ARGS (default: the process's arguments)."""
    import atexit
    import gc

    # When the process ends, the interpreter's last garbage collection walks every object
    # still alive (a shared store's driver alone leaves about 50 ms of that): frozen by
    # the last exit handler, they are skipped. Nothing envcap writes waits for a
    # collection (files and transactions are closed when a command returns), and in a
    # caller's process this happens only when that process ends.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    from .quick import run

    status = run(sys.argv[1:] if args is None else list(args)) if not extra else None
    if status is not None:
        sys.exit(status)
    group = _group()
    return group(args=args, prog_name=prog_name, **extra)


_entry = main


def _group() -> Any:
    import importlib

    group = importlib.import_module(".main", __name__).main
    # Importing the submodule bound this package's ``main`` to it; the entry point stays.
    globals()["main"] = _entry
    return group


__all__ = ["main"]
