"""The ``envcap`` command: click code only, every command a call into the library.

Only this module turns :class:`envcap.core.errors.EnvcapError` into a message and an exit
code: 0 success, 1 a check found a difference or a problem, 2 an error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .common import echo, open_store, safe
from .quick import cell

from ..core.errors import EnvcapError


# Commands of other areas live in their own modules, imported only when that command is
# asked for (or listed by --help): `envcap snapshot` sits on the start path of every run
# and should not pay for the builder's or the reproducer's modules.
LAZY_COMMANDS = {
    "run": "envcap.cli.runs:run",
    "runs": "envcap.cli.runs:runs",
    "metrics": "envcap.cli.runs:metrics",
    "note": "envcap.cli.runs:note",
    "audit": "envcap.cli.runs:audit",
    "export": "envcap.cli.export:export",
    "attest": "envcap.cli.export:attest",
    "sign": "envcap.cli.export:sign",
    "keygen": "envcap.cli.export:keygen",
    "lock": "envcap.cli.build:lock",
    "build": "envcap.cli.build:build",
    "images": "envcap.cli.build:images",
    "rebuild": "envcap.cli.rebuild:rebuild",
    "diff": "envcap.cli.compare:diff",
    "fleet": "envcap.cli.compare:fleet",
    "ui": "envcap.cli.ui:ui",
    "importance": "envcap.cli.importance:importance",
    "store": "envcap.cli.store:store",
    "config": "envcap.cli.config:config",
    "push": "envcap.cli.push:push",
    "pull": "envcap.cli.push:pull",
    "key": "envcap.cli.revalidate:key",
    "revalidate": "envcap.cli.revalidate:revalidate",
    "revalidate-job": "envcap.cli.revalidate:revalidate_job",
    "drift": "envcap.cli.revalidate:drift",
    "bisect": "envcap.cli.revalidate:bisect",
}


class _Group(click.Group):
    """Turns envcap's errors into one line on stderr instead of a traceback, and loads
    the commands named in ``lazy`` on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = _store_first(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnvcapError as exc:
            click.echo(f"envcap: error: {safe(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("envcap: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(0)


def _store_first(args: list[str]) -> list[str]:
    """``--store URL`` works after any command too: it is moved in front of it.

    Only up to a ``--``: what follows is a command's own (``envcap run -- train.py --store x``).
    """
    out: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        if arg == "--store" and i + 1 < len(args):
            moved = [arg, args[i + 1]]
            i += 2
            continue
        if arg.startswith("--store="):
            moved = [arg]
        else:
            out.append(arg)
        i += 1
    return moved + out


@click.group(cls=_Group, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="envcap")
@click.option("--store", "store_url", metavar="URL", envvar="ENVCAP_STORE", show_envvar=True,
              help="The store to use: postgresql://user@host/db for a shared one (default: the config "
                   "file's [store] url, else the embedded store in ENVCAP_HOME). Accepted after any command.")
def main(store_url: str | None) -> None:
    """Capture, record, rebuild and verify the environments ML results come from."""
    if store_url:
        from ..store.factory import select

        select(store_url)



@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Also write the manifest to FILE.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Attach a label (repeatable), e.g. cluster=a.")
@click.option("--root", type=click.Path(file_okay=False), default="/", show_default=True,
              help="Capture a file tree (an unpacked image) instead of this machine: file-reading probes only.")
@click.option("--python", "python", metavar="PATH", help="Capture this interpreter (a venv's or conda env's python).")
@click.option("--conda-prefix", metavar="DIR", help="Capture this conda prefix (default: $CONDA_PREFIX).")
@click.option("--select", multiple=True, metavar="PROBE|TAG", help="Run only these probes (repeatable).")
@click.option("--skip", multiple=True, metavar="PROBE|TAG", help="Leave these probes out (repeatable).")
@click.option("--no-store", is_flag=True, help="Do not record the snapshot in the store.")
def snapshot(as_json: bool, output: str | None, labels: tuple[str, ...], root: str, python: str | None,
             conda_prefix: str | None, select: tuple[str, ...], skip: tuple[str, ...], no_store: bool) -> None:
    """Fingerprint this machine into an immutable manifest and store it."""
    from .quick import snapshot_output

    for line in snapshot_output(as_json=as_json, output=output, labels=labels, root=root, python=python,
                                conda_prefix=conda_prefix, select=select, skip=skip, no_store=no_store):
        click.echo(line)


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def show(ref: str, as_json: bool) -> None:
    """Show a stored manifest (by id, env_id or unique prefix), a manifest FILE, or a run."""
    from .runs import show_run_if_run
    from ..capture.summary import summary_lines

    if show_run_if_run(ref, as_json):
        return
    from ..store.resolve import resolve_manifest

    manifest = resolve_manifest(ref)
    if as_json:
        click.echo(manifest.to_json())
        return
    for line in summary_lines(manifest):
        echo(line)
    obs = manifest.observed
    echo(f"\n  taken {obs.get('time')} on {obs.get('hostname') or obs.get('root')}")


@main.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_snapshots(as_json: bool) -> None:
    """List the snapshots in the store."""
    from ..capture.summary import short

    with open_store() as store:
        getattr(store, "check_index", lambda: None)()  # a lost index is an error, not an empty list
        rows = store.snapshots()
    if as_json:
        click.echo(json.dumps([
            {"record": r.record, "id": r.manifest_id, "env_id": r.env_id, "platform_id": r.platform_id,
             "time": r.taken_at, "hostname": r.hostname, "labels": r.labels} for r in rows
        ], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("time", "host", "id", "env_id", "platform_id", "labels"):
        table.add_column(col)
    for r in rows:
        table.add_row(cell(r.taken_at or ""), cell(r.hostname or ""), short(r.manifest_id), short(r.env_id),
                      short(r.platform_id), cell(" ".join(f"{k}={v}" for k, v in sorted(r.labels.items()))))
    Console().print(table)


@main.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def import_(files: tuple[str, ...]) -> None:
    """Verify manifest FILEs or run bundles (.zip) and add them to the store (all or nothing)."""
    from ..runs.bundle import is_bundle, read_bundle, write_bundles
    from ..store.embedded import load_manifest

    bundles = {f: read_bundle(f) for f in files if is_bundle(f)}  # Verified before anything is stored,
    manifests = [load_manifest(f) for f in files if f not in bundles]  # like every manifest file.
    with open_store(create=True) as store:
        # All bundles checked against the store and each other, then written in one transaction.
        for path, run_id in zip(bundles, write_bundles(store, list(bundles.values()))):
            click.echo(f"imported {path}: run {run_id}")
        for path, m in zip([f for f in files if f not in bundles], manifests):
            store.add(m)
            click.echo(f"imported {path}: {m.id}")


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--signature", metavar="SIG", help="Check FILE against this signature (envcap sign) instead.")
@click.option("--key", metavar="KEY", help="With FILE: the public key to trust (default: envcap's local key).")
def verify(file: str | None, signature: str | None, key: str | None) -> None:
    """Re-hash every object in the store; exit 1 and list what is wrong.

    With FILE: check FILE against its signature (--signature, default FILE.sig).
    """
    if file or signature or key:
        from .export import verify_signature

        verify_signature(file, signature, key)
        return
    with open_store() as store:
        problems = store.verify()
        count = len(store.snapshots())
    for note in getattr(store, "notices", ()):
        click.echo(f"note: {note}", err=True)
    if problems:
        for p in problems:
            echo(p)
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"store verified: {count} snapshot(s), every object intact")
