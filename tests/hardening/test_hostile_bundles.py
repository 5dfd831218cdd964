"""Class 5: forged bundles through `envcap import` (issue 20 items 1, 5, 6, 9).

A bundle is a stranger's: its paths, types, sizes and nesting are whatever the forger
chose, with every hash in its index consistent. Each is imported by the real command:
it is refused with exit 2 and an error line (never a traceback), leaving no run and no
object behind, or it is taken and every path in it is a relative, normalised path
inside its root. Nothing is ever written outside the store.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardening_support import Case, budget  # isort: skip
from hostile_support import (  # isort: skip
    ESCAPING_PATHS, HOSTILE_PATHS, WRONG_TYPES, BaseBundle, clean_refusal, cli, deep_json, files_under, forge,
    fresh_dir, make_base_bundle, store_state, with_untracked,
)

from envcap.core.files import UnsafePathError, safe_relpath

CASE = "5. hostile bundles (import)"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseBundle:
    return make_base_bundle(tmp_path_factory.mktemp("base-bundle"))


def _import(data: bytes, name: str = "b.zip") -> tuple[Any, Path, Path]:
    work = fresh_dir("envcap-hostile-")
    home, bundle = work / "home", work / name
    bundle.write_bytes(data)
    before = files_under(work)
    result = cli("import", str(bundle), home=home)
    outside = files_under(work) - before
    outside = {p for p in outside if not p.startswith("home")}
    assert not outside, f"written outside the store: {sorted(outside)[:5]}"
    return result, home, work


def _held(data: bytes) -> None:
    """Refused cleanly with nothing left, or taken with every path safe."""
    result, home, work = _import(data)
    try:
        assert not result.traceback, f"traceback: {result.exception!r}\n{result.output}"
        if result.code == 0:
            from envcap.store import runs as runs_store
            from envcap.store.embedded import Store

            with Store(home, create=False) as store:
                for run_id in runs_store.all_ids(store):
                    record = runs_store.load(store, run_id)
                    for item in record.git.get("untracked") or ():
                        safe_relpath(item["path"])
            assert cli("verify", home=home).code == 0
        else:
            clean_refusal(result)
            runs, objects = store_state(home)
            assert runs == [] and objects == [], (runs, objects[:3])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- item 1: paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../../x", "/abs/x", "a/../../x", "x\x00y"])
def test_a_bundle_whose_untracked_path_leaves_the_workspace_is_refused(base: BaseBundle, path: str) -> None:
    record, extra = with_untracked(base, [path])
    with Case(CASE):
        result, home, _ = _import(forge(base, record, extra=extra))
        clean_refusal(result)
        assert "untracked" in result.output
        assert store_state(home) == ([], [])


def test_the_workspace_refuses_a_stored_record_that_escapes(base: BaseBundle, tmp_path: Path) -> None:
    """Where it is used: a record that reached the store some other way (an older envcap,
    a hand-made row) still writes nothing outside the workspace, nor through a link."""
    from envcap.core.errors import EnvcapError
    from envcap.core.files import write_inside
    from envcap.runs.git import restore
    from envcap.store.embedded import Store

    repo = tmp_path / "repo"
    from hostile_support import make_repo

    make_repo(repo, {"a.txt": "a\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, repo / "link")
    from conftest import git

    git(repo, "add", "link")
    git(repo, "commit", "-qm", "a link")
    commit = git(repo, "rev-parse", "HEAD").strip()
    with Store(tmp_path / "home") as store:
        oid = store.put_object(b"owned\n")
        for i, path in enumerate(["../escape", "/tmp/abs-escape", "link/through-link", "a/../../escape"]):
            state = {"in_repository": True, "commit": commit,
                     "untracked": [{"path": path, "object": oid, "kind": "file"}]}
            with Case(CASE), pytest.raises(EnvcapError):
                restore(state, store, str(repo), str(tmp_path / f"ws{i}"))
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape").exists()
    assert not Path("/tmp/abs-escape").exists()
    # An untracked symlink may be restored; nothing is written through it afterwards.
    ws = tmp_path / "ws-link"
    ws.mkdir()
    write_inside(ws, "l", os.fsencode(str(outside)), symlink=True)
    with pytest.raises(UnsafePathError):
        write_inside(ws, "l/x", b"owned")
    assert list(outside.iterdir()) == []


@budget(1.0, 5)
@given(paths=st.lists(HOSTILE_PATHS, min_size=1, max_size=3), kind=st.sampled_from(["file", "symlink"]))
def test_generated_paths_in_a_bundle(base: BaseBundle, paths: list[str], kind: str) -> None:
    record, extra = with_untracked(base, paths, kind=kind)
    with Case(CASE):
        _held(forge(base, record, extra=extra))


@budget(1.0, 5)
@given(path=HOSTILE_PATHS, links=st.lists(st.sampled_from(["a", "b", "l"]), max_size=2))
def test_generated_paths_never_write_outside_the_root(path: str, links: list[str]) -> None:
    """The shared helper alone: every write lands inside the root or is refused."""
    from envcap.core.files import write_inside

    work = fresh_dir("envcap-paths-")
    root, outside = work / "root", work / "outside"
    root.mkdir()
    outside.mkdir()
    for link in links:
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        if not (root / link).exists():
            os.symlink(outside, root / link)
    with Case(CASE):
        try:
            written = write_inside(root, path, b"x")
        except UnsafePathError:
            pass
        except OSError:
            pass  # a name the file system refuses (too long): nothing written either
        else:
            assert os.path.realpath(written).startswith(str(root.resolve()) + os.sep)
        assert list(outside.iterdir()) == []
    shutil.rmtree(work, ignore_errors=True)


# -- types, sizes, nesting -------------------------------------------------------------------

_TYPE_TARGETS = [("git",), ("git", "untracked"), ("git", "untracked", 0), ("git", "untracked", 0, "path"),
                 ("git", "untracked", 0, "object"), ("git", "untracked", 0, "kind"), ("git", "diff"),
                 ("params_files",), ("params_files", 0, "repo_path"), ("params_files", 0, "object"),
                 ("params_files", 0, "path"), ("outputs",), ("data",), ("labels",), ("metrics_log",),
                 ("cwd",), ("argv",), ("id",), ("env_id",), ("manifest",), ("snapshot",), ("seeds",),
                 ("params",), ("exit_code",), ("state",), ("git", "untracked", 0, "size")]


def _set(record: dict[str, Any], where: tuple[Any, ...], value: Any) -> None:
    obj: Any = record
    for key in where[:-1]:
        if isinstance(obj, dict):
            obj = obj.setdefault(key, {} if not isinstance(key, int) else [])
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return
    last = where[-1]
    if isinstance(obj, dict):
        obj[last] = value
    elif isinstance(obj, list) and isinstance(last, int) and last < len(obj):
        obj[last] = value


@budget(1.0, 5)
@given(where=st.sampled_from(_TYPE_TARGETS), value=WRONG_TYPES)
def test_wrong_types_anywhere_in_the_record(base: BaseBundle, where: tuple[Any, ...], value: Any) -> None:
    record, extra = with_untracked(base, ["ok.txt"])
    _set(record, where, copy.deepcopy(value))
    with Case(CASE):
        _held(forge(base, record, extra=extra))


@budget(1.0, 5)
@given(depth=st.sampled_from([50, 500, 1000, 5000, 20000]),
       where=st.sampled_from(["labels", "metrics", "git", "run.json", "index", "notes"]))
def test_deep_nesting(base: BaseBundle, depth: int, where: str) -> None:
    deep = deep_json(depth).decode()
    if where == "run.json":
        data = forge(base, raw_run_json=deep.encode())
    elif where in ("index", "notes"):
        index = copy.deepcopy(base.index)
        members = dict(base.members)
        index["files"] = {n: __import__("envcap.core.canonical", fromlist=["digest"]).digest(d)
                          for n, d in members.items()}
        text = json.dumps(index).replace('"format"', f'"deep": {deep}, "format"') if where == "index" \
            else json.dumps({**index, "notes": "__DEEP__"}).replace('"__DEEP__"', deep)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("envcap-bundle.json", text)
            for n, d in members.items():
                zf.writestr(n, d)
        data = buf.getvalue()
    else:
        record = copy.deepcopy(base.record)
        record[where] = "__DEEP__" if where != "git" else {**record["git"], "extra": "__DEEP__"}
        raw = json.dumps(record).replace('"__DEEP__"', deep).encode()
        data = forge(base, raw_run_json=raw)
    with Case(CASE):
        _held(data)


@budget(0.5, 10)
@given(count=st.sampled_from([0, 1, 50, 1000]), size=st.sampled_from([0, 1, 4096]),
       name=st.sampled_from(["x", "code/untracked/../../x", "/x", "a" * 300, "d/", "envcap-bundle.json"]))
def test_member_counts_sizes_and_names(base: BaseBundle, count: int, size: int, name: str) -> None:
    extra = {f"{name}{i}" if count > 1 else name: b"\0" * size for i in range(count)}
    index = copy.deepcopy(base.index)
    with Case(CASE):
        _held(forge(base, base.record, extra=extra, index=None if count % 2 == 0 else index))


# -- item 5: an encrypted member ------------------------------------------------------------


def test_an_encrypted_member_is_a_clear_error(base: BaseBundle) -> None:
    data = bytearray(forge(base))
    # Set the "encrypted" flag bit of every member, as a zip tool with a password does.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        pos = data.find(sig)
        while pos != -1:
            flag_at = pos + (6 if sig == b"PK\x03\x04" else 8)
            data[flag_at] |= 0x1
            pos = data.find(sig, pos + 4)
    with Case(CASE):
        result, home, _ = _import(bytes(data))
        clean_refusal(result)
        assert "encrypted" in result.output
        assert store_state(home) == ([], [])


# -- item 6: all or nothing ------------------------------------------------------------------


def test_several_bundles_are_imported_all_or_nothing(base: BaseBundle, tmp_path: Path) -> None:
    home = tmp_path / "home"
    good = tmp_path / "new.zip"
    shutil.copy(base.path, good)
    # The same run, finished, with another record: it conflicts with the first bundle.
    record = copy.deepcopy(base.record)
    record["labels"] = {"forged": "yes"}
    conflicting = tmp_path / "conflicting.zip"
    conflicting.write_bytes(forge(base, record))
    with Case(CASE):
        result = cli("import", str(good), str(conflicting), home=home)
        clean_refusal(result)
        assert store_state(home)[0] == [], "the first bundle's run was written"
    # Into a store that holds the run already: the conflicting one alone is refused.
    assert cli("import", str(good), home=home).code == 0
    with Case(CASE):
        clean_refusal(cli("import", str(conflicting), home=home))
        assert cli("verify", home=home).code == 0


def test_a_bundle_refused_at_write_time_leaves_no_object(base: BaseBundle, tmp_path: Path) -> None:
    """The manifest's observations do not make the run's snapshot: found only when the
    snapshot would be written. Nothing may be written before it is found."""
    record = copy.deepcopy(base.record)
    record["snapshot"] = "sha256:" + "5" * 64
    home = tmp_path / "home"
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(forge(base, record))
    with Case(CASE):
        result = cli("import", str(bundle), home=home)
        clean_refusal(result)
        assert store_state(home) == ([], [])
        verify = cli("verify", home=home)
        assert verify.code in (0, 2) and not verify.traceback  # 2: no store was created at all


# -- item 9: notes from a bundle are redacted --------------------------------------------------


def test_a_bundles_notes_are_redacted(base: BaseBundle, tmp_path: Path) -> None:
    index = copy.deepcopy(base.index)
    index["notes"] = [{"time": "2026-01-01T00:00:00Z", "text": "deployed with --token s3cr3tcanary99 --env prod"},
                      {"time": "2026-01-01T00:00:01Z", "text": "db password=anothercanary77"}]
    index["files"] = {n: __import__("envcap.core.canonical", fromlist=["digest"]).digest(d)
                      for n, d in base.members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("envcap-bundle.json", json.dumps(index))
        for n, d in base.members.items():
            zf.writestr(n, d)
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(buf.getvalue())
    home = tmp_path / "home"
    with Case(CASE):
        assert cli("import", str(bundle), home=home).code == 0
        everything = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        assert b"s3cr3tcanary99" not in everything and b"anothercanary77" not in everything


def test_escaping_paths_are_all_named_by_the_helper() -> None:
    for path in ESCAPING_PATHS:
        with pytest.raises(UnsafePathError):
            safe_relpath(path)
    for path in ("a", "a/b", "a b/c.txt", ".hidden", "a..b", "...", "ſ/x"):
        assert safe_relpath(path) == path


def test_rebuild_print_of_a_stored_record_that_escapes_writes_nothing_outside(tmp_path: Path) -> None:
    """The issue's own reproduction, where the record is used: `envcap rebuild RUN --print`
    of a run whose stored record names `../../x` and `/abs/x` as untracked files."""
    import subprocess
    import sys

    from hostile_support import make_repo, run_id_of

    from envcap.store import images
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    home = tmp_path / "deep" / "er" / "home"
    repo = make_repo(tmp_path / "proj", {"train.py": "print('hi')\n"})
    env = {**os.environ, "ENVCAP_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "envcap", "run", "--", sys.executable, "train.py"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = run_id_of(proc)
    for path in ("../../../../planted-rel", str(tmp_path / "planted-abs")):
        with Store(home) as store:
            record = runs_store.load(store, run_id)
            oid = store.put_object(b"owned\n")
            git = dict(record.git)
            git["untracked"] = [{"path": path, "size": 6, "sha256": oid, "object": oid, "kind": "file"}]
            runs_store.put_record(store, record.evolve(git=git), objects=[(oid, 6, "run-file")])
            images.record(store, images.ImageRecord(record.env_id or "", "127.0.0.1:5000/x/y", "t", FAKE, "complete",
                                                    "docker", "debian"))
        before = files_under(tmp_path)
        with Case(CASE):
            out = subprocess.run([sys.executable, "-m", "envcap", "rebuild", run_id, "--print"], cwd=repo, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
            assert "untracked" in out.stderr
            new = {p for p in files_under(tmp_path) - before if "/rebuilds" not in f"/{p}"}
            assert not new, sorted(new)
            assert not list(tmp_path.rglob("planted-*"))


FAKE = "sha256:" + "7" * 64
