"""The code of a run: real repositories, every uncommitted byte restorable from the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import git
from runs_helpers import envcap, make_repo, run_id_of, show

from envcap.core.redact import Redactor
from envcap.store import runs as runs_store
from envcap.runs.git import capture, file_at, restore, strip_credentials
from envcap.store.embedded import Store

LATIN1 = "caf\xe9 cr\xe8me\n".encode("latin-1")
BINARY = bytes(range(256)) * 8


def dirty_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {
        "train.py": "print('v1')\n",
        "notes.txt": LATIN1,
        "weights.bin": BINARY,
        "gone.txt": "to be deleted\n",
        "old_name.txt": "renamed\n",
        ".gitignore": "*.log\n",
    })
    git(repo, "tag", "v1.0")
    git(repo, "checkout", "-q", "-b", "experiment")
    # Unstaged, staged, binary, non-UTF-8, deleted and renamed changes; untracked files.
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "notes.txt").write_bytes(LATIN1 + "\xfcber\n".encode("latin-1"))
    (repo / "weights.bin").write_bytes(BINARY[::-1])
    git(repo, "add", "weights.bin")
    (repo / "gone.txt").unlink()
    git(repo, "mv", "old_name.txt", "new_name.txt")
    (repo / "new_module.py").write_text("X = 1\n")
    (repo / "sub" / "dir").mkdir(parents=True)
    (repo / "sub" / "dir" / "cfg.yaml").write_text("lr: 0.1\n")
    (repo / "blob.dat").write_bytes(os.urandom(3000))
    os.symlink("train.py", repo / "link.py")
    (repo / "debug.log").write_text("ignored\n")
    return repo


def tree_files(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".git/") or rel == ".git" or path.is_dir() and not path.is_symlink():
            continue
        out[rel] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return out


def test_dirty_tree_and_untracked_files_are_restored_byte_for_byte(tmp_path: Path, isolated: Path) -> None:
    repo = dirty_repo(tmp_path)
    proc = envcap("run", "--", sys.executable, "-c", "pass", cwd=repo, check=True)
    view = show(run_id_of(proc))
    g = view["git"]
    assert g["branch"] == "experiment" and g["tags"] == ["v1.0"] and g["dirty"] is True
    assert g["diff"]["object"] and g["diff"]["size"] > 0
    untracked = {u["path"]: u for u in g["untracked"]}
    assert set(untracked) == {"new_module.py", "sub/dir/cfg.yaml", "blob.dat", "link.py"}
    assert untracked["blob.dat"]["size"] == 3000 and untracked["link.py"]["kind"] == "symlink"
    with Store() as store:
        record = runs_store.load(store, view["id"])
        dest = tmp_path / "restored"
        assert restore(dict(record.git), store, str(repo), str(dest)) == []
    expected = tree_files(repo)
    del expected["debug.log"]  # ignored: not part of the code
    assert tree_files(dest) == expected


def test_untracked_content_over_the_cap_is_hashed_not_kept(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "small.txt").write_text("tiny\n")
    (repo / "big.bin").write_bytes(b"x" * 5000)
    (repo / ".env").write_text("PASSWORD=hunter2\n")
    proc = envcap("run", "--", "true", cwd=repo, env={"ENVCAP_UNTRACKED_CAP": "1000"}, check=True)
    untracked = {u["path"]: u for u in show(run_id_of(proc))["git"]["untracked"]}
    assert untracked["small.txt"]["object"] == untracked["small.txt"]["sha256"]
    big = untracked["big.bin"]
    assert big["object"] is None and "cap" in big["withheld"] and big["size"] == 5000
    import hashlib

    assert big["sha256"] == "sha256:" + hashlib.sha256(b"x" * 5000).hexdigest()
    assert untracked[".env"]["object"] is None and "secret" in untracked[".env"]["withheld"]


def test_remote_tags_and_submodules(tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.py": "Y = 2\n"})
    lib_commit = git(lib, "rev-parse", "HEAD")
    repo = make_repo(tmp_path / "repo")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    git(repo, "commit", "-qm", "add lib")
    git(repo, "tag", "-a", "release-1", "-m", "r1")
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t-pass@git.example.com/team/repo.git")
    git(repo, "remote", "add", "mirror", "git@example.org:team/repo.git")
    state = capture(str(repo), redactor=Redactor()).state
    assert state["remote"] == "https://git.example.com/team/repo.git"
    assert state["remotes"]["mirror"] == "git@example.org:team/repo.git"
    assert state["tags"] == ["release-1"]
    assert state["submodules"] == [{"path": "vendor/lib", "commit": lib_commit, "state": "ok"}]
    assert state["dirty"] is False and state["diff"] is None


def test_credentials_are_stripped_from_remote_urls() -> None:
    r = Redactor()
    assert strip_credentials("https://user:pw@host/x.git", r) == "https://host/x.git"
    assert strip_credentials("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/a/b", r) == \
        "https://github.com/a/b"
    assert strip_credentials("ssh://git@host/x.git", r) == "ssh://git@host/x.git"
    assert strip_credentials("https://host/x.git?token=abc", r) == "https://host/x.git?token=[REDACTED]"


def test_a_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text("A = 1\n")
    git(repo, "add", "a.py")
    cap = capture(str(repo), redactor=Redactor())
    assert cap.state["commit"] is None and cap.state["dirty"] is True
    diff = next(iter(cap.blobs.values())).data
    assert file_at(str(repo), None, diff, "a.py") == b"A = 1\n"
