"""``envcap store``: which store is in use, and what it holds."""

from __future__ import annotations

import json

import click

from .common import open_store


@click.group(name="store")
def store() -> None:
    """The store in use: the embedded one, or a shared one (envcap config set store URL)."""


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
