"""Class 4: a broken store fails clearly and loses nothing.

A full disk (a tiny tmpfs where this runs as root and may mount one; a file size limit
in a child process everywhere), a read-only store (a tmpfs remounted read-only), a
zero-length or damaged index, missing and corrupt objects: every command ends with exit
0 or 1 when it can do its work, or exit 2 and an ``envcap: error:`` line, never a
traceback; what was stored stays readable, and ``envcap store reindex`` rebuilds a lost
index from the objects."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_support import Case  # isort: skip
import hardening_support  # noqa: F401  (puts the helpers' folders on the path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import make_repo, run_id_of

CASE = "4. broken stores"


def envcap(*args: str, home: Path, cwd: Path | None = None, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "envcap", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "ENVCAP_HOME": str(home)}, preexec_fn=limit, timeout=120)


def clean(proc: subprocess.CompletedProcess[str], *codes: int) -> None:
    """Exit with one of ``codes`` (2: with an error line) and no traceback."""
    with Case(CASE):
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert proc.returncode in codes, (proc.args, proc.returncode, proc.stderr)
        if proc.returncode == 2:
            assert proc.stderr.startswith("envcap: error: "), proc.stderr


def _populate(home: Path, tmp: Path) -> tuple[str, str]:
    """A store with snapshots and a finished run with metrics and a note."""
    for label in ("a", "b"):
        clean(envcap("snapshot", "--select", "os", "--label", f"node={label}", home=home), 0)
    repo = make_repo(tmp / "proj", {"train.py": (
        "import json, os\n"
        "open(os.path.join(os.environ['ENVCAP_RUN_DIR'], 'metrics.jsonl'), 'a').write("
        "json.dumps({'name': 'acc', 'value': 0.9}) + '\\n')\n")})
    proc = envcap("run", "--param", "lr=0.1", "--", sys.executable, "train.py", home=home, cwd=repo)
    clean(proc, 0)
    run_id = run_id_of(proc)
    clean(envcap("note", run_id, "keep me", home=home), 0)
    manifest = tmp / "m.json"
    manifest.write_text(envcap("snapshot", "--json", "--no-store", "--select", "os", "--select", "kernel", home=home).stdout)
    return run_id, str(manifest)


def _state(home: Path, run_id: str) -> tuple[list[str], dict[str, object]]:
    snapshots = sorted(r["record"] for r in json.loads(envcap("ls", "--json", home=home).stdout))
    run = json.loads(envcap("show", run_id, "--json", home=home).stdout)
    return snapshots, run


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only, where mounting is allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "mnt"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_and_a_read_only_store(tmpfs: Path, tmp_path: Path) -> None:
    home = tmpfs / "store"
    run_id, manifest = _populate(home, tmp_path)
    before = _state(home, run_id)
    # Fill the disk, then try every command that writes.
    with open(tmpfs / "fill", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass  # full
    repo = tmp_path / "proj"
    writes = [("snapshot",), ("snapshot", "--label", "x=full"), ("import", manifest),
              ("run", "--", sys.executable, "-c", "pass"), ("note", run_id, "more")]
    for args in writes:
        clean(envcap(*args, home=home, cwd=repo), 0, 2)
    (tmpfs / "fill").unlink()
    for args in (("ls",), ("runs",), ("show", run_id), ("verify",), ("fleet",)):
        clean(envcap(*args, home=home), 0, 1)
    after_full = _state(home, run_id)
    assert set(before[0]) <= set(after_full[0]), "a snapshot was lost on a full disk"
    assert after_full[1]["metrics"] == before[1]["metrics"] and after_full[1]["notes"][0]["text"] == "keep me"
    # Read-only: everything that reads works, everything that writes says why it cannot.
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for args in (("ls",), ("ls", "--json"), ("runs",), ("show", run_id), ("show", before[0][0]), ("verify",),
                 ("fleet",), ("audit", run_id), ("export", run_id, "-o", str(tmp_path / "b.zip"))):
        proc = envcap(*args, home=home, cwd=tmp_path)
        clean(proc, 0, 1)
    for args in writes + [("store", "reindex")]:
        proc = envcap(*args, home=home, cwd=repo)
        clean(proc, 2)
        assert "read-only" in proc.stderr.lower() or "Read-only" in proc.stderr, proc.stderr
    assert _state(home, run_id)[0] == after_full[0]


@pytest.mark.parametrize("limit", [1, 20_000])
def test_a_file_size_limit_gives_a_clear_error_and_no_torn_record(tmp_path: Path, limit: int) -> None:
    # RLIMIT_FSIZE stands in for a full disk where no tmpfs can be mounted: a write past
    # it fails with EFBIG (Python ignores SIGXFSZ).
    home = tmp_path / "store"
    clean(envcap("snapshot", "--select", "os", home=home), 0)
    for args in (("snapshot",), ("snapshot", "--select", "os", "--label", "big=" + "x" * 30_000)):
        clean(envcap(*args, home=home, fsize=limit), 0, 2)
    proc = envcap("verify", home=home)
    clean(proc, 0, 1)
    # What a refused write can leave is objects the index does not name (never a row
    # naming a missing object): reindex takes them in, and the store verifies clean.
    assert "missing object" not in proc.stdout and "corrupt" not in proc.stdout, proc.stdout
    clean(envcap("store", "reindex", home=home), 0)
    clean(envcap("verify", home=home), 0)


def test_a_zero_length_index_is_reported_and_rebuilt(tmp_path: Path) -> None:
    home = tmp_path / "store"
    run_id, _ = _populate(home, tmp_path)
    snapshots, run = _state(home, run_id)
    for suffix in ("-wal", "-shm"):
        Path(f"{home}/index.sqlite{suffix}").unlink(missing_ok=True)
    (home / "index.sqlite").write_bytes(b"")
    proc = envcap("verify", home=home)
    clean(proc, 1)
    assert "unindexed object" in proc.stdout and "envcap store reindex" in proc.stdout
    proc = envcap("store", "reindex", home=home)
    clean(proc, 0)
    assert "3 snapshot(s), 1 run(s)" in proc.stdout, proc.stdout
    clean(envcap("verify", home=home), 0)
    snapshots_after, run_after = _state(home, run_id)
    assert snapshots_after[:2] == snapshots[:2] or set(snapshots) <= set(snapshots_after)
    del run["notes"], run_after["notes"]  # notes live only in the index: a zero-length one kept none
    assert run_after == run
    assert list(home.glob("index.sqlite.before-reindex-*")), "the old index is kept"


def test_reindex_keeps_what_only_a_damaged_index_held(tmp_path: Path) -> None:
    home = tmp_path / "store"
    run_id, _ = _populate(home, tmp_path)
    snapshots, run = _state(home, run_id)
    db = sqlite3.connect(home / "index.sqlite")
    db.execute("DELETE FROM snapshots")
    db.execute("DELETE FROM runs")
    db.commit()
    db.close()
    clean(envcap("verify", home=home), 0, 1)
    clean(envcap("store", "reindex", home=home), 0)
    clean(envcap("verify", home=home), 0)
    assert _state(home, run_id) == (snapshots, run)  # notes included: carried over


def test_show_run_checks_its_metrics_log(tmp_path: Path) -> None:
    home = tmp_path / "store"
    run_id, _ = _populate(home, tmp_path)
    log = json.loads(envcap("show", run_id, "--json", home=home).stdout)["metrics_log"]["object"]
    path = home / "objects" / "sha256" / log[7:9] / log[9:]
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data + b'{"name":"acc","value":1}\n')
    proc = envcap("show", run_id, home=home)
    clean(proc, 2)
    assert "corrupt" in proc.stderr
    path.unlink()
    proc = envcap("show", run_id, home=home)
    clean(proc, 2)
    assert "missing" in proc.stderr


def test_runs_and_ls_agree_on_a_missing_store(tmp_path: Path) -> None:
    home = tmp_path / "nothing-here"
    codes = set()
    for args in (("ls",), ("runs",), ("fleet",), ("verify",), ("store", "reindex")):
        proc = envcap(*args, home=home)
        clean(proc, 2)
        assert "no envcap store" in proc.stderr
        codes.add(proc.returncode)
    assert codes == {2} and not home.exists()
