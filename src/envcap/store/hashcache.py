"""The data-fingerprint cache's entries (see :mod:`envcap.runs.data`): one host's.

An entry keys a file's digest by its path and what ``stat`` says of it (size, mtime,
ctime, inode), a directory's fingerprint by its path and the hash of its files' stat
keys. Those keys mean something on one machine only: another host's file at the same
path, with the same size and times, is another file. So the entries never go to a
shared store: the embedded store keeps them in its own index (it is this machine's),
and a PostgreSQL store keeps them in a local SQLite file under this machine's envcap
home (``hash-cache.sqlite``), never in the shared database.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Protocol, Sequence

from ..core.errors import StoreError

Stat = tuple[int, int, int, int]
TreeRow = tuple[str, str, str, int, int, int]  # signature, kind, fingerprint, files, bytes, skipped
_TABLES = ("file_hashes", "tree_hashes")


class _Index(Protocol):
    @property
    def db(self) -> Any: ...
    def transaction(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None: ...


class HashEntries:
    """Reads and writes cache entries in one SQLite index (the store's or a local one)."""

    def __init__(self, index: _Index) -> None:
        self._index = index

    def under(self, root: str) -> list[tuple[str, Stat, str]]:
        """Every file entry at or under ``root``."""
        rows = self._index.db.execute(
            "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM file_hashes "
            "WHERE path = ? OR (path >= ? AND path < ?)",
            (root, root.rstrip("/") + "/", root.rstrip("/") + "0"),
        ).fetchall()
        return [(r[0], (r[1], r[2], r[3], r[4]), r[5]) for r in rows]

    def file(self, path: str) -> tuple[Stat, str] | None:
        row = self._index.db.execute(
            "SELECT size, mtime_ns, ctime_ns, inode, digest FROM file_hashes WHERE path = ?", (path,)).fetchone()
        return None if row is None else ((row[0], row[1], row[2], row[3]), row[4])

    def tree(self, root: str) -> TreeRow | None:
        row = self._index.db.execute("SELECT signature, kind, fingerprint, files, bytes, skipped FROM tree_hashes "
                                     "WHERE path = ?", (root,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])

    def save(self, files: dict[str, tuple[Stat, str]], trees: dict[str, TreeRow]) -> None:
        """Write entries, in one transaction."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", (path, *st, dig))
            for path, (st, dig) in files.items()
        ]
        statements += [("INSERT OR REPLACE INTO tree_hashes VALUES (?, ?, ?, ?, ?, ?, ?)", (root, *row))
                       for root, row in trees.items()]
        if statements:
            self._index.transaction(statements)


class LocalIndex:
    """This machine's own cache file, for a store shared with other machines."""

    def __init__(self, path: str) -> None:
        from ..core import sqlite as _sqlite
        from ._ddl import SQLITE

        os.makedirs(os.path.dirname(path), exist_ok=True)
        ddl = ";\n".join(s for s in SQLITE if any(f" {t} " in s for t in _TABLES)) + ";"
        self.path = path
        self.db = _sqlite.connect(path, ddl, what="the data-fingerprint cache")

    def transaction(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                self.db.execute(sql, params)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"cannot write the data-fingerprint cache {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()


def local(home: str) -> HashEntries:
    return HashEntries(LocalIndex(os.path.join(home, "hash-cache.sqlite")))
