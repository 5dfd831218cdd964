"""``envcap.params_from_argparse(parser, args)``: an argparse namespace as parameters.

::

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    envcap.params_from_argparse(parser, args)     # lr: default, or user if given

An argument given on the command line is ``user``, even when the value given equals
the default; one left out is ``default``. To tell them apart the command line is parsed
once more into a namespace whose every attribute is already set and which remembers
what is set in it: argparse fills in a default only where the namespace lacks the
attribute, so what the second parse sets was given. Where that is not possible (``args`` came from another command line, or the
parser has side effects that refuse a second parse), the run API's :meth:`Run.log_args`
decides by comparing each value with the parser's default.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from typing import Any, Sequence

_UNSET = object()
# Actions that add to the value already there (-vv, --tag a --tag b) start from their
# default rather than from the marker; the rest start from the marker.
_ACCUMULATING = tuple(getattr(argparse, n) for n in ("_CountAction", "_AppendAction", "_AppendConstAction",
                                                       "_ExtendAction") if hasattr(argparse, n))


class _Recording(argparse.Namespace):
    """A namespace that remembers which attributes the parse set."""

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.setdefault("_envcap_set", set()).add(name)
        super().__setattr__(name, value)


def given_names(parser: argparse.ArgumentParser, args: argparse.Namespace,
                argv: Sequence[str] | None = None) -> set[str] | None:
    """The names in ``args`` given on the command line ``argv``; None when that cannot be told."""
    import copy

    argv = list(sys.argv[1:] if argv is None else argv)
    start = dict.fromkeys(vars(args), _UNSET)
    for action in getattr(parser, "_actions", ()):
        if isinstance(action, _ACCUMULATING) and action.dest in start:
            start[action.dest] = copy.copy(action.default)
    probe = _Recording()
    probe.__dict__.update(start)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed, _ = parser.parse_known_args(argv, probe)
    except (SystemExit, Exception):  # noqa: BLE001 - a parser that will not parse twice
        return None
    given = set(parsed.__dict__.get("_envcap_set", ())) & set(start)
    # The same command line must give the same values, or it is not the one ``args`` came from.
    if any(getattr(parsed, n) != getattr(args, n) for n in given):
        return None
    if any(getattr(parsed, n) is _UNSET for n in given):
        return None
    return given


def params_from_argparse(parser: argparse.ArgumentParser, args: argparse.Namespace, *,
                         argv: Sequence[str] | None = None, run: Any = None) -> Any:
    """Record ``args`` as the run's parameters (given: ``user``, left out: ``default``).

    The run is ``run``, else the run this script reports into (``envcap run``'s, or one
    :func:`envcap.start_run` began), else a new run of the script's own (which ends
    with the script; ``run.finish()`` says how it ended). Returns it.
    """
    from ..runs.api import active_run, start_run

    if run is None:
        run = active_run() or start_run()
    given = given_names(parser, args, argv)
    if given is None:
        run.log_args(args, parser)
        return run
    for name, value in sorted(vars(args).items()):
        # As in log_args: these are the values the script runs with (they win over --param).
        run._log_param(name, value, "user" if name in given else "default", used=True)
    return run
