"""The store's index tables, declared once (SQLAlchemy Core) for both backends.

SQLite (the embedded store) and PostgreSQL (the shared one) get their DDL from these
declarations, and the run search (:mod:`.search`) builds its queries on them. Text keys
compare byte by byte on both: SQLite's default ``BINARY`` collation, and ``COLLATE "C"``
on PostgreSQL, so that id-prefix ranges and sort orders (Python's character order)
agree.

SQLAlchemy takes about 0.3 s to import, and ``envcap snapshot`` and ``envcap diff`` must
not pay for it: the DDL they need is rendered once into :mod:`._ddl` (``python -m
envcap.store.schema`` writes it), and a test holds that file equal to what these
declarations render.

Migrations: PostgreSQL keeps its history in ``envcap_schema`` (:data:`.postgres.MIGRATIONS`);
the embedded index keeps its own version in SQLite's ``user_version`` and is brought up
to date when it is opened for writing (:func:`.embedded.Store.db`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_C = "C"


def _text(collate: bool = True) -> sa.types.TypeEngine[str]:
    # COLLATE "C" on PostgreSQL only: SQLite's default collation already compares bytes.
    return sa.Text().with_variant(sa.Text(collation=_C), "postgresql") if collate else sa.Text()


_big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

objects = sa.Table(
    "objects", metadata,
    sa.Column("id", _text(), primary_key=True),
    sa.Column("size", _big, nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),
)
manifests = sa.Table(
    "manifests", metadata,
    sa.Column("id", _text(), primary_key=True),
    sa.Column("env_id", _text(), nullable=False),
    sa.Column("platform_id", _text(), nullable=False),
    sa.Column("schema_version", sa.Text(), nullable=False),
    sa.Column("first_seen", sa.Text(), nullable=False),
    sa.Index("manifests_env", "env_id"),
    sa.Index("manifests_platform", "platform_id"),
)
snapshots = sa.Table(
    "snapshots", metadata,
    sa.Column("record", _text(), primary_key=True),
    sa.Column("manifest_id", _text(), sa.ForeignKey("manifests.id"), nullable=False),
    sa.Column("taken_at", _text()),
    sa.Column("hostname", sa.Text()),
    sa.Column("labels", sa.Text(), nullable=False),
    sa.Index("snapshots_manifest", "manifest_id"),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", _text(), primary_key=True),
    sa.Column("record", _text(), nullable=False),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("started_at", _text(), nullable=False),
    sa.Column("ended_at", sa.Text()),
    sa.Column("exit_code", _big),
    sa.Column("manifest_id", _text()),
    sa.Column("env_id", _text()),
    sa.Column("params_id", _text()),
    sa.Column("git_commit", _text()),
    sa.Column("labels", sa.Text(), nullable=False),
    sa.Index("runs_env", "env_id"),
    sa.Index("runs_params", "params_id"),
)
# What ``--where`` and ``--sort`` read, one row per run and field: every parameter
# (``params.NAME``), metric (``metrics.NAME``, with its least and greatest logged value in
# ``lo``/``hi``), label (``labels.NAME``), resource figure (``resources.…``) and the
# record's own fields (``status``, ``host``, ``env_id``, ``started_at``, …). ``kind`` says
# how the value compares (see :mod:`.search`): ``n`` a finite number in ``num``, ``s`` a
# string, ``b`` a boolean (``num`` 1 or 0), ``z`` null, ``o`` anything else (its JSON in
# ``txt``, compared in Python). ``txt`` is the value's text form (the string itself, else
# its JSON); ``idlike`` marks a string that is an id (matched by prefix with ``=``).
run_values = sa.Table(
    "run_values", metadata,
    sa.Column("run_id", _text(), primary_key=True),
    sa.Column("key", _text(), primary_key=True),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("num", sa.Float()),
    sa.Column("txt", _text(), nullable=False),
    sa.Column("idlike", sa.Integer(), nullable=False),
    sa.Column("lo", sa.Float()),
    sa.Column("hi", sa.Float()),
    sa.Index("run_values_num", "key", "num"),
    sa.Index("run_values_txt", "key", "txt"),
    # The few rows that are not numbers: which keys hold text or odd values, found
    # without reading every number (how a sort is planned, see envcap.store.search).
    sa.Index("run_values_kinds", "key", "kind", sqlite_where=sa.text("kind <> 'n'"),
             postgresql_where=sa.text("kind <> 'n'")),
    # Clustered by (run_id, key) in SQLite: no second copy of every row in a rowid table.
    sqlite_with_rowid=False,
)
run_notes = sa.Table(
    "run_notes", metadata,
    sa.Column("seq", _big, primary_key=True, autoincrement=True),
    sa.Column("run_id", _text(), nullable=False),
    sa.Column("time", sa.Text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    # The note's own object ({"schema": "envcap/note", "run", "time", "text"}): a reindex
    # finds the note again from it. NULL only on rows written before notes were objects.
    sa.Column("object", _text()),
    sa.Index("run_notes_run", "run_id"),
    sqlite_autoincrement=True,
)
file_hashes = sa.Table(
    "file_hashes", metadata,
    sa.Column("path", _text(), primary_key=True),
    sa.Column("size", _big, nullable=False),
    sa.Column("mtime_ns", _big, nullable=False),
    sa.Column("ctime_ns", _big, nullable=False),
    sa.Column("inode", _big, nullable=False),
    sa.Column("digest", sa.Text(), nullable=False),
)
tree_hashes = sa.Table(
    "tree_hashes", metadata,
    sa.Column("path", _text(), primary_key=True),
    sa.Column("signature", sa.Text(), nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("fingerprint", sa.Text(), nullable=False),
    sa.Column("files", _big, nullable=False),
    sa.Column("bytes", _big, nullable=False),
    sa.Column("skipped", _big, nullable=False),
)
run_reproductions = sa.Table(
    "run_reproductions", metadata,
    sa.Column("run_id", _text(), primary_key=True),
    sa.Column("original_id", _text(), nullable=False),
    sa.Column("verdict", sa.Text()),
    sa.Index("run_reproductions_original", "original_id"),
)
run_outputs = sa.Table(
    "run_outputs", metadata,
    sa.Column("fingerprint", _text(), primary_key=True),
    sa.Column("run_id", _text(), primary_key=True),
    sa.Column("path", _text(), primary_key=True),
)
images = sa.Table(
    "images", metadata,
    sa.Column("env_id", _text(), nullable=False),
    sa.Column("repository", _text(), primary_key=True),
    sa.Column("tag", sa.Text(), nullable=False),
    sa.Column("digest", _text(), primary_key=True),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("engine", sa.Text(), nullable=False),
    sa.Column("base", sa.Text(), nullable=False),
    sa.Column("differences", sa.Text(), nullable=False),
    sa.Column("built_at", _text(), nullable=False),
    sa.Index("images_env", "env_id"),
)
image_inputs = sa.Table(
    "image_inputs", metadata,
    sa.Column("repository", _text(), primary_key=True),
    sa.Column("digest", _text(), primary_key=True),
    sa.Column("inputs", sa.Text(), nullable=False),
)

key_runs = sa.Table(
    "key_runs", metadata,
    sa.Column("run_id", _text(), primary_key=True),
    sa.Column("marked_at", _text(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
)
revalidation_jobs = sa.Table(
    "revalidation_jobs", metadata,
    sa.Column("round", _text(), primary_key=True),
    sa.Column("run_id", _text(), primary_key=True),
    sa.Column("task", _big, nullable=False),
    sa.Column("scheduler", sa.Text(), nullable=False),
    sa.Column("job_id", sa.Text()),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("rebuild_id", _text()),
    sa.Column("verdict", sa.Text()),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("updated_at", _text(), nullable=False),
    sa.Column("created_at", _text(), nullable=False),
)
carried = sa.Table(
    "carried", metadata,
    sa.Column("kind", _text(), primary_key=True),
    sa.Column("key", _text(), primary_key=True),
    sa.Column("object", _text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
)

# The tables each backend's schema version added, in order: version 1 is the first
# published schema, version 2 the run values and note objects, version 3 the key runs
# and their revalidations, and what run bundles carry that no index serves.
ADDED_IN = {2: ("run_values",), 3: ("key_runs", "revalidation_jobs", "carried")}
COLUMNS_ADDED_IN = {2: (("run_notes", "object"),)}


def dialect(name: str) -> sa.engine.Dialect:
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.dialect()
    from sqlalchemy.dialects.postgresql import psycopg

    return psycopg.dialect()  # type: ignore[no-untyped-call]


def ddl(name: str, tables: list[str] | None = None, *, if_not_exists: bool = False) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of ``tables`` (default: all) in a dialect."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    d = dialect(name)
    out = []
    for table in metadata.sorted_tables:
        if tables is not None and table.name not in tables:
            continue
        out.append(" ".join(str(CreateTable(table, if_not_exists=if_not_exists).compile(dialect=d)).split()))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(" ".join(str(CreateIndex(index, if_not_exists=if_not_exists).compile(dialect=d)).split()))
    return out


def add_column(name: str, table: str, column: str) -> str:
    col = metadata.tables[table].c[column]
    return f"ALTER TABLE {table} ADD COLUMN {column} {col.type.compile(dialect=dialect(name))}"


def render() -> str:
    """The text of :mod:`._ddl`."""
    v2_pg = ddl("postgresql", list(ADDED_IN[2])) + [add_column("postgresql", t, c) for t, c in COLUMNS_ADDED_IN[2]]
    v2_sqlite = (ddl("sqlite", list(ADDED_IN[2]), if_not_exists=True)
                 + [add_column("sqlite", t, c) for t, c in COLUMNS_ADDED_IN[2]])
    lines = [
        '"""The index DDL rendered from :mod:`.schema` (generated: `python -m envcap.store.schema`).',
        "",
        "Kept as text so that opening the embedded store never imports SQLAlchemy; a test holds",
        "it equal to what the declarations render.",
        '"""',
        "",
        "# Every table, for a new embedded index.",
        f"SQLITE = {ddl('sqlite', if_not_exists=True)!r}",
        "# What version 2 adds to an embedded index of version 1.",
        f"SQLITE_V2 = {v2_sqlite!r}",
        "# What version 2 adds to a shared store of version 1.",
        f"POSTGRESQL_V2 = {v2_pg!r}",
        "# What version 3 adds to a shared store of version 2.",
        f"POSTGRESQL_V3 = {ddl('postgresql', list(ADDED_IN[3]))!r}",
        "# Each table's own statements, for a module that makes its tables on first use.",
        f"SQLITE_TABLES = { {t.name: ddl('sqlite', [t.name], if_not_exists=True) for t in metadata.sorted_tables}!r}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - run by hand when the declarations change
    import os

    with open(os.path.join(os.path.dirname(__file__), "_ddl.py"), "w", encoding="utf-8") as fh:
        fh.write(render())
