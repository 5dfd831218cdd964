"""The run's code, rebuilt in a fresh directory: never the user's checkout.

The commit comes from the first of these that has it: ``--repo PATH``; the repository
around the current directory; the repository the run was recorded in (``git.root``, if
it is on this machine); the recorded remote. A local repository is cloned by git's
local path (hard links, every object, reachable or not), so a commit that no branch
points at any more is still found as long as git has not pruned it. Then
:func:`envcap.runs.git.restore` checks the commit out, applies the recorded diff and
writes the untracked files back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import proc
from ..core.errors import StoreError, UsageError
from ..core.proc import Result
from .errors import RebuildError
from ..store.base import StoreBackend

_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Workspace:
    path: str
    source: str  # the repository the commit came from
    commit: str | None
    diff_applied: bool
    untracked: int  # untracked files written back
    missing: tuple[str, ...]  # content the record did not keep

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "source": self.source, "commit": self.commit, "diff_applied": self.diff_applied,
                "untracked_restored": self.untracked, "missing": list(self.missing)}


def _git(args: list[str], cwd: str) -> Result:
    """:func:`envcap.core.proc.git` as text, where git's absence stops the rebuild."""
    out = proc.git(args, cwd, text=True, timeout=_TIMEOUT)
    if out is None:
        raise RebuildError("git is not installed: it is needed to rebuild the run's code")
    return out


def _toplevel(path: str) -> str | None:
    if not os.path.isdir(path):
        return None
    out = _git(["rev-parse", "--show-toplevel"], path)
    return out.stdout.strip() if out.returncode == 0 else None


def has_commit(repo: str, commit: str) -> bool:
    return _git(["cat-file", "-e", f"{commit}^{{commit}}"], repo).returncode == 0


def candidates(record_git: Mapping[str, Any], repo: str | None, cwd: str) -> list[tuple[str, str]]:
    """Where to look for the commit, in order, as (what, path or URL)."""
    if repo:
        return [("--repo", repo)]
    out: list[tuple[str, str]] = []
    here = _toplevel(cwd)
    if here:
        out.append(("the current directory's repository", here))
    root = record_git.get("root")
    if isinstance(root, str) and os.path.isdir(root):
        top = _toplevel(root)
        if top and top not in [p for _, p in out]:
            out.append(("the run's repository", top))
    remotes = record_git.get("remotes") or {}
    for name, url in sorted(remotes.items(), key=lambda kv: (kv[0] != "origin", kv[0])):
        if isinstance(url, str) and url and "[REDACTED]" not in url:
            out.append((f"remote {name}", url))
    return out


def locate(record_git: Mapping[str, Any], *, repo: str | None, cwd: str, scratch: str) -> str:
    """A local repository holding the run's commit (a remote is cloned into ``scratch``)."""
    commit = record_git.get("commit")
    tried: list[str] = []
    for what, where in candidates(record_git, repo, cwd):
        local = os.path.isdir(where)
        if local:
            top = _toplevel(where)
            if top is None:
                tried.append(f"{what} {where} (not a git repository)")
                continue
            if commit is None or has_commit(top, commit):
                return top
            tried.append(f"{what} {top} (no such commit)")
            continue
        if where.startswith("-"):
            tried.append(f"{what} {where} (not a URL)")
            continue
        clone = tempfile.mkdtemp(prefix="remote-", dir=scratch)
        out = _git(["clone", "--quiet", "--no-checkout", "--", where, clone], scratch)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["failed"])[-1]
            tried.append(f"{what} {where} (cannot clone: {last})")
        elif commit is None or has_commit(clone, commit):
            return clone
        else:
            tried.append(f"{what} {where} (cloned; no such commit)")
        shutil.rmtree(clone, ignore_errors=True)
    if not tried:
        tried.append("nowhere: the run's repository is not on this machine and it recorded no remote")
    raise RebuildError(f"the run's commit {commit} is not in any repository envcap can reach; looked in "
                       + "; ".join(tried)
                       + ". It may have been rebased away or never pushed: fetch it into a checkout and pass "
                         "--repo PATH")


def prepare(record_git: Mapping[str, Any], store: StoreBackend, dest: str, *, repo: str | None = None,
            cwd: str | None = None) -> Workspace:
    """The run's tree in ``dest`` (which must not exist yet)."""
    from ..runs.git import restore

    if not record_git.get("in_repository"):
        raise RebuildError(f"the run was not in a git repository ({record_git.get('reason') or 'no git state'}): "
                           "there is no recorded code to rebuild it from")
    commit = record_git.get("commit")
    if commit is None:
        raise RebuildError("the run's repository had no commit yet: there is no recorded code to rebuild it from")
    scratch = os.path.dirname(dest)
    source = locate(record_git, repo=repo, cwd=cwd or os.getcwd(), scratch=scratch)
    git_state = dict(record_git)
    try:
        missing = restore(git_state, store, source, dest)
    except StoreError as exc:
        text = str(exc)
        if text.startswith("git apply"):
            raise RebuildError(f"the run's uncommitted diff does not apply to commit {commit} "
                               f"({text.split(': ', 1)[-1]}): the recorded diff object may be damaged "
                               "(envcap audit RUN checks it)") from exc
        raise RebuildError(f"the run's code could not be rebuilt from {source}: {text}") from exc
    except (OSError, UsageError) as exc:
        raise RebuildError(f"the run's code could not be rebuilt in {dest}: {exc}") from exc
    finally:
        if source.startswith(os.path.join(scratch, "remote-")):
            shutil.rmtree(source, ignore_errors=True)
    _on_branch(record_git, dest)
    diff = record_git.get("diff") or {}
    untracked = [u for u in record_git.get("untracked") or () if u.get("object")]
    return Workspace(path=dest, source=source, commit=commit, diff_applied=bool(diff.get("object")),
                     untracked=len(untracked), missing=tuple(missing))


def _on_branch(record_git: Mapping[str, Any], dest: str) -> None:
    """Put the checkout on the run's branch (made at the commit), as the run's was: the git
    state of an editable install of the run's own package names its branch."""
    branch = record_git.get("branch")
    if not isinstance(branch, str) or not branch or branch.startswith("-"):
        return
    if _git(["check-ref-format", "--branch", branch], dest).returncode != 0:
        return
    _git(["checkout", "--quiet", "-B", branch], dest)


def compare_code(original: Mapping[str, Any], rebuilt: Mapping[str, Any]) -> list[str]:
    """How the rebuilt tree's git state differs from the run's (empty: the same code)."""
    out: list[str] = []
    if original.get("commit") != rebuilt.get("commit"):
        out.append(f"commit {rebuilt.get('commit')}, not {original.get('commit')}")
    before, after = original.get("diff") or {}, rebuilt.get("diff") or {}
    if before.get("sha256") != after.get("sha256"):
        out.append("the uncommitted diff differs from the recorded one")
    a = {u["path"]: u.get("sha256") for u in original.get("untracked") or ()}
    b = {u["path"]: u.get("sha256") for u in rebuilt.get("untracked") or ()}
    for path in sorted(set(a) | set(b)):
        if path not in b:
            out.append(f"untracked file {path} is missing")
        elif path not in a:
            out.append(f"untracked file {path} was not in the run")
        elif a[path] != b[path]:
            out.append(f"untracked file {path} differs")
    return out
