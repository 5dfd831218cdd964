"""What every command module shares: opening the store and writing to standard error."""

from __future__ import annotations

from typing import Any

import click

from .quick import safe


def open_store(create: bool = False) -> Any:
    """The store the commands use: ``--store``, ``$ENVCAP_STORE``, the config file, else the
    embedded one (imported on first use: ``--help`` never opens it)."""
    from ..store.factory import open_store as open_configured

    return open_configured(create=create)


def err(text: str) -> None:
    click.echo(f"envcap: {safe(text)}", err=True)


def echo(text: Any, err: bool = False) -> None:
    click.echo(safe(text), err=err)
