"""Dependencies that no index serves, carried with a run: what they are and where they are kept.

A run's environment can hold Python packages that no index will ever serve: a wheel
installed from a local file, a package installed from a git repository, local
(``pip install git+file:///srv/git/pkg``) or remote (``git+https://host/lab/pkg@SHA``,
``git+ssh://...``: a private remote can be gone tomorrow), and a checkout installed
editable that is not the run's own repository (``pip install -e ../lib``). ``envcap
export`` (and ``envcap push``) puts them in the run's bundle: the wheel as it is, checked
against the sha256 pip recorded; a repository or a checkout as a git bundle of the
recorded commit alone, made from the repository (or the checkout, or the remote) when
it still holds that commit. ``envcap import`` keeps each as an object of the store with a
row of the ``carried`` table naming it (``wheel``, the wheel's sha256; ``git``,
``URL@COMMIT``; ``editable``, ``file://PATH@COMMIT``), and a build of the env takes it
from there when the machine does not have it.

:func:`needs` lists what an environment needs carried, from its manifest alone.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core import proc
from .base import StoreBackend as Store

# What a bundle carries unless told otherwise (envcap export --carry-limit, ENVCAP_CARRY_LIMIT).
DEFAULT_LIMIT = 100 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_WHEEL = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
_REF = "refs/heads/envcap-carried"
# A remote's URL as pip records it for a VCS install (credentials already stripped).
_REMOTE = re.compile(r"^(?:https?|ssh|git)://[^\s]+$")
REMOTE_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Dependency:
    """A package of the environment that no index serves."""

    name: str
    version: str
    kind: str  # "wheel", "git" or "editable"
    key: str  # the wheel's sha256, or URL@COMMIT
    path: str  # the wheel file, the repository (a path, or a remote's URL), or the checkout, as recorded
    commit: str | None = None
    dirty: bool | None = None  # an editable checkout's state when recorded

    @property
    def remote(self) -> bool:
        """A git repository reached by a URL (https, ssh, git...), not a path on the run's machine."""
        return self.kind == "git" and not self.path.startswith("/")

    @property
    def what(self) -> str:
        if self.kind == "wheel":
            return f"python package {self.name} {self.version} (the local wheel {self.path})"
        if self.kind == "editable":
            return (f"python package {self.name} {self.version} (installed editable from the checkout {self.path}"
                    + (f" at {self.commit})" if self.commit else ", not a git checkout)"))
        url = self.path if self.remote else f"file://{self.path}"
        return f"python package {self.name} {self.version} (git+{url} at {self.commit})"

    @property
    def member(self) -> str:
        """Its name in a bundle."""
        if self.kind == "wheel":
            return f"deps/wheels/{posixpath.basename(self.path)}"
        if self.kind == "editable":
            return f"deps/editable/{self.name}-{self.commit}.bundle"
        return f"deps/git/{self.name}-{self.commit}.bundle"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "key": self.key, "path": self.path,
                "commit": self.commit, "member": self.member}


def needs(manifest: Any, own: Iterable[str] = ()) -> list[Dependency]:
    """The packages of ``manifest``'s Python environment that must be carried: local wheels
    (with the sha256 pip recorded), installs from a git repository (local or remote), and
    editable installs from a checkout outside the run's own repository (``own``: its root;
    the rebuild installs the run's own package from the run's code)."""
    python = manifest.sections.get("python")
    if not isinstance(python, Mapping):
        return []
    roots = [posixpath.normpath(r) for r in own if isinstance(r, str) and r.startswith("/")]
    out = []
    for package in python.get("packages") or ():
        if not isinstance(package, Mapping):
            continue
        origin = package.get("origin")
        if not isinstance(origin, Mapping):
            continue
        dep = _dependency(str(package.get("name")), str(package.get("version")), origin)
        if dep is not None and not (dep.kind == "editable" and inside(dep.path, roots)):
            out.append(dep)
    return sorted(out, key=lambda d: (d.name, d.kind))


