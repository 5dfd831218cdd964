"""Whether the pinned Debian/Ubuntu versions can be had at all, asked before any build step
(``envcap build`` and ``envcap rebuild`` refuse; ``envcap lock`` warns).

The apt step installs each ``name=version`` pin from the base image's mirror, and adds the
dated archive (``apt-snapshot.sources``) by itself when the mirror lacks one. A version
that neither serves would stop the build at that step, after the base was pulled and the
context sent. This module reads the package indexes (``dists/SUITE/main/binary-ARCH/
Packages``) of the mirror and of the archive once, keeps them in a cache under envcap's
home (the mirror's for six hours, a dated archive's for good), and names every pin that
neither holds, with what would help: a site archive that holds it (``ENVCAP_APT_ARCHIVE``),
or leaving it to the base image (``--pin-os``).

It refuses only on knowledge: a package the mirror's index does not know by name (from a
third-party repository the base image has configured) is left to the apt step, and so is
everything when the mirror's index cannot be read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core import config
from ..ecosystems.system.build import native_dpkg_arch
from ..pins.errors import LockError

# The distributions' own mirrors, with the suites an official base image lists.
_MIRRORS = {
    "debian": (("http://deb.debian.org/debian", ("{c}", "{c}-updates")),
               ("http://deb.debian.org/debian-security", ("{c}-security",))),
    "ubuntu": (("http://archive.ubuntu.com/ubuntu", ("{c}", "{c}-updates", "{c}-security")),),
}
_FRESH = 6 * 3600  # how long a mirror's index is taken from the cache
_TIMEOUT = 20.0  # per connection and read; a host that does not answer is asked once, not per suite

Versions = dict[str, set[str]]
Fetch = Callable[[str], bytes | None]


class Unreachable(Exception):
    """A fetch found no server to ask (no route, refused, timed out): the host's other
    indexes are not asked either, so that a site without the network waits once."""


def cache_dir() -> Path:
    return config.home() / "cache" / "apt-index"


def check(lock: Any, *, mirror: str | None = None, fetch: Fetch | None = None,
          progress: Callable[[str], None] = lambda _: None) -> None:
    """Refuse (a :class:`LockError` naming each ``name=version``) the dpkg pins of ``lock``
    that neither the mirror nor the dated archive serves; say nothing when they all are,
    or when the mirror cannot be asked."""
    if lock.system_manager != "dpkg" or not lock.system_pins or not lock.os_codename:
        return
    arch = native_dpkg_arch(lock.system_pins) or "amd64"
    fetch = fetch or _fetch
    sources = _mirror_sources(lock.os_id, lock.os_codename, mirror)
    if not sources:
        return
    served: Versions = {}
    read = []
    unreachable: set[str] = set()
    for base, suite in sources:
        index = _index(base, suite, arch, fetch, fresh=_FRESH, unreachable=unreachable)
        if index is not None:
            read.append(f"{suite}")
            for name, versions in index.items():
                served.setdefault(name, set()).update(versions)
    if not read:
        progress(f"note: the mirror's package index ({sources[0][0]}) could not be read: the pinned OS versions "
                 "are left to the apt step")
        return
    missing = [(n, ver, a) for n, ver, a in lock.system_pins
               if n in served and ver not in served[n] and a in ("", "all", arch)]
    if not missing:
        return
    archive = _archive_uri(lock.files.get("apt-snapshot.sources") or "")
    archived: Versions | None = None
    if archive is not None:
        archived = _index(archive, lock.os_codename, arch, fetch, fresh=None, unreachable=unreachable)
        if archived is not None:
            missing = [(n, ver, a) for n, ver, a in missing if ver not in archived.get(n, ())]
    if not missing:
        return
    raise LockError(_message(lock, missing, sources, archive, archived is not None))


def _message(lock: Any, missing: list[tuple[str, str, str]], sources: list[tuple[str, str]], archive: str | None,
             archive_read: bool) -> str:
    shown = ", ".join(f"{n}={ver}" for n, ver, _ in missing[:8]) + \
        (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    mirror = f"{sources[0][0]} ({', '.join(s for _, s in sources)})"
    if archive is None:
        where = "and no dated archive is set for this distribution"
    elif archive_read:
        where = f"nor the dated archive {archive}"
    else:
        where = f"and the dated archive {archive} could not be read"
    how = lock.pin_os or ""
    if "(--pin-os all)" in how:
        leave = "or pin only what the run needs (--pin-os auto, the default), so that the base image's version is kept"
    elif "does not say which libraries" in how:
        leave = ("or take the environment's snapshot in a run (envcap run), so that --pin-os auto pins only what the "
                 "run needs and the base image's version of the rest is kept")
    else:
        leave = ("or, if the run can do without that exact version, leave it to the base image (it is pinned because "
                 "the run's compiled code links it, it is a compiler or CUDA, or --pin-os named it)")
    return (f"{len(missing)} pinned OS package version(s) can be had from neither the mirror {mirror} {where}: "
            f"{shown}. Set ENVCAP_APT_ARCHIVE (or build.apt_archive) to an archive that holds them (a site "
            f"mirror of snapshot.debian.org, {{stamp}} for the snapshot's time), {leave}")


def _mirror_sources(os_id: str | None, codename: str, mirror: str | None) -> list[tuple[str, str]]:
    if mirror:
        return [(mirror.rstrip("/"), s) for s in (codename, f"{codename}-updates")]
    out = []
    for base, suites in _MIRRORS.get(os_id or "", ()):
        out += [(base, s.format(c=codename)) for s in suites]
    return out


def _archive_uri(sources: str) -> str | None:
    for line in sources.splitlines():
        if line.startswith("URIs:"):
            uri = line[len("URIs:"):].strip().split()
            return uri[0].rstrip("/") if uri else None
    return None


def _index(base: str, suite: str, arch: str, fetch: Fetch, *, fresh: float | None,
           unreachable: set[str] | None = None) -> Versions | None:
    """The names and versions of ``base``'s ``suite`` (main), from the cache or the server."""
    url = f"{base.rstrip('/')}/dists/{suite}/main/binary-{arch}/Packages"
    path = cache_dir() / (hashlib.sha256(url.encode()).hexdigest() + ".json")
    try:
        if fresh is None or time.time() - path.stat().st_mtime < fresh:
            return {k: set(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        pass
    host = urllib.parse.urlsplit(base).netloc
    if unreachable is not None and host in unreachable:
        return None
    text = None
    for suffix, unpack in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", lambda b: b)):
        try:
            data = fetch(url + suffix)
        except Unreachable:
            if unreachable is not None:
                unreachable.add(host)
            return None
        if data is None:
            continue
        try:
            text = unpack(data).decode("utf-8", "replace")
        except (lzma.LZMAError, OSError, EOFError):
            continue
        break
    if text is None:
        return None
    versions = parse(text.splitlines())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: sorted(v) for k, v in versions.items()}), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written is asked again next time
    return versions


def parse(lines: Iterable[str]) -> Versions:
    """Package name -> versions, from a Packages index (deb822 stanzas)."""
    out: Versions = {}
    name = None
    for line in lines:
        if line.startswith("Package:"):
            name = line[len("Package:"):].strip()
        elif line.startswith("Version:") and name:
            out.setdefault(name, set()).add(line[len("Version:"):].strip())
        elif not line.strip():
            name = None
    return out


def _fetch(url: str) -> bytes | None:
    """The file at ``url``; None when the server has no such file; :class:`Unreachable`
    when there is no server to ask."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        exc.close()
        return None  # the server answered: this file is not there (another compression may be)
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(url) from exc
    except ValueError:
        return None
