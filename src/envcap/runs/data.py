"""Data fingerprints: which bytes a run read, in one hash per file or directory.

A file's fingerprint is the sha256 of its bytes. A directory's is a Merkle hash: the
sha256 of the listing ``<sha256 of file>  <relative path>\\n`` of every file under it,
sorted by path (the format of ``sha256sum``), so two directories with the same files at
the same relative paths have the same fingerprint wherever they lie, and a change in
any file, or a file added, removed or renamed, changes it. Symbolic links are followed;
empty directories and special files do not count.

Hashing a large dataset again for every run would cost as much as the first time, so
file digests are cached for this host (by the store: never in a shared database, see
:mod:`envcap.store.hashcache`) keyed by path, size, mtime, ctime and inode: an
unchanged file is not read again. Like git's index, a file modified within the last
second is not cached ("racily clean": a second change within the clock's resolution
could leave every key the same).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..core.canonical import ID_PREFIX
from ..core.errors import UsageError

if TYPE_CHECKING:
    from ..store.base import StoreBackend

RACY_NS = 1_000_000_000
_CHUNK = 1 << 20
_PARALLEL_FILES = 64


@dataclass(frozen=True, slots=True)
class Fingerprint:
    kind: str  # "file" or "dir"
    fingerprint: str
    files: int
    bytes: int
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "fingerprint": self.fingerprint, "files": self.files, "bytes": self.bytes}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


# What stat says of a file, as the cache keys it: (size, mtime_ns, ctime_ns, inode). A
# plain tuple: a directory of 10,000 files makes 10,000 of them on every fingerprint.
Stat = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class HashCache:
    """File digests by (path, size, mtime, ctime, inode), kept for this host by the store
    (:meth:`envcap.store.base.IndexStore.hash_entries`: the embedded store's own index,
    or a local file beside a shared store: never another machine's entries).

    Without a store (``store=None``) it caches for the life of the object only.
    """

    def __init__(self, store: StoreBackend | None = None) -> None:
        self._entries = store.hash_entries() if store is not None else None
        self._known: dict[str, tuple[Stat, str]] = {}
        self._loaded: set[str] = set()
        self._new: dict[str, tuple[Stat, str]] = {}
        self._trees: dict[str, tuple[str, Fingerprint]] = {}
        self._new_trees: dict[str, tuple[str, Fingerprint]] = {}

    def preload(self, root: str) -> None:
        """Read every cached entry under ``root`` in one query."""
        if self._entries is None or root in self._loaded:
            return
        self._loaded.add(root)
        self._known.update({path: (st, dig) for path, st, dig in self._entries.under(root)})

    def get(self, path: str, st: Stat) -> str | None:
        hit = self._new.get(path) or self._known.get(path)
        if hit is None and self._entries is not None and not any(path.startswith(r) for r in self._loaded):
            hit = self._entries.file(path)
        if hit is not None and hit[0] == st:
            return hit[1]
        return None

    def put(self, path: str, st: Stat, dig: str, hashed_at_ns: int) -> None:
        if st[1] >= hashed_at_ns - RACY_NS or st[2] >= hashed_at_ns - RACY_NS:
            return
        self._new[path] = (st, dig)

    def tree_get(self, root: str, signature: str) -> Fingerprint | None:
        """A directory's fingerprint, if its files' paths and stat keys are as they were."""
        hit = self._new_trees.get(root) or self._trees.get(root)
        if hit is None and self._entries is not None:
            row = self._entries.tree(root)
            if row is not None:
                hit = (row[0], Fingerprint(row[1], row[2], row[3], row[4], row[5]))
                self._trees[root] = hit
        if hit is not None and hit[0] == signature:
            return hit[1]
        return None

    def tree_put(self, root: str, signature: str, fp: Fingerprint) -> None:
        self._new_trees[root] = (signature, fp)

    def flush(self) -> None:
        """Write the entries learnt since the last flush, in one transaction."""
        if not self._new and not self._new_trees:
            return
        entries, self._new = self._new, {}
        trees, self._new_trees = self._new_trees, {}
        self._known.update(entries)
        self._trees.update(trees)
        if self._entries is None:
            return
        self._entries.save(entries, {root: (sig, fp.kind, fp.fingerprint, fp.files, fp.bytes, fp.skipped)
                                     for root, (sig, fp) in trees.items()})


def hash_file(path: str) -> str:
    """``sha256:<hex>`` of a file's bytes (OpenSSL's SHA-256: fast on large files)."""
    with open(path, "rb") as fh:
        if hasattr(hashlib, "file_digest"):
            h = hashlib.file_digest(fh, "sha256")
        else:  # pragma: no cover - Python 3.10
            h = hashlib.sha256()
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    return ID_PREFIX + h.hexdigest()


def hash_bytes(data: bytes) -> str:
    return ID_PREFIX + hashlib.sha256(data).hexdigest()


def fingerprint(path: str | os.PathLike[str], cache: HashCache | None = None) -> Fingerprint:
    """The fingerprint of a file or a directory tree."""
    cache = cache if cache is not None else HashCache()
    target = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such file or directory") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from exc
    started = time.time_ns()
    if not os.path.isdir(target):
        cache.preload(target)
        dig = _digest_of(target, stat_key(st), cache, started)
        cache.flush()
        return Fingerprint("file", dig, 1, st.st_size)
    entries, skipped = _walk(target)
    entries.sort(key=lambda e: e[1])
    # Every file's path and stat key in one hash: when it is what it was last time, so is
    # every file, and the fingerprint is the one computed then.
    signature = hash_bytes(marshal.dumps([(rel, key) for _, rel, key in entries]))
    known = cache.tree_get(target, signature)
    if known is not None:
        return known
    cache.preload(target)
    digests = _digests(entries, cache, started)
    listing = "".join(_line(digests[abs_path], rel) for abs_path, rel, _ in entries)
    fp = Fingerprint("dir", hash_bytes(listing.encode("utf-8", "surrogateescape")), len(entries),
                     sum(key[0] for _, _, key in entries), skipped)
    if all(key[1] < started - RACY_NS and key[2] < started - RACY_NS for _, _, key in entries):
        cache.tree_put(target, signature, fp)
    cache.flush()
    return fp


def listing(path: str | os.PathLike[str], cache: HashCache | None = None) -> bytes:
    """The ``sha256sum``-style listing of a directory: its sha256 is the fingerprint.

    Kept with a run (an object whose id is the fingerprint itself), it lets an audit name
    the files that changed. File digests come from the cache, so an unchanged tree is
    walked, not read.
    """
    cache = cache if cache is not None else HashCache()
    target = os.path.abspath(os.fspath(path))
    entries, _ = _walk(target)
    entries.sort(key=lambda e: e[1])
    cache.preload(target)
    digests = _digests(entries, cache, time.time_ns())
    cache.flush()
    return "".join(_line(digests[a], rel) for a, rel, _ in entries).encode("utf-8", "surrogateescape")


def parse_listing(data: bytes) -> dict[str, str]:
    """A listing's files: relative path → hex sha256."""
    out = {}
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        escaped = raw.startswith("\\")
        line = raw[1:] if escaped else raw
        hexd, _, rel = line.partition("  ")
        out[_unescape(rel) if escaped else rel] = hexd
    return out


