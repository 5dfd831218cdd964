"""The ``envcap`` console script: the command line, with a head start for ``envcap snapshot``.

A plain ``envcap snapshot`` (no options but ``--json`` and ``--no-store``, which do not
change what is captured) starts its probes (:mod:`envcap.capture.early`) before click is
imported, so that their programs and file reads run while the command line is parsed.
Everything else goes straight to the click group, :func:`envcap.cli.main.main`.
"""

from __future__ import annotations

import sys

# Options of ``envcap snapshot`` that leave the capture itself as it is.
_OUTPUT_ONLY = frozenset({"--json", "--no-store"})


def plain_snapshot(args: list[str]) -> bool:
    """Whether ``envcap ARGS`` is a snapshot with the default capture."""
    return bool(args) and args[0] == "snapshot" and all(a in _OUTPUT_ONLY for a in args[1:])


def main() -> None:
    if plain_snapshot(sys.argv[1:]):
        from .capture import early

        # The arguments the snapshot command passes for these options (cli/main.py).
        early.start(root="/", python=None, conda_prefix=None, select=(), skip=(), labels={})
    from .cli.main import main as cli

    cli(prog_name="envcap")
