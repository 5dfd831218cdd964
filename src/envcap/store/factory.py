"""Which store a command uses: ``--store URL``, else ``$ENVCAP_STORE``, else the
configuration file's ``[store] url``, else the embedded store under ``ENVCAP_HOME``.

A URL ``postgresql://`` (or ``postgres://``) names a shared PostgreSQL store; a path
or ``file://`` URL names an embedded store in that directory.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import UsageError

_PG_SCHEMES = ("postgresql://", "postgres://")
_selected: str | None = None


def select(url: str | None) -> None:
    """Use ``url`` for every store this process opens (``--store URL``)."""
    global _selected
    _selected = url or None


def store_url(url: str | None = None) -> str | None:
    """The store URL in force: the one given, ``--store``, ``$ENVCAP_STORE``, the config file."""
    if url:
        return url
    if _selected:
        return _selected
    env = os.environ.get("ENVCAP_STORE")
    if env:
        return env
    from ..core import config

    return config.store_url()


def is_shared(url: str | None) -> bool:
    return bool(url) and url.startswith(_PG_SCHEMES)  # type: ignore[union-attr]


def open_store(url: str | None = None, *, create: bool = False) -> Any:
    """The store ``url`` names (see the module's docstring for the default)."""
    chosen = store_url(url)
    if is_shared(chosen):
        from .postgres import PostgresStore

        return PostgresStore(chosen, create=create)  # type: ignore[arg-type]
    from .embedded import Store

    if not chosen or chosen == "embedded":
        return Store(create=create)
    if chosen.startswith("file://"):
        return Store(chosen[len("file://"):], create=create)
    if "://" in chosen:
        from ..core.redact import default_redactor

        raise UsageError(f"store {default_redactor().text(chosen)!r}: not a postgresql:// URL, a file:// URL "
                         "or a directory")
    return Store(chosen, create=create)


def open_embedded(*, create: bool = False) -> Any:
    """This machine's embedded store, whatever store is configured (``envcap push``)."""
    from .embedded import Store

    return Store(create=create)


def display(url: str | None) -> str:
    """A store URL fit to print: no password."""
    if not url:
        return ""
    if is_shared(url):
        from .postgres import display_url

        return display_url(url)
    from ..core.redact import default_redactor

    return default_redactor().text(url)
