"""The code a run ran: commit, branch, tags, remote, and every uncommitted byte.

What is recorded, for the repository holding the working directory:

- ``commit``, ``branch`` (None when detached), ``tags`` pointing at the commit, the
  ``remote`` URL (``origin``, else the first remote) with credentials stripped;
- ``dirty``: whether tracked files differ from the commit, or untracked files exist;
- ``diff``: ``git diff HEAD --binary`` (staged and unstaged changes to tracked files),
  stored as an object so the tree can be rebuilt byte for byte;
- ``untracked``: every untracked, non-ignored file with its size and sha256, and its
  content stored as an object up to a cap per file and in all;
- ``submodules``: each submodule's path and checked-out commit;
- ``editables``: for each checkout the environment installed editable that is not this
  repository (``pip install -e ../lib``) and had uncommitted changes, its path, commit and
  ``git diff HEAD --binary`` (an object, as ``diff``), so that a build can put the
  checkout back as it was (see :func:`editable_diffs`).

Content that looks like it holds a secret (a private key, a token in a known format) is
not stored: its hash and size are, with the reason. Outside a repository (or without
git) the record says so.

git runs through :func:`envcap.core.proc.git`, which keeps bytes as bytes: a diff of a Latin-1 file
must be stored as it is, not as decoded text.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..core import proc
from ..core.errors import StoreError, UsageError
from ..core.files import safe_join, write_inside
from ..core.redact import Redactor
from .data import HashCache, hash_bytes, stat_key
from ..store.base import StoreBackend

DEFAULT_FILE_CAP = 1 << 20  # untracked content kept per file
DEFAULT_TOTAL_CAP = 32 << 20  # and for all untracked files of one run
DIFF_CAP = 256 << 20
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def caps_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> tuple[int, int]:
    """Caps on kept untracked content: ``ENVCAP_UNTRACKED_CAP`` (per file, bytes) and
    ``ENVCAP_UNTRACKED_TOTAL_CAP`` (per run)."""
    env = os.environ if env is None else env
    out = []
    for name, default in (("ENVCAP_UNTRACKED_CAP", DEFAULT_FILE_CAP), ("ENVCAP_UNTRACKED_TOTAL_CAP", DEFAULT_TOTAL_CAP)):
        raw = env.get(name)
        try:
            out.append(int(raw) if raw else default)
        except ValueError as exc:
            raise UsageError(f"{name}={raw!r}: give a number of bytes") from exc
    return out[0], out[1]


@dataclass
class Blob:
    """Content read at capture time, to be stored as an object."""

    data: bytes
    kind: str


@dataclass
class Capture:
    """The git state of a run, and the bytes its record will refer to."""

    state: dict[str, Any]
    root: str | None
    blobs: dict[str, Blob] = field(default_factory=dict)

    def withhold(self, path: str, reason: str) -> None:
        """Keep the content of ``path`` (a repository path) out of the store: its untracked
        copy, and the diff if the diff changes it."""
        for item in self.state.get("untracked") or ():
            if item["path"] == path and item.get("object"):
                item.update(object=None, withheld=reason)
        diff = self.state.get("diff")
        if diff and diff.get("object"):
            data = self.blobs[diff["object"]].data
            header = f"diff --git a/{path} b/{path}\n".encode("utf-8", "surrogateescape")
            if data.startswith(header) or b"\n" + header in data:
                diff.update(object=None, withheld=f"{reason} (the diff changes {path})")
        kept = {i["object"] for i in self.state.get("untracked") or () if i.get("object")}
        if diff and diff.get("object"):
            kept.add(diff["object"])
        self.blobs = {oid: blob for oid, blob in self.blobs.items() if oid in kept}

    def store_blobs(self, store: StoreBackend) -> list[tuple[str, int, str]]:
        """Write the captured content into the store; (id, size, kind) of each object."""
        out = []
        for oid, blob in self.blobs.items():
            stored = store.put_object(blob.data)
            if stored != oid:  # pragma: no cover - two hash implementations disagreeing
                raise StoreError(f"object {oid} was stored as {stored}")
            out.append((oid, len(blob.data), blob.kind))
        return out


def strip_credentials(url: str, redactor: Redactor) -> str:
    """A remote URL without user names, passwords or tokens (``git@`` is kept)."""
    if "://" in url:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            userinfo, _, host = parts.netloc.rpartition("@")
            keep = userinfo in ("git", "hg") and ":" not in userinfo
            url = urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if keep else host))
    return redactor.text(url)


def capture(cwd: str, *, redactor: Redactor, cache: HashCache | None = None,
            file_cap: int = DEFAULT_FILE_CAP, total_cap: int = DEFAULT_TOTAL_CAP) -> Capture:
    """Read the git state of the repository holding ``cwd`` (nothing is written)."""
    top = proc.git(["rev-parse", "--show-toplevel"], cwd)
    if top is None:
        return Capture(_outside("git is not installed", cwd), None)
    if top.returncode != 0:
        return Capture(_outside("not in a git repository", cwd), None)
    root = top.stdout.decode("utf-8", "surrogateescape").strip()
    status = proc.git(["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"], root, check=True)
    assert status is not None
    commit, branch, tracked_dirty, untracked_paths = _parse_status(status.stdout)
    cap = Capture({}, root)
    state: dict[str, Any] = {
        "in_repository": True,
        "root": root,
        "cwd": os.path.relpath(os.path.realpath(cwd), os.path.realpath(root)),
        "commit": commit,
        "branch": branch,
        "tags": _tags(root) if commit else [],
        "remote": None,
        "remotes": {},
        "dirty": tracked_dirty or bool(untracked_paths),
        "diff": None,
        "untracked": [],
        "submodules": _submodules(root) if os.path.exists(os.path.join(root, ".gitmodules")) else [],
    }
    state["remotes"] = {name: strip_credentials(url, redactor) for name, url in _remotes(root).items()}
    if state["remotes"]:
        state["remote"] = state["remotes"].get("origin") or next(iter(state["remotes"].values()))
    if tracked_dirty:
        state["diff"] = _diff(root, commit, redactor, cap)
    state["untracked"] = _untracked(root, untracked_paths, redactor, cache, file_cap, total_cap, cap)
    cap.state = state
    return cap


def _outside(reason: str, cwd: str) -> dict[str, Any]:
    return {"in_repository": False, "reason": reason, "root": None, "cwd": os.path.abspath(cwd), "commit": None,
            "branch": None, "tags": [], "remote": None, "remotes": {}, "dirty": None, "diff": None,
            "untracked": [], "submodules": []}


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, list[str]]:
    commit = branch = None
    dirty = False
    untracked: list[str] = []
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        line = fields[i].decode("utf-8", "surrogateescape")
        i += 1
        if line.startswith("# branch.oid "):
            value = line[len("# branch.oid "):]
            commit = None if value == "(initial)" else value
        elif line.startswith("# branch.head "):
            value = line[len("# branch.head "):]
            branch = None if value == "(detached)" else value
        elif line.startswith("? "):
            untracked.append(line[2:])
        elif line[:2] in ("1 ", "u "):
            dirty = True
        elif line.startswith("2 "):
            dirty = True
            i += 1  # a rename's original path follows as its own field
    return commit, branch, dirty, sorted(untracked)


def _tags(root: str) -> list[str]:
    out = proc.git(["tag", "--points-at", "HEAD"], root)
    if out is None or out.returncode != 0:
        return []
    return sorted(t for t in out.stdout.decode("utf-8", "replace").splitlines() if t)


def _remotes(root: str) -> dict[str, str]:
    out = proc.git(["config", "--get-regexp", r"^remote\..*\.url$"], root)
    if out is None or out.returncode != 0:
        return {}
    remotes = {}
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        key, _, url = line.partition(" ")
        remotes[key[len("remote."):-len(".url")]] = url.strip()
    return dict(sorted(remotes.items()))


def _submodules(root: str) -> list[dict[str, Any]]:
    out = proc.git(["submodule", "status", "--recursive"], root)
    if out is None or out.returncode != 0:
        return []
    states = {" ": "ok", "+": "modified", "-": "uninitialized", "U": "conflict"}
    subs = []
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        if len(line) < 42:
            continue
        parts = line[1:].split(" ")
        subs.append({"path": parts[1] if len(parts) > 1 else "", "commit": parts[0],
                     "state": states.get(line[0], line[0])})
    return subs


def _diff(root: str, commit: str | None, redactor: Redactor, cap: Capture) -> dict[str, Any]:
    # Flags that keep the user's git configuration from changing the patch: no colour,
    # no external diff or textconv, standard a/ b/ prefixes, paths from the top.
    out = proc.git(["-c", "core.quotepath=false", "diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                "--no-relative", "--src-prefix=a/", "--dst-prefix=b/", commit or EMPTY_TREE], root, check=True)
    assert out is not None
    data = out.stdout
    entry: dict[str, Any] = {"size": len(data), "sha256": hash_bytes(data), "object": None}
    reason = _withhold_reason(data, redactor, DIFF_CAP, "diff")
    if reason:
        entry["withheld"] = reason
    else:
        entry["object"] = entry["sha256"]
        cap.blobs[entry["sha256"]] = Blob(data, "run-diff")
    return entry


def _untracked(root: str, paths: list[str], redactor: Redactor, cache: HashCache | None,
               file_cap: int, total_cap: int, cap: Capture) -> list[dict[str, Any]]:
    items = []
    kept = 0
    for rel in paths:
        full = os.path.join(root, rel)
        try:
            st = os.lstat(full)
        except OSError:
            continue  # gone since git listed it
        item: dict[str, Any] = {"path": rel, "size": st.st_size, "sha256": None, "object": None}
        data: bytes | None = None
        if os.path.islink(full):
            link = os.fsencode(os.readlink(full))
            item.update(kind="symlink", size=len(link))
            data = link
        else:
            item["kind"] = "file"
            if st.st_size <= file_cap and kept + st.st_size <= total_cap:
                try:
                    data = Path(full).read_bytes()
                except OSError as exc:
                    item["withheld"] = f"cannot read: {exc.strerror}"
        if data is not None:
            item["sha256"] = hash_bytes(data)
            reason = (_withhold_reason(data, redactor, None, "file") or _secret_file_name(rel)
                      or _script_secret(rel, data, redactor))
            if reason:
                item["withheld"] = reason
            else:
                item["object"] = item["sha256"]
                cap.blobs[item["sha256"]] = Blob(data, "run-file")
                kept += len(data)
        elif "withheld" not in item:
            item["withheld"] = f"larger than the cap ({file_cap} bytes a file, {total_cap} in all)"
            item["sha256"] = _hash_large(full, st, cache)
        items.append(item)
    return items


def _hash_large(path: str, st: os.stat_result, cache: HashCache | None) -> str | None:
    import time

    from .data import hash_file

    s = stat_key(st)
    if cache is not None:
        hit = cache.get(path, s)
        if hit:
            return hit
    try:
        dig = hash_file(path)
    except OSError:
        return None
    if cache is not None:
        cache.put(path, s, dig, time.time_ns())
    return dig


_SECRET_FILES = (".env", ".netrc", ".pgpass", ".npmrc", ".pypirc", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519",
                 "credentials", "credentials.json", ".git-credentials")
_SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".keystore", ".jks")


def _secret_file_name(rel: str) -> str | None:
    name = os.path.basename(rel).lower()
    if name in _SECRET_FILES or name.startswith(".env.") or name.endswith(_SECRET_SUFFIXES):
        return "withheld: the file name says it may hold a secret"
    return None


_SCRIPT_SUFFIXES = (".sh", ".bash", ".zsh", ".ksh", ".fish", ".command", ".bat", ".cmd", ".ps1", ".mk")
_SCRIPT_NAMES = ("makefile", "gnumakefile", "dockerfile", "containerfile", "justfile", "procfile", ".envrc")


def _script_secret(rel: str, data: bytes, redactor: Redactor) -> str | None:
    """A script (by its name or its ``#!`` line) whose commands pass a secret as an
    argument: ``deploy --token X`` is kept out as ``TOKEN=X`` is."""
    name = os.path.basename(rel).lower()
    if not (name.endswith(_SCRIPT_SUFFIXES) or name in _SCRIPT_NAMES or data.startswith(b"#!")):
        return None
    if redactor.commands_hold_secret(data.decode("latin-1")):
        return "withheld: the script passes what looks like a secret on a command line"
    return None


def _withhold_reason(data: bytes, redactor: Redactor, limit: int | None, what: str) -> str | None:
    if limit is not None and len(data) > limit:
        return f"larger than the cap ({limit} bytes)"
    text = data.decode("latin-1")
    if redactor.may_contain_secret(text) and redactor.text(text) != text:
        return f"withheld: the {what} looks like it holds a secret"
    return None


def editable_diffs(manifest: Any, root: str | None, redactor: Redactor, cap: Capture) -> list[dict[str, Any]]:
    """The uncommitted changes of the checkouts ``manifest``'s environment installed
    editable, other than the run's own repository (``root``), that were recorded dirty and
    are still at their recorded commit; each diff's bytes go into ``cap``'s blobs."""
    from ..store.carried import needs

    out = []
    for dep in needs(manifest, own=[root] if root else []):
        if dep.kind != "editable" or dep.commit is None or not dep.dirty or not os.path.isdir(dep.path):
            continue
        head = proc.git(["rev-parse", "HEAD"], dep.path)
        if head is None or head.returncode != 0 or head.stdout.decode("ascii", "replace").strip() != dep.commit:
            continue  # moved on since the snapshot read it: its changes are not the run's
        try:
            entry = _diff(dep.path, dep.commit, redactor, cap)
        except StoreError:
            continue
        if entry["size"] == 0:
            # Dirty by untracked files alone: no tracked change to keep (and no empty patch to apply).
            cap.blobs.pop(entry["sha256"], None)
            entry["object"] = None
        out.append({"name": dep.name, "path": dep.path, "commit": dep.commit, "diff": entry})
    return out


# -- rebuilding ----------------------------------------------------------------------------


def file_at(root: str, commit: str | None, diff: bytes | None, path: str) -> bytes | None:
    """A tracked file's bytes at ``commit`` with ``diff`` applied (None: not there).

    The diff is applied to a temporary index, never to the working tree or the
    repository's own index.
    """
    with tempfile.TemporaryDirectory(prefix="envcap-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        proc.git(["read-tree", commit or EMPTY_TREE], root, check=True, env=env)
        if diff:
            patch = os.path.join(tmp, "diff.patch")
            Path(patch).write_bytes(diff)
            proc.git(["apply", "--cached", "--binary", patch], root, check=True, env=env)
        out = proc.git(["show", f":{path}"], root, env=env)
        if out is None or out.returncode != 0:
            return None
        return out.stdout


def restore(record_git: dict[str, Any], store: StoreBackend, repository: str, dest: str) -> list[str]:
    """Rebuild a run's working tree in ``dest``: a clone of ``repository`` at the recorded
    commit, the recorded diff applied, and the untracked files written back.

    Returns what could not be restored (withheld or capped content).
    """
    if not record_git.get("in_repository"):
        raise UsageError("the run was not in a git repository: there is no tree to rebuild")
    commit = record_git.get("commit")
    proc.git(["clone", "--quiet", "--no-checkout", repository, dest], os.getcwd(), check=True)
    if commit:
        proc.git(["checkout", "--quiet", "--detach", commit], dest, check=True)
    missing: list[str] = []
    diff = record_git.get("diff") or {}
    if diff.get("object"):
        patch = os.path.join(dest, ".git", "envcap-diff.patch")
        Path(patch).write_bytes(store.get_object(diff["object"]))
        proc.git(["apply", "--binary", "--whitespace=nowarn", patch], dest, check=True)
        os.unlink(patch)
    elif diff:
        missing.append(f"the uncommitted diff ({diff.get('withheld')})")
    for item in record_git.get("untracked") or ():
        # The path comes from a record, perhaps a stranger's: relative, inside dest, no link on the way.
        safe_join(dest, item.get("path"), what="untracked file")
        if not item.get("object"):
            missing.append(f"{item['path']} ({item.get('withheld')})")
            continue
        data = store.get_object(item["object"])
        write_inside(dest, item["path"], data, what="untracked file", symlink=item.get("kind") == "symlink")
    return missing
