"""The SHA-256 of every file a package index serves for a release, fetched once.

Hashes come from the index's simple API (PEP 691 JSON, else the PEP 503 HTML page with
``#sha256=`` fragments), which every index pip can install from serves: PyPI, a
company's proxy, the PyTorch indexes that host local versions such as ``2.5.0+cu130``.
One page per project gives the files of every release; projects are fetched
concurrently. What was found is kept in a small SQLite cache under ``ENVCAP_HOME``, so
locking a manifest again asks the index nothing. A release's files can still grow
after it is cached (a late wheel): ``refresh=True`` asks again.
"""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..core import sqlite as _sqlite, config
from .errors import LockError

PYPI = "https://pypi.org/simple"
_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS release_files (
    idx TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    files TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (idx, name, version)
);
"""

Key = tuple[str, str, str]  # (index URL, normalized name, version)


@dataclass(frozen=True, slots=True, order=True)
class FileHash:
    filename: str
    sha256: str


# A fetcher returns (HTTP status, content type, body) for a URL; tests swap in their own.
Fetcher = Callable[[str], tuple[int, str, bytes]]


def cache_path() -> Path:
    return config.home() / "cache" / "index-hashes.sqlite"


class IndexHashes:
    """Release file hashes by (index, name, version), from the cache or the index."""

    def __init__(self, cache: Path | None = None, *, fetch: Fetcher | None = None, workers: int = 16,
                 offline: bool = False, refresh: bool = False, timeout: float = 30.0) -> None:
        self.cache = cache if cache is not None else cache_path()
        self._fetch_fn = fetch
        self.timeout = timeout
        self.workers = workers
        self.offline = offline
        self.refresh = refresh
        self.requests = 0  # pages asked of an index by this object
        self.errors: dict[tuple[str, str], str] = {}  # (index, name) -> why its page could not be read
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    # -- cache -----------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            self._db = _sqlite.connect(self.cache, _SCHEMA, what="the index hash cache")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def cached(self, keys: Iterable[Key]) -> dict[Key, tuple[FileHash, ...]]:
        wanted = set(keys)
        found: dict[Key, tuple[FileHash, ...]] = {}
        if not wanted or self.refresh:
            return found
        by_index: dict[str, set[str]] = {}
        for idx, name, _ in wanted:
            by_index.setdefault(idx, set()).add(name)
        for idx, names in by_index.items():
            ordered = sorted(names)
            for start in range(0, len(ordered), 500):
                chunk = ordered[start:start + 500]
                rows = self.db.execute(
                    f"SELECT name, version, files FROM release_files WHERE idx = ? AND name IN "
                    f"({','.join('?' * len(chunk))})", (idx, *chunk)).fetchall()
                for name, version, files in rows:
                    key = (idx, name, version)
                    if key in wanted:
                        found[key] = tuple(FileHash(f, h) for f, h in json.loads(files))
        return found

    def _store(self, results: dict[Key, tuple[FileHash, ...]]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = [(idx, name, version, json.dumps([[f.filename, f.sha256] for f in files]), stamp)
                for (idx, name, version), files in sorted(results.items()) if files]
        if not rows:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO release_files VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    # -- lookups ---------------------------------------------------------------------

    def lookup(self, keys: Iterable[Key]) -> dict[Key, tuple[FileHash, ...]]:
        """The files of each release; a release the index does not have maps to ``()``."""
        wanted = sorted(set(keys))
        found = self.cached(wanted)
        missing = [k for k in wanted if k not in found]
        if not missing:
            return found
        if self.offline:
            shown = ", ".join(f"{n}=={v}" for _, n, v in missing[:5])
            raise LockError(f"{len(missing)} release(s) are not in the hash cache ({shown}...) and "
                            "--offline forbids asking the index; run once without --offline")
        projects: dict[tuple[str, str], list[str]] = {}
        for idx, name, version in missing:
            projects.setdefault((idx, name), []).append(version)
        fetched: dict[Key, tuple[FileHash, ...]] = {}
        self._fetch  # noqa: B018 - made once here, not raced for by the threads below
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(projects)))) as pool:
            pages = pool.map(lambda item: (item, self._project_files(*item)), sorted(projects))
            for (idx, name), files in pages:
                for version in projects[(idx, name)]:
                    fetched[(idx, name, version)] = _release(files, name, version) if files is not None else ()
        self._store(fetched)
        found.update(fetched)
        return found

    @property
    def _fetch(self) -> Fetcher:
        # Made on first use: loading the system's trust store costs more than a whole
        # lock from the cache.
        if self._fetch_fn is None:
            self._fetch_fn = _UrlFetcher(self.timeout)
        return self._fetch_fn

    def _project_files(self, index: str, name: str) -> list[FileHash] | None:
        """The files on a project's page; None (and the reason in ``errors``) when the
        index cannot be reached, so that the next index can still be asked."""
        url = f"{index.rstrip('/')}/{name}/"
        with self._lock:
            self.requests += 1
        try:
            status, ctype, body = _with_retries(self._fetch, url)
        except LockError as exc:
            self.errors[(index, name)] = str(exc)
            return None
        if status == 404:
            return []
        if status != 200:
            raise LockError(f"{url} answered HTTP {status}; check the index URL (--index-url)")
        return parse_project_page(body, ctype, url)


def _with_retries(fetch: Fetcher, url: str, attempts: int = 3) -> tuple[int, str, bytes]:
    delay = 0.5
    for attempt in range(attempts):
        try:
            status, ctype, body = fetch(url)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if attempt == attempts - 1:
                reason = getattr(exc, "reason", exc)
                raise LockError(f"cannot reach {url}: {reason}; check the network, or lock with --offline "
                                "from hashes cached earlier") from exc
        else:
            if status < 500 or attempt == attempts - 1:
                return status, ctype, body
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


class _UrlFetcher:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # The system's trust store (and SSL_CERT_FILE), as pip and curl use here.
        self.context = ssl.create_default_context()

    def __call__(self, url: str) -> tuple[int, str, bytes]:
        request = urllib.request.Request(url, headers={"Accept": _ACCEPT, "User-Agent": "envcap-lock"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", "") if exc.headers else "", b""


def parse_project_page(body: bytes, content_type: str, url: str) -> list[FileHash]:
    """Every (filename, sha256) on a simple-API project page, JSON or HTML."""
    files: list[FileHash] = []
    if "json" in content_type:
        try:
            data = json.loads(body)
            entries = [(f["filename"], (f.get("hashes") or {}).get("sha256")) for f in data["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(f"{url} is not a PEP 691 project page: {exc}") from exc
    else:
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        entries = parser.entries
    for filename, digest in entries:
        if isinstance(filename, str) and isinstance(digest, str) and _SHA256.match(digest):
            files.append(FileHash(filename, digest))
    return files


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[str, str | None]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            href, _, fragment = self._href.partition("#")
            digest = fragment[len("sha256="):] if fragment.startswith("sha256=") else None
            filename = "".join(self._text).strip() or href.rsplit("/", 1)[-1]
            self.entries.append((filename, digest))
            self._href = None


def _release(files: list[FileHash], name: str, version: str) -> tuple[FileHash, ...]:
    """The files of one release among a project's files, by the version in their names."""
    target = Version(version)
    out = set()
    for f in files:
        try:
            if f.filename.endswith(".whl"):
                fname, fversion, _, _ = parse_wheel_filename(f.filename)
            else:
                fname, fversion = parse_sdist_filename(f.filename)
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        if canonicalize_name(fname) == name and fversion == target:
            out.add(f)
    return tuple(sorted(out))


# Local version labels of the builds that live on their own index, not on PyPI.
_LOCAL_INDEXES = (
    (re.compile(r"^(cu\d+|cpu|rocm\d+(?:\.\d+)*|xpu)$"), "https://download.pytorch.org/whl/{label}"),
)


def indexes_for(version: str, index_url: str, extra: Iterable[str]) -> list[str]:
    """Where to look for a release, in order: a local label's own index first."""
    order = [index_url, *extra]
    local = Version(version).local if "+" in version else None
    if local:
        # The indexes the user named, then the one known to host this label, then the main one.
        order = [*extra]
        order += [template.format(label=local) for pattern, template in _LOCAL_INDEXES if pattern.match(local)]
        order.append(index_url)
    return list(dict.fromkeys(u.rstrip("/") for u in order))
