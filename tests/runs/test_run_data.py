"""Data fingerprints: a Merkle hash over paths and contents, cached by stat."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from envcap.core.errors import UsageError
from envcap.runs import data
from envcap.runs.data import HashCache, fingerprint
from envcap.store.embedded import Store


def tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.csv").write_text("1,2\n")
    (root / "a" / "x.bin").write_bytes(bytes(range(256)))
    (root / "a" / "b" / "y.txt").write_text("why\n")
    return root


def test_a_file_fingerprint_is_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n")
    fp = fingerprint(path)
    assert fp.kind == "file" and fp.files == 1 and fp.bytes == 4
    assert fp.fingerprint == "sha256:" + hashlib.sha256(b"a,b\n").hexdigest()


def test_a_directory_fingerprint_is_the_hash_of_its_sha256sum_listing(tmp_path: Path) -> None:
    root = tree(tmp_path / "d")
    listing = "".join(
        f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n"
        for rel in sorted(["top.csv", "a/x.bin", "a/b/y.txt"])
    )
    fp = fingerprint(root)
    assert fp.fingerprint == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert (fp.kind, fp.files, fp.bytes) == ("dir", 3, 4 + 256 + 4)


def test_the_fingerprint_follows_content_and_names_not_location(tmp_path: Path) -> None:
    root = tree(tmp_path / "d")
    first = fingerprint(root).fingerprint
    copy = shutil.copytree(root, tmp_path / "elsewhere")
    assert fingerprint(copy).fingerprint == first
    (copy / "a" / "b" / "y.txt").write_text("whY\n")
    assert fingerprint(copy).fingerprint != first
    (copy / "a" / "b" / "y.txt").write_text("why\n")
    assert fingerprint(copy).fingerprint == first
    (copy / "top.csv").rename(copy / "top2.csv")
    assert fingerprint(copy).fingerprint != first
    (copy / "top2.csv").rename(copy / "top.csv")
    (copy / "a" / "empty").mkdir()
    assert fingerprint(copy).fingerprint == first  # empty directories hold no data
    os.symlink(copy, copy / "a" / "loop")  # a link back up the tree is not followed forever
    assert fingerprint(copy).files == 3


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             isolated: Path) -> None:
    root = tree(tmp_path / "d")
    monkeypatch.setattr(data, "RACY_NS", 0)
    reads: list[str] = []
    real = data.hash_file
    monkeypatch.setattr(data, "hash_file", lambda p: reads.append(p) or real(p))
    with Store() as store:
        first = fingerprint(root, HashCache(store))
    assert len(reads) == 3
    with Store() as store:  # a new process would see the same: the cache is in the store
        again = fingerprint(root, HashCache(store))
        assert again == first and len(reads) == 3
        (root / "top.csv").write_text("3,4\n")
        changed = fingerprint(root, HashCache(store))
    assert changed != first and reads[-1].endswith("top.csv") and len(reads) == 4


def test_a_file_modified_this_very_second_is_not_cached(tmp_path: Path, isolated: Path) -> None:
    path = tmp_path / "fresh.csv"
    path.write_text("1\n")
    with Store() as store:
        cache = HashCache(store)
        fingerprint(path, cache)
        assert store.db.execute("SELECT count(*) FROM file_hashes").fetchone()[0] == 0


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        fingerprint(tmp_path / "nope")
    if os.geteuid() != 0:
        secret = tmp_path / "locked.csv"
        secret.write_text("x")
        secret.chmod(0)
        with pytest.raises(UsageError, match="cannot read"):
            fingerprint(secret)


def test_lineage_steps_are_checked() -> None:
    step = data.lineage_step({"kind": "filter", "name": "drop-nulls", "params": {"cols": ["a"]}})
    assert step == {"kind": "filter", "name": "drop-nulls", "params": {"cols": ["a"]}, "seed": None}
    with pytest.raises(UsageError, match="unknown field"):
        data.lineage_step({"kind": "sample", "name": "s", "fraction": 0.1})
    with pytest.raises(UsageError, match="seed"):
        data.lineage_step({"kind": "sample", "name": "s", "seed": "3"})