def _dependency(name: str, version: str, origin: Mapping[str, Any]) -> Dependency | None:
    url = origin.get("url")
    if not isinstance(url, str):
        return None
    sha, commit, kind = origin.get("sha256"), origin.get("commit"), origin.get("kind")
    if kind == "vcs" and origin.get("vcs") == "git" and isinstance(commit, str) and _COMMIT.match(commit):
        if url.startswith("file:///"):
            return Dependency(name, version, "git", f"{url}@{commit}", posixpath.normpath(url[len("file://"):]),
                              commit)
        if _REMOTE.match(url):
            return Dependency(name, version, "git", f"{url}@{commit}", url, commit)
        return None
    if not url.startswith("file:///"):
        return None
    path = posixpath.normpath(url[len("file://"):])
    if kind == "file" and isinstance(sha, str) and _SHA256.match(sha) and _WHEEL.match(posixpath.basename(path)):
        return Dependency(name, version, "wheel", sha, path)
    if kind == "editable":
        git = origin.get("git")
        head = git.get("commit") if isinstance(git, Mapping) else None
        dirty = git.get("dirty") if isinstance(git, Mapping) else None
        head = head if isinstance(head, str) and _COMMIT.match(head) else None
        return Dependency(name, version, "editable", f"{url}@{head}", path, head,
                          dirty if isinstance(dirty, bool) else None)
    return None


