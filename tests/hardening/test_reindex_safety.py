"""Class 8: acknowledged data survives a reindex (issue 20 item 7).

Writers keep adding snapshots while `envcap store reindex` runs, again and again: every
snapshot a writer was told is stored (it returned its id) is in the index afterwards. A
deleted, zero-length or garbage index is rebuilt; `ls` on a lost index is an error, not
an empty table; objects an interrupted write left are not damage to `verify`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hardening_support import Case  # isort: skip

CASE = "8. reindex and lost indexes"

WRITER = r"""
import json, os, sys
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store
base = json.load(open(sys.argv[2]))
stop = sys.argv[5] if len(sys.argv) > 5 else None
with Store(sys.argv[1]) as store:
    for i in range(int(sys.argv[3])):
        if stop and os.path.exists(stop):
            break
        data = dict(base, labels={"writer": sys.argv[4], "n": str(i)})
        try:
            record = store.add(Manifest.from_dict(data))
        except Exception as exc:  # not acknowledged: fine, as long as it says so
            print("FAILED", type(exc).__name__, exc, file=sys.stderr, flush=True)
            continue
        print(record, flush=True)
"""


def envcap(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], capture_output=True, text=True,
                          env={**os.environ, "ENVCAP_HOME": str(home)}, timeout=300)


def _manifest(tmp: Path, home: Path) -> Path:
    out = envcap("snapshot", "--json", "--no-store", "--select", "os", "--select", "kernel", home=home)
    assert out.returncode == 0, out.stderr
    path = tmp / "m.json"
    path.write_text(out.stdout)
    return path


def _indexed(home: Path) -> set[str]:
    out = envcap("ls", "--json", home=home)
    assert out.returncode == 0, out.stderr
    return {r["record"] for r in json.loads(out.stdout)}


def test_reindex_with_writers_running_loses_no_acknowledged_snapshot(tmp_path: Path) -> None:
    home = tmp_path / "store"
    manifest = _manifest(tmp_path, home)
    # Something for the reindex to read, so that it takes a while.
    seed = subprocess.run([sys.executable, "-c", WRITER, str(home), str(manifest), "150", "seed"],
                          capture_output=True, text=True, timeout=300)
    assert seed.returncode == 0, seed.stderr
    stop = tmp_path / "stop"
    # Writers that go on until the three reindexes are over (at most 100,000 snapshots).
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(manifest), "100000", f"w{k}", str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    reindexes = []
    try:
        time.sleep(1.0)  # the writers are writing
        for _ in range(3):
            reindexes.append(envcap("store", "reindex", home=home))
            assert all(w.poll() is None for w in writers), "a writer stopped before the reindexes were over"
    finally:
        stop.write_text("")
        results = [w.communicate(timeout=300) for w in writers]
    acknowledged = {line.strip() for out, _ in results for line in out.splitlines() if line.startswith("sha256:")}
    with Case(CASE):
        for r in reindexes:
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert acknowledged, [err for _, err in results]
        lost = acknowledged - _indexed(home)
        assert not lost, f"{len(lost)} acknowledged snapshot(s) vanished from the index"
        assert envcap("verify", home=home).returncode == 0


def _populated(tmp_path: Path) -> tuple[Path, set[str]]:
    home = tmp_path / "store"
    for label in ("a", "b"):
        assert envcap("snapshot", "--select", "os", "--label", f"node={label}", home=home).returncode == 0
    return home, _indexed(home)


def _drop_index(home: Path, content: bytes | None) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{home}/index.sqlite{suffix}").unlink(missing_ok=True)
    if content is None:
        (home / "index.sqlite").unlink()
    else:
        (home / "index.sqlite").write_bytes(content)


def test_a_deleted_index_is_rebuilt_as_the_help_promises(tmp_path: Path) -> None:
    home, before = _populated(tmp_path)
    _drop_index(home, None)
    with Case(CASE):
        ls = envcap("ls", home=home)
        assert ls.returncode == 2 and "reindex" in ls.stderr and "Traceback" not in ls.stderr, ls.stderr
        out = envcap("store", "reindex", home=home)
        assert out.returncode == 0, out.stderr
        assert "2 snapshot(s)" in out.stdout
        assert _indexed(home) == before


def test_ls_on_a_zero_length_index_is_an_error(tmp_path: Path) -> None:
    home, before = _populated(tmp_path)
    _drop_index(home, b"")
    with Case(CASE):
        for args in (("ls",), ("runs",)):
            out = envcap(*args, home=home)
            assert out.returncode == 2 and "reindex" in out.stderr and "Traceback" not in out.stderr, (args, out)
        assert envcap("store", "reindex", home=home).returncode == 0
        assert _indexed(home) == before


def test_a_garbage_index_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    home, before = _populated(tmp_path)
    _drop_index(home, b"this is not a database " * 300)
    with Case(CASE):
        ls = envcap("ls", home=home)
        assert ls.returncode == 2 and "Traceback" not in ls.stderr
        out = envcap("store", "reindex", home=home)
        assert out.returncode == 0, out.stderr
        assert _indexed(home) == before
        assert list(home.glob("index.sqlite.before-reindex-*")), "the garbage is kept for a look"


def test_verify_after_an_interrupted_write_is_clean(tmp_path: Path) -> None:
    """docs/store.md: a crash leaves at most objects no row names, which the next write
    reuses. Such objects are said, not counted as damage."""
    home, _ = _populated(tmp_path)
    # What a write killed between its objects and its index rows leaves.
    crash = subprocess.run([sys.executable, "-c", (
        "import os, sys\nfrom envcap.store.embedded import Store\n"
        "s = Store(sys.argv[1])\ns.put_object(b'an object of a write that never finished')\nos._exit(9)\n"),
        str(home)], capture_output=True, text=True, timeout=60)
    assert crash.returncode == 9
    with Case(CASE):
        out = envcap("verify", home=home)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no index row names" in out.stderr
