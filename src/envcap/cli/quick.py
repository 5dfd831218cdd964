"""Commands answered before click is imported: ``envcap diff FILE FILE [--json]``,
``envcap snapshot [--json] [--no-store]`` and ``envcap runs`` with its query options
(``--json``, ``--where``, ``--label``, ``--sort``, ``--limit``, and ``--store``).

Importing click and the command group costs about what the whole comparison of two
1,000-package manifests costs, a tenth of a snapshot, and a third of a page of runs
from an indexed store, so these command lines (with nothing else on them) run here, with
the same work, output, messages and exit codes as the click commands in :mod:`.compare`,
:mod:`.main` and :mod:`.runs` (which call the same :func:`diff_output`,
:func:`snapshot_output` and :func:`list_runs`). Anything else, ``--help``, an option
written another way and a malformed command line included, goes to click.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Iterator, Sequence


def run(argv: Sequence[str]) -> int | None:
    """The exit status of ARGV run here, or None when click should run it."""
    files = _diff_files(argv)
    if files is not None:
        return _guarded(lambda: _diff(*files))
    flags = _snapshot_flags(argv)
    if flags is not None:
        as_json, no_store = flags
        return _guarded(lambda: _print(snapshot_output(as_json=as_json, no_store=no_store)))
    query = _runs_options(argv)
    if query is not None:
        store, options = query
        if store:
            from ..store.factory import select

            select(store)
        return _guarded(lambda: list_runs(**options, echo=lambda line: _print([line])))
    return None


def _guarded(work: Callable[[], int]) -> int:
    """WORK's exit status, with envcap's errors said as the ``envcap`` group says them."""
    from ..core.errors import EnvcapError

    try:
        try:
            return work()
        except EnvcapError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"envcap: error: {safe(exc)}\n")
            return exc.exit_code
        except KeyboardInterrupt:
            sys.stderr.write("envcap: interrupted\n")
            return 130
    except BrokenPipeError:
        return 0


def _print(lines: Iterable[str]) -> int:
    """Print LINES as click.echo writes them (a line at a time); exit status 0."""
    for line in lines:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


def _diff(a: str, b: str, as_json: bool) -> int:
    from ..compare.diff import diff_manifests
    from ..store.resolve import load_manifest

    result = diff_manifests(load_manifest(a), load_manifest(b), a_ref=a, b_ref=b)
    _print(diff_output(result, as_json))
    return 0 if result.identical else 1


def diff_output(result: Any, as_json: bool) -> list[str]:
    """What ``envcap diff`` prints for RESULT (a :class:`envcap.compare.diff.Diff`), a line
    of text each (JSON: one text)."""
    if as_json:
        import json

        return [json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)]
    from ..compare.diff import render_text

    return [safe(line) for line in render_text(result)]


def snapshot_output(*, as_json: bool = False, output: str | None = None, labels: Sequence[str] = (), root: str = "/",
                    python: str | None = None, conda_prefix: str | None = None, select: Sequence[str] = (),
                    skip: Sequence[str] = (), no_store: bool = False) -> Iterator[str]:
    """``envcap snapshot``: take the snapshot, store it, and yield the lines to print."""
    import time

    from ..core.files import write_text_atomic
    from ..capture.collect import parse_labels, snapshot as take
    from ..capture.summary import summary_lines
    from ..store.factory import open_store

    started = time.monotonic()
    opening = None
    if not no_store:
        from ..store.factory import is_shared, store_url

        # A shared store is opened while the probes run (connecting takes a while); the
        # embedded one opens in a fraction of a millisecond, and a thread of its own would
        # only compete with the probes for the interpreter.
        opening = (_in_background(lambda: open_store(create=True)) if is_shared(store_url())
                   else lambda: open_store(create=True))
    manifest = take(root=root, python=python, conda_prefix=conda_prefix, select=tuple(select), skip=tuple(skip),
                    labels=parse_labels(tuple(labels)))
    where = None
    if opening is not None:
        with opening() as store:
            store.add(manifest)
            where = store.where
    if output:
        write_text_atomic(output, manifest.to_json() + "\n")
    if as_json:
        yield manifest.to_json()
        return
    yield "envcap snapshot"
    for line in summary_lines(manifest):
        yield safe(line)
    tail = f"stored in {where}" if where else "not stored"
    yield f"\n{tail} ({time.monotonic() - started:.2f} s)"


def _in_background(work: Any) -> Any:
    """Start ``work()`` in a thread; the returned function waits for it and returns (or raises) its result."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            box["error"] = exc

    thread = threading.Thread(target=run, name="envcap-open-store", daemon=True)
    thread.start()

    def result() -> Any:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return result


