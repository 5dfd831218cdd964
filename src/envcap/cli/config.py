"""``envcap config``: the settings kept in the configuration file."""

from __future__ import annotations

import click


@click.group(name="config")
def config() -> None:
    """Read and change envcap's configuration file ($ENVCAP_CONFIG or ~/.config/envcap/config.toml)."""


@config.command(name="set")
@click.argument("name", metavar="NAME")
@click.argument("value", metavar="VALUE")
def set_(name: str, value: str) -> None:
    """Set NAME to VALUE. NAME: store (a postgresql:// URL, or a directory for an embedded store),
    or label.KEY (a label of this node: every snapshot it takes, runs included, carries KEY=VALUE)."""
    from ..core import config as cfg
    from ..store.factory import display

    path = cfg.set_value(name, value)
    click.echo(f"{name} = {display(value)} (in {path})")


@config.command(name="unset")
@click.argument("name", metavar="NAME")
def unset(name: str) -> None:
    """Remove NAME from the configuration file (store: back to the embedded store)."""
    from ..core import config as cfg

    path = cfg.set_value(name, None)
    click.echo(f"{name} unset (in {path})")


@config.command(name="get")
@click.argument("name", metavar="NAME")
def get(name: str) -> None:
    """Print NAME's value in force (store: after --store and $ENVCAP_STORE), without credentials."""
    from ..core import config as cfg
    from ..core.errors import UsageError
    from ..store.factory import display, store_url

    if name.startswith(cfg.LABEL_PREFIX):
        labels = dict(cfg.load().labels)
        key = name[len(cfg.LABEL_PREFIX):]
        if key not in labels:
            raise UsageError(f"this node has no label {key!r}")
        click.echo(labels[key])
        return
    if name not in cfg.SETTABLE:
        raise UsageError(f"unknown setting {name!r}; known: {', '.join(sorted(cfg.SETTABLE))}, label.KEY")
    click.echo(display(store_url()) if store_url() else "embedded (default)")
