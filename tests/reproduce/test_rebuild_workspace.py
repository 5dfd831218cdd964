"""The run's code rebuilt in a fresh workspace from a real git repository, byte for byte,
without touching the user's checkout; a commit that is gone and a diff that does not
apply are clear errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import git

from envcap.core.redact import default_redactor
from envcap.reproduce.errors import RebuildError
from envcap.reproduce.workspace import compare_code, prepare
from envcap.runs.git import capture
from envcap.store.embedded import Store


def record_code(repo: Path, store: Store) -> dict[str, Any]:
    """The git state a run records, with its content stored, as `envcap run` does."""
    cap = capture(str(repo), redactor=default_redactor())
    cap.store_blobs(store)
    return cap.state


def snapshot_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        if path.is_symlink():
            out[str(rel)] = b"->" + os.readlink(path).encode()
        elif path.is_file():
            out[str(rel)] = path.read_bytes()
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("EPOCHS = 3\nprint('train')\n")
    (root / "pkg" / "model.bin").write_bytes(bytes(range(256)) * 4)
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    return root


def dirty(repo: Path) -> None:
    (repo / "train.py").write_text("EPOCHS = 5\nprint('train')\n")  # unstaged
    (repo / "pkg" / "model.bin").write_bytes(bytes(reversed(range(256))) * 4)  # binary
    git(repo, "add", "pkg/model.bin")  # staged
    (repo / "helpers.py").write_text("def load():\n    return 1\n")  # untracked
    (repo / "link").symlink_to("helpers.py")  # an untracked symbolic link
    (repo / "run.log").write_text("ignored\n")


def test_the_tree_is_rebuilt_byte_for_byte_and_the_checkout_is_untouched(repo: Path, tmp_path: Path) -> None:
    dirty(repo)
    with Store(tmp_path / "store") as store:
        state = record_code(repo, store)
        expected = {k: v for k, v in snapshot_tree(repo).items() if k != "run.log"}
        # The user goes on working: a new commit, more edits.
        (repo / "train.py").write_text("EPOCHS = 9\n")
        git(repo, "commit", "-qam", "two")
        (repo / "new.txt").write_text("later\n")
        before = (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"), snapshot_tree(repo))
        ws = prepare(state, store, str(tmp_path / "ws"), cwd=str(tmp_path))
    assert snapshot_tree(Path(ws.path)) == expected
    assert ws.commit == state["commit"] and ws.diff_applied and ws.untracked == 2 and ws.missing == ()
    assert (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"), snapshot_tree(repo)) == before
    again = capture(ws.path, redactor=default_redactor()).state
    assert compare_code(state, again) == []


def test_a_commit_no_branch_points_at_is_still_found_until_git_prunes_it(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("EPOCHS = 4\n")
    git(repo, "commit", "-qam", "two")
    with Store(tmp_path / "store") as store:
        state = record_code(repo, store)
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        ws = prepare(state, store, str(tmp_path / "ws"), cwd=str(tmp_path))
        assert (Path(ws.path) / "train.py").read_text() == "EPOCHS = 4\n"
        git(repo, "reflog", "expire", "--expire=now", "--all")
        git(repo, "gc", "-q", "--prune=now")
        with pytest.raises(RebuildError) as err:
            prepare(state, store, str(tmp_path / "ws2"), cwd=str(tmp_path))
    text = str(err.value)
    assert state["commit"] in text and "no such commit" in text and "--repo PATH" in text
    assert not (tmp_path / "ws2").exists() or not any((tmp_path / "ws2").iterdir())


def test_a_diff_that_does_not_apply_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(repo), str(other)], check=True)
    (other / "train.py").write_text("something else entirely\n")
    git(other, "commit", "-qam", "elsewhere")
    (other / "train.py").write_text("something else, edited\n")
    with Store(tmp_path / "store") as store:
        state = record_code(other, store)  # a diff against a train.py the run's commit never had
        state["commit"] = git(repo, "rev-parse", "HEAD")
        with pytest.raises(RebuildError, match=r"uncommitted diff does not apply to commit [0-9a-f]{40}.*train\.py"):
            prepare(state, store, str(tmp_path / "ws"), repo=str(repo))


def test_the_commit_comes_from_the_recorded_remote_when_the_repository_is_elsewhere(repo: Path,
                                                                                     tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        state = record_code(repo, store)
        state.update(root="/nonexistent/proj", remotes={"origin": f"file://{repo}"})
        ws = prepare(state, store, str(tmp_path / "ws"), cwd=str(tmp_path))
    assert (Path(ws.path) / "train.py").read_text() == "EPOCHS = 3\nprint('train')\n"
    assert not list(tmp_path.glob("remote-*")), "the remote's clone is removed"


def test_repo_option_and_runs_outside_a_repository(repo: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        state = record_code(repo, store)
        empty = tmp_path / "empty"
        empty.mkdir()
        git(empty, "init", "-q")
        with pytest.raises(RebuildError, match=r"--repo .*empty \(no such commit\)"):
            prepare(state, store, str(tmp_path / "ws"), repo=str(empty))
        with pytest.raises(RebuildError, match="not in a git repository"):
            prepare({"in_repository": False, "reason": "not in a git repository"}, store, str(tmp_path / "ws"))