def list_runs(*, as_json: bool, where: Sequence[str], labels: Sequence[str], sort: str | None, limit: int | None,
              echo: Callable[[str], Any]) -> int:
    """``envcap runs``: the runs the query selects, as JSON or a table; exit status 0."""
    import json

    from ..core.errors import UsageError
    from ..runs.query import Condition, find_runs
    from ..store.factory import open_store

    for w in where:
        Condition.parse(w)
    wanted: dict[str, str] = {}
    if labels:  # (the snapshot's module: not imported for a query without labels)
        from ..capture.collect import parse_labels

        wanted = parse_labels(labels)
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: give a number of runs, 0 or more")
    # No store is an error, as it is for `envcap ls` and `envcap fleet`: exit 2, not "no runs".
    with open_store() as store:
        getattr(store, "check_index", lambda: None)()  # a lost index is an error, not "no runs"
        # `--limit 0` without a sort has always listed every run (the last 0 read as all).
        found = find_runs(store, where=where, labels=wanted, sort=sort,
                          limit=None if limit == 0 and not sort else limit, count=False)
        chosen = found.views
        if not chosen:
            from ..store import runs as runs_store

            anything = runs_store.count(store) > 0
    if as_json:
        echo(json.dumps(chosen, indent=2, ensure_ascii=False))
        return 0
    if not chosen:
        echo("no runs match" if anything else "no runs")
        return 0
    from rich.console import Console
    from rich.table import Table

    from ..runs.describe import table_rows

    header, rows = table_rows(chosen)
    table = Table(box=None, header_style="bold")
    # A run id is never cut (26 characters, whole, on one line); params and metrics are
    # listed one a line, each line whole up to 60 characters, and the command wraps.
    widest = {col: max((len(line) for row in rows for line in row[i].split("\n")), default=0)
              for i, col in enumerate(header)}
    for col in header:
        table.add_column(col, no_wrap=col not in ("command", "params", "metrics"),
                         min_width=widest[col] if col == "id" else min(widest[col], 60)
                         if col in ("params", "metrics") else None,
                         overflow="fold" if col in ("params", "metrics", "command") else "ellipsis")
    for row in rows:
        table.add_row(*(cell(c) for c in row))
    Console(width=max(160, Console().width)).print(table)
    return 0


# The options of `envcap runs` run here, each written as `--name VALUE` or `--name=VALUE`.
_RUNS_REPEATED = {"--where": "where", "--label": "labels"}
_RUNS_ONCE = {"--sort": "sort", "--limit": "limit", "--store": "store"}


def _runs_options(argv: Sequence[str]) -> tuple[str | None, dict[str, Any]] | None:
    """(``--store``, the keywords of :func:`list_runs`) for ``runs`` with none but its
    query options, read as click reads them (an option's value is the next word, whatever
    it looks like: ``--sort -metrics.loss``), ``--limit`` in digits; else None, and click
    parses it (and says what is wrong)."""
    import re

    if not argv or argv[0] != "runs" or "--" in argv:
        return None
    found: dict[str, Any] = {"where": [], "labels": []}
    once: dict[str, str] = {}
    as_json = False
    rest = list(argv[1:])
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--json":
            if as_json:
                return None
            as_json = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in _RUNS_REPEATED and name not in _RUNS_ONCE:
            return None
        if not eq:
            if i + 1 >= len(rest):
                return None
            value = rest[i + 1]
            i += 1
        i += 1
        if name in _RUNS_REPEATED:
            found[_RUNS_REPEATED[name]].append(value)
        elif name in once:
            return None
        else:
            once[name] = value
    limit = once.get("--limit")
    if limit is not None and not re.fullmatch(r"[0-9]{1,9}", limit):
        return None
    options = {"as_json": as_json, "where": tuple(found["where"]), "labels": tuple(found["labels"]),
               "sort": once.get("--sort"), "limit": int(limit) if limit is not None else None}
    return once.get("--store"), options


def _snapshot_flags(argv: Sequence[str]) -> tuple[bool, bool] | None:
    """``snapshot`` with none but its flags ``--json`` and ``--no-store``, each at most once."""
    if not argv or argv[0] != "snapshot":
        return None
    rest = list(argv[1:])
    if len(set(rest)) != len(rest) or not set(rest) <= {"--json", "--no-store"}:
        return None
    return "--json" in rest, "--no-store" in rest


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


def cell(text: Any) -> Any:
    """A table cell that rich prints as it reads: terminal-safe, and never read as markup."""
    from rich.text import Text

    return Text(safe(text))


def safe(text: Any) -> str:
    """``text`` with each of its lines made terminal-safe (see :mod:`envcap.core.text`):
    what envcap prints comes from manifests, runs and stores made elsewhere."""
    from ..core.text import terminal_safe

    return "\n".join(terminal_safe(line) for line in str(text).split("\n"))
