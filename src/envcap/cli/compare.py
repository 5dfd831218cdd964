"""The ``envcap diff`` and ``envcap fleet`` commands: click code only.

The work is in :mod:`envcap.compare.diff` and :mod:`envcap.compare.fleet`. Errors are
:class:`envcap.core.errors.EnvcapError`, which the ``envcap`` group turns into a message
and exit code 2.
"""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff(a: str, b: str, as_json: bool) -> None:
    """Show what differs between manifests A and B, by layer and section, or runs A and B.

    A and B are manifest files or stored manifest / snapshot ids (or unique prefixes).
    Changes likely to change numerical results are marked. When both are runs, their
    code, parameters, seeds, data, outputs, metrics and environment are compared. Exit 0
    when identical, 1 when different, 2 on error.
    """
    import os

    from ..compare.diff import diff_manifests
    from ..store.resolve import resolve_manifest
    from .quick import diff_output

    # A file is always a manifest (a run is named by id): two files need no store. (Two
    # files alone on the command line never reach here: .quick runs them without click.)
    if not (os.path.exists(a) or os.path.exists(b)) and _diff_runs(a, b, as_json):
        return
    result = diff_manifests(resolve_manifest(a), resolve_manifest(b), a_ref=a, b_ref=b)
    for line in diff_output(result, as_json):
        click.echo(line)
    click.get_current_context().exit(0 if result.identical else 1)


def _diff_runs(a: str, b: str, as_json: bool) -> bool:
    """``envcap diff RUN_A RUN_B``; False when A and B are not both runs."""
    from ..core.errors import StoreError
    from ..store.factory import open_store
    from ..store.resolve import resolve_run

    try:
        store = open_store(create=False)
    except StoreError:
        return False
    with store:
        ra = resolve_run(a, store=store)
        rb = resolve_run(b, store=store) if ra is not None else None
        if ra is None or rb is None:
            return False
        from ..compare.rundiff import diff_runs, render_text

        manifests = (store.get(ra.manifest), store.get(rb.manifest)) if ra.manifest and rb.manifest else None
        result = diff_runs(ra, rb, manifests=manifests)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        for line in render_text(result):
            click.echo(line)
    click.get_current_context().exit(0 if result.identical else 1)
    return True


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[PATH]...")
@click.option("--store", "use_store", is_flag=True,
              help="Read the snapshots in the store (the default when no PATH is given).")
@click.option("--cluster-label", default="cluster", show_default=True, metavar="KEY",
              help="The label that names a node's cluster (envcap snapshot --label KEY=NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a self-contained HTML report to FILE.")
@click.option("--all-snapshots", is_flag=True,
              help="Count every snapshot, not only the newest of each host.")
@click.option("--skip-invalid", is_flag=True,
              help="Report on the valid inputs when some are not valid manifests (listing those).")
@click.option("--check", is_flag=True, help="Exit 1 when any node differs from its cluster's majority.")
def fleet(paths: tuple[str, ...], use_store: bool, cluster_label: str, as_json: bool, html_file: str | None,
          all_snapshots: bool, skip_invalid: bool, check: bool) -> None:
    """Compare many nodes: groups, clusters, outliers.

    PATHs are manifest files or directories of them (*.json); with none, the store.
    Groups nodes with identical fingerprints per layer, shows which environments and
    platforms each cluster runs, the differences between groups, and the nodes that
    differ from their cluster's majority.
    """
    from ..core.errors import ManifestError, UsageError
    from ..compare.fleet import analyze, load_fleet, print_report

    store = None
    if use_store or not paths:
        from ..store.factory import open_store

        store = open_store(create=False)
    try:
        loaded = load_fleet(paths, store=store, every_snapshot=all_snapshots)
    finally:
        if store is not None:
            store.close()
    if loaded.rejected and not skip_invalid:
        shown = "; ".join(r.error for r in loaded.rejected[:5])
        more = f" (and {len(loaded.rejected) - 5} more)" if len(loaded.rejected) > 5 else ""
        raise ManifestError(
            f"{len(loaded.rejected)} of {loaded.snapshots} inputs are not valid manifests: {shown}{more}; "
            "--skip-invalid reports on the others"
        )
    if not loaded.nodes:
        raise UsageError("no snapshots to compare" + (" (every input was rejected)" if loaded.rejected else ""))
    report = analyze(loaded, cluster_label=cluster_label)
    if html_file:
        from ..core.files import write_text_atomic
        from ..compare.html import render_html

        write_text_atomic(html_file, render_html(report))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        print_report(report)
        if html_file:
            click.echo(f"HTML report written to {html_file}")
    click.get_current_context().exit(1 if check and report.outliers else 0)
