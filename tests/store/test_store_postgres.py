"""The shared store on a real PostgreSQL server: migrations, tampering, outages, credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from conftest import run_envcap
from envcap.core.errors import StoreError
from envcap.core.manifest import Manifest
from envcap.store.factory import open_store
from envcap.store.postgres import PostgresStore, display_url

psycopg = pytest.importorskip("psycopg")


def manifest(n: int, host: str = "node-1") -> Manifest:
    return Manifest.create({"os": {"id": "debian", "n": n}}, {"software": ["os"], "platform": []},
                           observed={"hostname": host, "time": f"2026-12-01T00:00:{n % 60:02d}+00:00"},
                           labels={"cluster": "a"})


def test_the_schema_version_is_recorded_and_a_newer_one_refused(pg_url: str) -> None:
    with PostgresStore(pg_url, create=True) as store:
        assert store.info()["schema_version"] == 3
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT version, envcap FROM envcap_schema").fetchall()
        assert [r[0] for r in rows] == [1, 2, 3]
        conn.execute("INSERT INTO envcap_schema (version, envcap) VALUES (4, '99.0')")
    with pytest.raises(StoreError, match="schema version 4, made by a newer envcap.*upgrade envcap"):
        PostgresStore(pg_url)
    proc = run_envcap("ls", env={"ENVCAP_STORE": pg_url})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "newer envcap" in proc.stderr


def test_an_empty_database_is_not_a_store_until_something_writes(pg_url: str) -> None:
    with pytest.raises(StoreError, match="no envcap store in postgresql://envcap@.*envcap snapshot"):
        open_store(pg_url)
    proc = run_envcap("ls", env={"ENVCAP_STORE": pg_url})
    assert proc.returncode == 2 and "no envcap store" in proc.stderr


def test_opening_at_once_from_many_processes_migrates_once(pg_url: str) -> None:
    code = "import sys; from envcap.store.factory import open_store; open_store(sys.argv[1], create=True).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url]) for _ in range(6)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM envcap_schema").fetchone()[0] == 3


def test_objects_are_compressed_and_stored_once(pg_url: str) -> None:
    with PostgresStore(pg_url, create=True) as store:
        data = b"envcap " * 1000
        oid = store.put_object(data)
        assert store.put_object(data) == oid
        assert store.get_object(oid) == data
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT size, length(data) FROM blobs WHERE id = %s", (oid,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == len(data) and rows[0][1] < len(data) // 10


@pytest.mark.parametrize("how", ["other bytes", "garbage"])
@pytest.mark.parametrize("victim", ["manifest", "snapshot"])
def test_a_tampered_object_row_is_caught_by_read_and_verify(pg_url: str, how: str, victim: str) -> None:
    m = manifest(1)
    with PostgresStore(pg_url, create=True) as store:
        record = store.add(m)
    oid = m.id if victim == "manifest" else record
    forged = zlib.compress(b'{"forged": true}') if how == "other bytes" else b"\x00not zlib"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE blobs SET data = %s WHERE id = %s", (forged, oid))
    with PostgresStore(pg_url) as store:
        with pytest.raises(StoreError, match=f"object {oid} is corrupt"):
            store.get_object(oid)
        with pytest.raises(StoreError, match="corrupt"):
            store.get(m.id)
        problems = store.verify()
    assert any(p.startswith(f"corrupt object {oid}") for p in problems)
    proc = run_envcap("verify", env={"ENVCAP_STORE": pg_url})
    assert proc.returncode == 1 and f"corrupt object {oid}" in proc.stdout


def test_verify_reports_a_missing_object_row(pg_url: str) -> None:
    m = manifest(1)
    with PostgresStore(pg_url, create=True) as store:
        store.add(m)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM blobs WHERE id = %s", (m.id,))
    with PostgresStore(pg_url) as store:
        assert any(p == f"missing object {m.id}" for p in store.verify())


def test_a_transaction_is_whole_or_absent(pg_url: str) -> None:
    with PostgresStore(pg_url, create=True) as store:
        with pytest.raises(StoreError, match="cannot write"):
            store.transaction([
                ("INSERT INTO objects VALUES (?, ?, ?)", ("sha256:aa", 1, "x")),
                ("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)", ("sha256:bb", "sha256:no-such-manifest", None,
                                                                 None, "{}")),
            ])
        assert store.db.execute("SELECT count(*) FROM objects").fetchone()[0] == 0


def test_the_dialect_layer_runs_sqlite_upserts(pg_url: str) -> None:
    from envcap.store import images

    with PostgresStore(pg_url, create=True) as store:
        image = images.ImageRecord("sha256:e", "reg/r", "t1", "sha256:d", "complete", "docker", "debian")
        images.record(store, image)
        images.record(store, images.ImageRecord("sha256:e", "reg/r", "t2", "sha256:d", "partial", "docker",
                                                "debian", ("x",)))
        got = images.images(store)
    assert [(i.tag, i.status, i.differences) for i in got] == [("t2", "partial", ("x",))]


def test_a_question_mark_or_percent_in_a_literal_is_text_not_a_parameter(pg_url: str) -> None:
    # SQLite's "?" parameters become psycopg's "%s" outside quoted text only: a literal
    # that holds "?" or "%" keeps it, and the parameters after it still line up.
    with PostgresStore(pg_url, create=True) as store:
        rows = store.query(("SELECT 'why?', ?, 'it''s 100% ?', \"?column\".x, ? FROM "
                            "(SELECT 1 AS x) AS \"?column\"", ("a", "b")))
    assert [tuple(r) for r in rows] == [("why?", "a", "it's 100% ?", 1, "b")]


# -- the server going away -----------------------------------------------------------------------


@pytest.fixture
def cluster() -> object:
    from pgcluster import Cluster

    c = Cluster()
    yield c
    c.destroy()


def test_the_server_stopping_mid_write_is_one_clear_error_and_nothing_half_written(
        cluster: object, tmp_path: Path) -> None:
    url = cluster.url  # type: ignore[attr-defined]
    files = []
    for n in range(400):
        path = tmp_path / f"m{n}.json"
        path.write_text(manifest(n, host=f"h{n}").to_json())
        files.append(str(path))
    env = {**os.environ, "ENVCAP_STORE": url}
    writer = subprocess.Popen([sys.executable, "-m", "envcap", "import", *files], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                if conn.execute("SELECT to_regclass('snapshots') IS NOT NULL").fetchone()[0] and \
                        conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] >= 20:
                    break
        except psycopg.Error:
            pass
        time.sleep(0.05)
    cluster.stop()  # type: ignore[attr-defined]
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envcap: error: lost the connection to the shared store "
                                                   "postgresql://envcap@127.0.0.1:"), err
    assert "Traceback" not in err and cluster.password not in err + out  # type: ignore[attr-defined]
    cluster.start()  # type: ignore[attr-defined]
    with PostgresStore(url) as store:
        written = len(store.snapshots())
        assert 20 <= written < 400
        assert store.verify() == []  # Every snapshot row names whole objects.
    again = run_envcap("import", *files, env={"ENVCAP_STORE": url})
    assert again.returncode == 0, again.stderr
    with PostgresStore(url) as store:
        assert len(store.snapshots()) == 400
        assert store.verify() == []


def test_no_server_is_one_clear_error() -> None:
    url = "postgresql://envcap:hunter2-canary@127.0.0.1:9/envcap"
    proc = run_envcap("snapshot", "--select", "os", env={"ENVCAP_STORE": url})
    assert proc.returncode == 2
    assert proc.stderr.startswith("envcap: error: cannot connect to the shared store "
                                  "postgresql://envcap@127.0.0.1:9/envcap: ")
    assert proc.stderr.count("\n") == 1 and "hunter2-canary" not in proc.stderr + proc.stdout


# -- credentials ---------------------------------------------------------------------------------


def test_display_url_drops_every_credential() -> None:
    assert display_url("postgresql://u:s3cret@h:5/db?sslmode=require&password=s3cret") == \
        "postgresql://u@h:5/db?sslmode=require"


@pytest.mark.parametrize("where", ["url", "PGPASSWORD", "pgpass"])
def test_the_password_never_reaches_a_record_a_message_or_store_info(pg_url: str, where: str,
                                                                     tmp_path: Path, isolated: Path) -> None:
    password = psycopg.conninfo.conninfo_to_dict(pg_url)["password"]
    bare = pg_url.replace(f":{password}@", "@")
    env = {"ENVCAP_STORE": pg_url if where == "url" else bare}
    if where == "PGPASSWORD":
        env["PGPASSWORD"] = password
    if where == "pgpass":
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"*:*:*:*:{password}\n")
        passfile.chmod(0o600)
        env["PGPASSFILE"] = str(passfile)
    outputs = []
    for args in (["snapshot", "--label", "team=a"], ["run", "--", sys.executable, "-c", "import os; print(1)"],
                 ["store", "info"], ["store", "info", "--json"], ["ls", "--json"], ["runs", "--json"],
                 ["config", "get", "store"], ["verify"], ["show", "sha256:ffffffff"]):
        proc = run_envcap(*args, env=env)
        outputs.append(proc.stdout + proc.stderr)
    # An error from the server names no password either.
    wrong = {**env, "ENVCAP_STORE": env["ENVCAP_STORE"].rsplit("/", 1)[0] + "/no_such_db"}
    proc = run_envcap("ls", env=wrong)
    assert proc.returncode == 2
    outputs.append(proc.stdout + proc.stderr)
    assert "(postgresql)" in outputs[2] and "snapshots:" in outputs[2]
    assert not [o for o in outputs if password in o]
    with psycopg.connect(pg_url) as conn:
        blobs = [zlib.decompress(r[0]) for r in conn.execute("SELECT data FROM blobs")]
        rows = json.dumps([list(r) for t in ("runs", "snapshots", "manifests", "run_notes")
                           for r in conn.execute(f"SELECT * FROM {t}")], default=str)
    assert len(blobs) >= 4
    assert not [b for b in blobs if password.encode() in b]
    assert password not in rows
    local = [p.read_bytes() for p in isolated.rglob("*") if p.is_file()]
    assert not [b for b in local if password.encode() in b]
