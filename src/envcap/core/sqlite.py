"""Opening envcap's SQLite files the one way they are all opened."""

from __future__ import annotations

import os
import sqlite3

from .errors import StoreError


def connect(path: str | os.PathLike[str], schema: str, *, what: str = "the store index") -> sqlite3.Connection:
    """An autocommit connection in WAL mode with a busy timeout, ``schema`` applied.

    WAL lets readers go on while one process writes, and the busy timeout makes
    concurrent writers (several snapshots at once) wait for each other instead of failing.
    A file that is not a database is a :class:`StoreError` naming it.
    """
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{what} {os.fspath(path)} cannot be used: {exc}") from exc
    return db