def _unescape(rel: str) -> str:
    out, i = [], 0
    while i < len(rel):
        if rel[i] == "\\" and i + 1 < len(rel):
            out.append("\n" if rel[i + 1] == "n" else rel[i + 1])
            i += 2
        else:
            out.append(rel[i])
            i += 1
    return "".join(out)


def changed_files(before: bytes, after: bytes) -> dict[str, list[str]]:
    """The files that differ between two listings: ``changed``, ``added``, ``removed``."""
    a, b = parse_listing(before), parse_listing(after)
    return {"changed": sorted(p for p in a.keys() & b.keys() if a[p] != b[p]),
            "added": sorted(b.keys() - a.keys()), "removed": sorted(a.keys() - b.keys())}


def _line(dig: str, rel: str) -> str:
    hexd = dig[len(ID_PREFIX):]
    if "\\" in rel or "\n" in rel:  # sha256sum's escaping
        return "\\" + hexd + "  " + rel.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
    return hexd + "  " + rel + "\n"


def _walk(root: str) -> tuple[list[tuple[str, str, Stat]], int]:
    """Every regular file under ``root`` as (absolute path, relative path, stat)."""
    entries: list[tuple[str, str, Stat]] = []
    skipped = 0
    seen: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        directory, rel = stack.pop()
        try:
            dst = os.stat(directory)
        except OSError:
            skipped += 1
            continue
        if (dst.st_dev, dst.st_ino) in seen:
            continue  # a symbolic link back up the tree
        seen.add((dst.st_dev, dst.st_ino))
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        if entry.is_dir():
                            stack.append((entry.path, rel + entry.name + "/"))
                        elif entry.is_file():
                            st = entry.stat()
                            entries.append((entry.path, rel + entry.name,
                                            (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
                        else:
                            skipped += 1
                    except OSError:
                        skipped += 1
        except OSError as exc:
            raise UsageError(f"{directory}: cannot list it: {exc.strerror}") from exc
    return entries, skipped


def _digests(entries: list[tuple[str, str, Stat]], cache: HashCache, started: int) -> dict[str, str]:
    out: dict[str, str] = {}
    misses: list[tuple[str, Stat]] = []
    get = cache.get
    for abs_path, _, st in entries:
        hit = get(abs_path, st)
        if hit is None:
            misses.append((abs_path, st))
        else:
            out[abs_path] = hit
    if len(misses) >= _PARALLEL_FILES:
        # Reading and hashing release the GIL: a few threads keep a fast disk busy.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = list(pool.map(_hash_checked, [m[0] for m in misses]))
    else:
        results = [_hash_checked(m[0]) for m in misses]
    for (abs_path, st), dig in zip(misses, results):
        out[abs_path] = dig
        cache.put(abs_path, st, dig, started)
    return out


def _digest_of(path: str, st: Stat, cache: HashCache, started: int) -> str:
    hit = cache.get(path, st)
    if hit is not None:
        return hit
    dig = _hash_checked(path)
    cache.put(path, st, dig, started)
    return dig


def _hash_checked(path: str) -> str:
    try:
        return hash_file(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from exc


# -- dataset entries ---------------------------------------------------------------------


def dataset_entry(path: str, fp: Fingerprint, *, name: str | None = None, split: str | None = None,
                  version: str | None = None, lineage: Iterable[Any] = (), source: str = "cli") -> dict[str, Any]:
    """A dataset as recorded in a run."""
    return {
        "name": name or os.path.basename(os.path.normpath(path)) or path,
        "path": path,
        "abspath": os.path.abspath(path),
        **fp.to_dict(),
        "split": split,
        "version": version,
        "lineage": [lineage_step(s) for s in lineage],
        "source": source,
    }


def lineage_step(step: Any) -> dict[str, Any]:
    """A step of a dataset's lineage: ``{"kind", "name", "params", "seed"}``.

    ``kind`` is what the step does (``split``, ``preprocess``, ``filter``, ``sample``,
    ``augment``, or a word of the user's), ``name`` which step it is, ``params`` its
    parameters and ``seed`` the seed it used, if any.
    """
    from .params import normalize

    if not isinstance(step, dict):
        raise UsageError(f"a lineage step is a mapping with kind and name, not {type(step).__name__}")
    kind, name = step.get("kind"), step.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        raise UsageError(f"lineage step {step!r}: kind and name must be text")
    seed = step.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UsageError(f"lineage step {name}: seed must be an integer")
    extra = sorted(set(step) - {"kind", "name", "params", "seed"})
    if extra:
        raise UsageError(f"lineage step {name}: unknown field(s) {', '.join(extra)}")
    return {"kind": kind, "name": name, "params": normalize(step.get("params") or {}, f"lineage.{name}"),
            "seed": seed}


def iter_changed(before: Iterable[dict[str, Any]], cache: HashCache) -> Iterator[tuple[dict[str, Any], str]]:
    """Datasets whose fingerprint is no longer what was recorded, with a reason."""
    for entry in before:
        path = entry.get("abspath") or entry.get("path")
        if not path or not os.path.exists(path):
            yield entry, "missing"
            continue
        now = fingerprint(path, cache)
        if now.fingerprint != entry.get("fingerprint"):
            yield entry, f"now {now.fingerprint}"
