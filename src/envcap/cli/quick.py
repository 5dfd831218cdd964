"""Commands answered before click is imported: ``envcap diff FILE FILE [--json]``.

Importing click and the command group costs about what the whole comparison of two
1,000-package manifests costs, so a diff of two manifest files (nothing else on its
command line) runs here, with the same work, output, messages and exit codes as the
click command in :mod:`.compare` (which calls :func:`diff_output` too). Anything else,
``--help`` and a malformed command line included, goes to click.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence


def run(argv: Sequence[str]) -> int | None:
    """The exit status of ARGV run here, or None when click should run it."""
    files = _diff_files(argv)
    if files is None:
        return None
    a, b, as_json = files
    from ..core.errors import EnvcapError

    try:
        try:
            from ..compare.diff import diff_manifests
            from ..store.resolve import load_manifest

            result = diff_manifests(load_manifest(a), load_manifest(b), a_ref=a, b_ref=b)
            for line in diff_output(result, as_json):
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except EnvcapError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"envcap: error: {safe(exc)}\n")
            return exc.exit_code
        except KeyboardInterrupt:
            sys.stderr.write("envcap: interrupted\n")
            return 130
    except BrokenPipeError:
        return 0
    return 0 if result.identical else 1


def diff_output(result: Any, as_json: bool) -> list[str]:
    """What ``envcap diff`` prints for RESULT (a :class:`envcap.compare.diff.Diff`), a line
    of text each (JSON: one text)."""
    if as_json:
        import json

        return [json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)]
    from ..compare.diff import render_text

    return [safe(line) for line in render_text(result)]


def _diff_files(argv: Sequence[str]) -> tuple[str, str, bool] | None:
    """(A, B, --json) for ``diff A B`` with an optional ``--json`` anywhere after ``diff``,
    where A and B are files; else None."""
    if len(argv) < 3 or argv[0] != "diff" or len(argv) > 4:
        return None
    rest = list(argv[1:])
    as_json = "--json" in rest
    if as_json:
        rest.remove("--json")
    if len(rest) != 2 or any(arg.startswith("-") for arg in rest):
        return None
    if not all(os.path.isfile(arg) for arg in rest):
        return None  # a stored id or a run: click's command opens the store
    return rest[0], rest[1], as_json


def safe(text: Any) -> str:
    """``text`` with each of its lines made terminal-safe (see :mod:`envcap.core.text`):
    what envcap prints comes from manifests, runs and stores made elsewhere."""
    from ..core.text import terminal_safe

    return "\n".join(terminal_safe(line) for line in str(text).split("\n"))