def inside(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies under one."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# -- on this machine --------------------------------------------------------------------------


def wheel_here(dep: Dependency) -> bytes | None:
    """The wheel's bytes when the recorded file is still here and is the one recorded."""
    try:
        with open(dep.path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == dep.key else None


def git_here(dep: Dependency) -> bytes | None:
    """A git bundle of the recorded commit alone (its history with it), made from the
    repository (or the checkout) when it is still here and holds the commit, or from the
    remote when it answers and serves the commit; its HEAD is that commit."""
    if dep.commit is None:
        return None
    if dep.remote:
        return _from_remote(dep)
    if not os.path.isdir(dep.path):
        return None
    ok = proc.git(["cat-file", "-e", f"{dep.commit}^{{commit}}"], dep.path)
    if ok is None or ok.returncode != 0:
        return None
    return _bundle(dep.path, dep.commit)


def _from_remote(dep: Dependency) -> bytes | None:
    """The remote cloned (bare, no prompt for a password, a bounded wait), then bundled at
    the recorded commit; None when it cannot be reached or no longer serves that commit."""
    assert dep.commit is not None
    with tempfile.TemporaryDirectory(prefix="envcap-remote-") as tmp:
        clone = os.path.join(tmp, "remote.git")
        env = {**os.environ, "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15", "GIT_ASKPASS": "true"}
        out = proc.git_bounded(["-c", "credential.interactive=never", "-c", "http.lowSpeedLimit=1000",
                                "-c", "http.lowSpeedTime=30", "clone", "--quiet", "--bare", "--no-tags", "--",
                                dep.path, clone], tmp, env=env, timeout=REMOTE_TIMEOUT)
        if out is None or out.returncode != 0:
            return None
        ok = proc.git_bounded(["cat-file", "-e", f"{dep.commit}^{{commit}}"], clone)
        if ok is None or ok.returncode != 0:
            return None
        return _bundle(clone, dep.commit)


def _bundle(repository: str, commit: str) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="envcap-carry-") as tmp:
        clone = os.path.join(tmp, "repo.git")
        steps = [(["clone", "--quiet", "--bare", "--no-tags", "--", repository, clone], tmp),
                 (["update-ref", _REF, commit], clone),
                 (["symbolic-ref", "HEAD", _REF], clone),
                 (["-c", "pack.threads=1", "bundle", "create", "--quiet", os.path.join(tmp, "out.bundle"), "HEAD", _REF], clone)]
        for args, where in steps:
            out = proc.git_bounded(args, where)
            if out is None or out.returncode != 0:
                return None
        with open(os.path.join(tmp, "out.bundle"), "rb") as fh:
            return fh.read()


def here(dep: Dependency) -> bytes | None:
    return wheel_here(dep) if dep.kind == "wheel" else git_here(dep)


def why_not(dep: Dependency) -> str:
    """Why ``dep`` cannot be had here, in words, for a refusal."""
    if dep.kind == "wheel":
        return "the wheel is not at that path (or is not the recorded file)"
    if dep.kind == "editable" and dep.commit is None:
        return "the checkout was not a git checkout when it was recorded, so no commit says what it held"
    if dep.kind == "editable":
        return "the checkout is not on this machine, or no longer holds that commit"
    if dep.remote:
        return "the remote cannot be reached (or no longer serves that commit)"
    return "its repository is not on this machine (or no longer holds that commit)"


# -- in the store -----------------------------------------------------------------------------


def _ready(store: Store) -> None:
    from ._ddl import SQLITE_TABLES

    store.ensure_schema(SQLITE_TABLES["carried"])


def run_facts(store: Store, env_id: str) -> tuple[list[str], dict[tuple[str, str], str]]:
    """What the runs of ``env_id`` in ``store`` say of its editable installs: their own
    repositories (an editable install from one is that run's own package, which its rebuild
    installs from the run's code), and the uncommitted changes recorded of the other
    checkouts, by (path, commit): the object holding the diff."""
    from ..core.errors import EnvcapError
    from . import runs as runs_store

    roots = []
    diffs: dict[tuple[str, str], str] = {}
    for run_id in runs_store.ids_where(store, "env_id = ?", (env_id,)):
        try:
            git = runs_store.load(store, run_id).git
        except EnvcapError:  # an unreadable record names nothing
            continue
        root = git.get("root")
        if isinstance(root, str) and root.startswith("/"):
            roots.append(root)
        for item in git.get("editables") or ():
            oid = (item.get("diff") or {}).get("object") if isinstance(item, Mapping) else None
            if isinstance(oid, str) and isinstance(item.get("path"), str) and isinstance(item.get("commit"), str):
                diffs.setdefault((posixpath.normpath(item["path"]), item["commit"]), oid)
    return sorted(set(roots)), diffs


def statements(dep: Dependency, oid: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The row that names a carried dependency's object (written with the run it came with)."""
    return [("INSERT OR REPLACE INTO carried VALUES (?, ?, ?, ?)", (dep.kind, dep.key, oid, dep.name))]


def ensure_tables(store: Store) -> None:
    _ready(store)


def find(store: Store, dep: Dependency) -> bytes | None:
    """The carried bytes of ``dep`` in ``store``, checked again (a wheel against its sha256)."""
    _ready(store)
    row = store.db.execute("SELECT object FROM carried WHERE kind = ? AND key = ?", (dep.kind, dep.key)).fetchone()
    if row is None:
        return None
    data = store.get_object(row[0])
    if dep.kind == "wheel" and hashlib.sha256(data).hexdigest() != dep.key:
        return None
    if dep.kind != "wheel" and not bundle_holds(data, dep):
        return None
    return data


def bundle_holds(data: bytes, dep: Dependency) -> bool:
    """Whether ``data`` is a git bundle whose HEAD is ``dep``'s recorded commit."""
    if dep.commit is None or not data.startswith(b"# v"):
        return False
    with tempfile.TemporaryDirectory(prefix="envcap-carried-") as tmp:
        path = os.path.join(tmp, "check.bundle")
        with open(path, "wb") as fh:
            fh.write(data)
        out = proc.git(["bundle", "list-heads", path, "HEAD"], tmp)
    if out is None or out.returncode != 0:
        return False
    return any(line.split()[:1] == [dep.commit.encode()] for line in out.stdout.splitlines())


def obtain(store: Store | None, dep: Dependency, *, remote_ok: bool = True) -> bytes | None:
    """``dep`` from this machine, else from what a bundle carried into ``store``; a remote
    repository is asked only when nothing carried it here already, and not at all unless
    ``remote_ok`` (``lock --offline``)."""
    if dep.remote:
        data = find(store, dep) if store is not None else None
        return data if data is not None or not remote_ok else here(dep)
    data = here(dep)
    if data is None and store is not None:
        data = find(store, dep)
    return data


def limit_from(env: Mapping[str, str] | None = None) -> int:
    """The carry limit: ``ENVCAP_CARRY_LIMIT`` (bytes, or with a K, M or G suffix), else 100M."""
    text = (os.environ if env is None else env).get("ENVCAP_CARRY_LIMIT")
    return parse_size(text) if text else DEFAULT_LIMIT


def parse_size(text: str) -> int:
    from ..core.errors import UsageError

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"carry limit {text!r}: give a size such as 200M or 2G")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n} bytes"
