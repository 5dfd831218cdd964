"""The ``envcap store`` commands: looking after the store itself (click code only)."""

from __future__ import annotations

import click

from .common import open_store


@click.group(name="store")
def store() -> None:
    """Look after the store: rebuild its index."""


@store.command()
def reindex() -> None:
    """Rebuild the store's index from its objects (a lost, empty or damaged index).

    Every object is re-hashed and read; snapshots and runs are indexed again, and what
    only the old index held (notes, image records) is carried over when it can be read.
    The old index is kept beside the new one. Run it while nothing else uses the store.
    """
    with open_store() as s:
        counts = s.reindex()
    click.echo(f"index rebuilt from {counts['objects']} object(s): {counts['snapshots']} snapshot(s), "
               f"{counts['runs']} run(s), {counts['carried']} row(s) carried over from the old index")
    if counts["unreferenced"]:
        click.echo(f"{counts['unreferenced']} object(s) are referenced by no snapshot or run (indexed as such)")
    if counts["corrupt"]:
        click.echo(f"{counts['corrupt']} corrupt object(s) left out: `envcap verify` names them", err=True)
