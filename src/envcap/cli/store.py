"""``envcap store``: which store is in use, and what it holds."""

from __future__ import annotations

import json

import click

from .common import open_store


@click.group(name="store")
def store() -> None:
    """The store in use: which one it is, what it holds, and its index."""


@store.command(name="info")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def info(as_json: bool) -> None:
    """Say which store is in use, its schema version and what it holds."""
    with open_store() as opened:
        data = opened.info()
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    click.echo(f"store:          {data['location']} ({data['backend']})")
    click.echo(f"schema version: {data['schema_version']}")
    if data.get("server"):
        click.echo(f"server:         {data['server']}")
    for name, count in data["counts"].items():
        click.echo(f"{name + ':':<15} {count}")


@store.command()
def reindex() -> None:
    """Rebuild the store's index from its objects (a lost, empty or damaged index).

    Every object is re-hashed and read; snapshots and runs are indexed again in the live
    index, under its write lock, so writers may go on (they wait for it); what no object
    holds (notes, image records) stays. A copy of the index as it was is kept beside it;
    a deleted index is made anew, one that is not a database is set aside.
    """
    from ..core.errors import UsageError
    from ..store.embedded import IndexLostError

    try:
        opened = open_store()
    except IndexLostError:
        opened = open_store(create=True)
    with opened as s:
        if not hasattr(s, "reindex"):
            raise UsageError(f"{s.where} is a shared store: its index and objects are written in one "
                             "transaction, so there is no index to rebuild; `envcap verify` checks it")
        counts = s.reindex()
    click.echo(f"index rebuilt from {counts['objects']} object(s): {counts['snapshots']} snapshot(s), "
               f"{counts['runs']} run(s)" + (f", {counts['carried']} row(s) carried over from the old index"
                                             if counts["carried"] else ""))
    if counts["unreferenced"]:
        click.echo(f"{counts['unreferenced']} object(s) are referenced by no snapshot or run (indexed as such)")
    if counts["corrupt"]:
        click.echo(f"{counts['corrupt']} corrupt object(s) left out: `envcap verify` names them", err=True)
