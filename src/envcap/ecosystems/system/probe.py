"""System packages, read straight from the package manager's own database.

One manager per machine is recorded: dpkg, else rpm, else apk, the first whose database
exists. Each is read from its files, not through its tools, because the files are there
under ``--root`` too and parsing them costs a few milliseconds where a tool costs tens.
The one exception is an rpmdb in Berkeley DB or ndb format, which only rpm can read.

Each package is ``{"name", "version", "arch"}`` exactly as the manager's own query tool
prints them (``dpkg-query -W``, ``rpm -qa``, ``apk``'s database), sorted by
``(name, arch)``.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ...core.errors import ProbeError
from ...probes import SOFTWARE, Finding, Probe
from ...probes.context import Context

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_UPDATES = "/var/lib/dpkg/updates"
# Distroless images carry one stanza file per package here, and no status file.
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
# Fedora 36 and later keep the rpmdb under /usr; /var/lib/rpm is then a link to it.
RPMDB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
APK_INSTALLED = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")

RPM_QUERYFORMAT = r"%{NAME}\t%{EPOCH}:%{VERSION}-%{RELEASE}\t%{ARCH}\n"


# A NamedTuple, not a dataclass: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Package(NamedTuple):
    name: str
    version: str
    arch: str
    # dpkg's installation state (the third word of Status:). Only dpkg has states that
    # dpkg-query -W still lists although the package is not fully there.
    status: str = "installed"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "arch": self.arch}
        if self.status != "installed":
            out["status"] = self.status
        return out


def collect(ctx: Context) -> Finding:
    for manager, read in (("dpkg", _dpkg), ("rpm", _rpm), ("apk", _apk)):
        packages = read(ctx)
        if packages is not None:
            ordered = sorted(packages, key=lambda p: (p.name, p.arch))
            return Finding({"manager": manager, "packages": [p.to_dict() for p in ordered]})
    return Finding(None)


# -- dpkg ----------------------------------------------------------------------------

# dpkg-query -W with no pattern lists every package in the database except those in
# state not-installed (purged, or only ever selected). So packages that are gone but
# left their configuration behind (config-files, "rc" in dpkg -l), and those caught
# half-way through an install or removal (half-installed, unpacked, half-configured,
# triggers-awaited, triggers-pending), are listed. envcap keeps exactly that set, so
# that the section can be checked against dpkg-query -W, and marks each package that is
# not fully installed with its state, so that a rebuild can tell the leftovers apart.
_DPKG_HIDDEN_STATE = "not-installed"
# dpkg accepts a stanza without Version only in these states (lib/dpkg/parse.c).
_DPKG_VERSIONLESS_STATES = frozenset({"not-installed", "half-installed"})
_DPKG_FIELDS = frozenset({"package", "version", "architecture", "status"})


def _dpkg(ctx: Context) -> list[Package] | None:
    status = ctx.read_text(DPKG_STATUS)
    distroless = [p for p in ctx.glob(DPKG_STATUS_D, "*") if not p.endswith(".md5sums")]
    if status is None and not distroless:
        return None
    records: dict[tuple[str, str], Package] = {}
    if status is not None:
        _merge(records, parse_dpkg_status(status, DPKG_STATUS))
        # dpkg journals changes it has not yet folded into status as numbered files
        # here; dpkg-query applies them on reading, in order, and so does envcap.
        updates = [p for p in ctx.glob(DPKG_UPDATES, "*") if p.rpartition("/")[2].isdigit()]
        for path in sorted(updates, key=lambda p: int(p.rpartition("/")[2])):
            _merge(records, parse_dpkg_status(ctx.read_text(path) or "", path))
    for path in distroless:
        stanza = ctx.read_text(path) or ""
        _merge(records, parse_dpkg_status(stanza, path, default_status="installed"))
    return [p for p in records.values() if p.status != _DPKG_HIDDEN_STATE]


def _merge(records: dict[tuple[str, str], Package], packages: list[Package]) -> None:
    for package in packages:
        records[(package.name, package.arch)] = package


def parse_dpkg_status(text: str, source: str, default_status: str = "not-installed") -> list[Package]:
    """Every stanza of a dpkg status file, not-installed ones included.

    ``default_status`` is the state of a stanza without a Status field: dpkg takes such a
    stanza for not-installed, while distroless status.d files have none and mean installed.
    """
    packages = []
    for line, fields in _stanzas(text, source):
        name = fields.get("package")
        if not name:
            raise ProbeError(f"{source}:{line()}: stanza has no Package field")
        state = _dpkg_state(fields.get("status"), default_status)
        if state is None:
            raise ProbeError(f"{source}:{line()}: package {name!r} has a malformed Status field: {fields['status']!r}")
        version = fields.get("version")
        if version is None and state not in _DPKG_VERSIONLESS_STATES:
            raise ProbeError(f"{source}:{line()}: package {name!r} has no Version field")
        arch = fields.get("architecture", "")
        packages.append(Package(name, normalize_dpkg_version(version or ""), arch, state))
    return packages


def _dpkg_state(status: str | None, default: str) -> str | None:
    """The state word of a Status field ("install ok installed"); None when malformed."""
    if status is None:
        return default
    words = status.split()
    return words[2] if len(words) == 3 else None


# Status files hold thousands of stanzas and tens of thousands of lines and are read on
# every snapshot, so they are scanned with one regular expression each that starts with
# a literal newline (which the engine finds fast) rather than line by line in Python:
# one finds the four fields envcap reads and the blank lines between stanzas, the other
# a line that is neither "Field: value", a continuation nor blank (a corrupt file).
_DPKG_SCAN = re.compile(
    r"\n(?:(package|version|architecture|status):[ \t]*([^\n]*?)[ \t]*(?=\n)|[ \t]*(?=\n))", re.I
)
_DPKG_BAD_LINE = re.compile(r"\n([^ \t\n:][^:\n]*)\n")  # (the newline is taken: twice as fast as (?=\n))


def _stanzas(text: str, source: str) -> Iterator[tuple[Callable[[], int], dict[str, str]]]:
    """(line number of the stanza, its wanted fields lower-cased) for each stanza.

    Line numbers are worked out only when an error message needs one.
    """
    padded = "\n" + text + "\n"
    bad = _DPKG_BAD_LINE.search(padded)
    if bad is not None:
        number = padded.count("\n", 0, bad.start()) + 1
        raise ProbeError(f"{source}:{number}: line is not a 'Field: value' line: {bad.group(1)[:80]!r}")
    fields: dict[str, str] = {}
    first = 0
    for match in _DPKG_SCAN.finditer(padded):
        key = match.group(1)
        if key:
            if not fields:
                first = match.start()
            fields.setdefault(key.lower(), match.group(2))
        elif fields:
            yield _line_at(padded, first), fields
            fields = {}
    if fields:
        yield _line_at(padded, first), fields


def _line_at(text: str, at: int) -> Callable[[], int]:
    """The line number of offset ``at``, counted only when an error needs it."""
    return lambda: text.count("\n", 0, at + 1)


def normalize_dpkg_version(version: str) -> str:
    """``version`` as dpkg prints it: a zero epoch is dropped unless a colon follows.

    dpkg parses versions and prints them back "non-ambiguously" (lib/dpkg/version.c),
    so a status file's ``0:1.2-3`` is printed as ``1.2-3``.
    """
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        return version
    number = int(epoch)
    if number == 0 and ":" not in rest:
        return rest
    return f"{number}:{rest}"


# -- rpm -----------------------------------------------------------------------------

_RPMTAG_NAME, _RPMTAG_VERSION, _RPMTAG_RELEASE, _RPMTAG_EPOCH = 1000, 1001, 1002, 1003
_RPMTAG_ARCH = 1022
_RPM_INT32, _RPM_STRING = 4, 6
# What rpm prints for a tag a header lacks (gpg-pubkey pseudo-packages have no ARCH).
_RPM_NONE = "(none)"


def _rpm(ctx: Context) -> list[Package] | None:
    for directory in RPMDB_DIRS:
        sqlite_path = f"{directory}/rpmdb.sqlite"
        if ctx.exists(sqlite_path):
            rows = read_rpmdb_sqlite(ctx.host_path(sqlite_path), sqlite_path)
            return [_rpm_header_or_raise(blob, f"{sqlite_path}: Packages hnum {hnum}") for hnum, blob in rows]
        if ctx.exists(f"{directory}/Packages") or ctx.exists(f"{directory}/Packages.db"):
            return _rpm_query(ctx, directory)
    return None


def _rpm_query(ctx: Context, directory: str) -> list[Package]:
    """Ask rpm itself: Berkeley DB and ndb databases have no reader in the stdlib."""
    result = ctx.run(["rpm", "--dbpath", directory, "-qa", "--qf", RPM_QUERYFORMAT])
    if result is None:
        raise ProbeError(
            f"the rpmdb in {directory} is in Berkeley DB or ndb format, and rpm is not installed to read it"
        )
    if result.returncode != 0:
        raise ProbeError(f"rpm -qa --dbpath {directory} failed: {result.stderr.strip()[:200]}")
    return parse_rpm_qa(result.stdout)


def parse_rpm_qa(text: str) -> list[Package]:
    """Lines of ``rpm -qa --qf RPM_QUERYFORMAT``; rpm's "(none):" for no epoch is dropped."""
    packages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ProbeError(f"rpm -qa output line {number} is not NAME, VERSION, ARCH: {line!r}")
        name, version, arch = parts
        packages.append(Package(name, version.removeprefix(_RPM_NONE + ":"), arch))
    return packages


def read_rpmdb_sqlite(location: str | os.PathLike[str], source: str) -> list[tuple[int, bytes]]:
    """(hnum, header blob) of each row of an rpmdb.sqlite's Packages table."""
    # sqlite3 (and pathlib) cost a few milliseconds to import: only machines with an rpmdb pay.
    import sqlite3
    from contextlib import closing
    from pathlib import Path

    path = Path(location)
    # rpm keeps its database in WAL mode. When the write-ahead log is empty, everything
    # is in the main file and the database can be opened immutable, which takes no lock
    # and writes no -shm file: the only way to read a read-only tree, and the way to
    # leave a fixture untouched. A non-empty log holds committed transactions that the
    # main file lacks, so then SQLite must read it, as an ordinary read-only reader.
    wal = path.with_name(path.name + "-wal")
    immutable = not wal.exists() or wal.stat().st_size == 0
    uri = f"{path.as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        with closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
    except sqlite3.Error as exc:
        raise ProbeError(f"{source}: cannot read the rpm database: {exc}") from exc
    return [(int(hnum), bytes(blob)) for hnum, blob in rows]


def _rpm_header_or_raise(blob: bytes, where: str) -> Package:
    try:
        return parse_rpm_header(blob)
    except ValueError as exc:
        raise ProbeError(f"{where}: {exc}") from exc


def parse_rpm_header(blob: bytes) -> Package:
    """Name, version and arch from one rpm header blob as the rpmdb stores it.

    The blob is an index count and a data length (big-endian int32s), that many 16-byte
    entries (tag, type, offset into the data, count) and the data. The version is the
    one ``rpm -q --qf '%{EPOCH}:%{VERSION}-%{RELEASE}'`` prints, less an absent epoch.
    """
    tags = _rpm_index(blob)
    name = _rpm_string(blob, tags, _RPMTAG_NAME)
    version = _rpm_string(blob, tags, _RPMTAG_VERSION)
    release = _rpm_string(blob, tags, _RPMTAG_RELEASE)
    if name is None or version is None or release is None:
        raise ValueError("header lacks NAME, VERSION or RELEASE")
    epoch = _rpm_int32(blob, tags, _RPMTAG_EPOCH)
    arch = _rpm_string(blob, tags, _RPMTAG_ARCH)
    full = f"{version}-{release}" if epoch is None else f"{epoch}:{version}-{release}"
    return Package(name, full, _RPM_NONE if arch is None else arch)


_RpmIndex = dict[int, tuple[int, int, int]]  # tag -> (type, absolute offset, end of data)


def _rpm_index(blob: bytes) -> _RpmIndex:
    if len(blob) < 8:
        raise ValueError(f"header of {len(blob)} bytes is truncated")
    count, size = struct.unpack_from(">II", blob, 0)
    data = 8 + 16 * count
    if data + size > len(blob):
        raise ValueError(f"header declares {count} entries and {size} data bytes in {len(blob)} bytes")
    wanted = (_RPMTAG_NAME, _RPMTAG_VERSION, _RPMTAG_RELEASE, _RPMTAG_EPOCH, _RPMTAG_ARCH)
    index: _RpmIndex = {}
    for tag, kind, offset, _ in struct.iter_unpack(">IIII", blob[8:data]):
        if tag in wanted:
            if offset >= size:
                raise ValueError(f"tag {tag} points past the header's data")
            index[tag] = (kind, data + offset, data + size)
    return index


def _rpm_string(blob: bytes, index: _RpmIndex, tag: int) -> str | None:
    if tag not in index:
        return None
    kind, start, end = index[tag]
    if kind != _RPM_STRING:
        raise ValueError(f"tag {tag} has type {kind}, not a string")
    stop = blob.find(b"\0", start, end)
    if stop < 0:
        raise ValueError(f"tag {tag}'s string is not terminated")
    return blob[start:stop].decode("utf-8", "replace")


def _rpm_int32(blob: bytes, index: _RpmIndex, tag: int) -> int | None:
    if tag not in index:
        return None
    kind, start, end = index[tag]
    if kind != _RPM_INT32 or start + 4 > end:
        raise ValueError(f"tag {tag} is not an int32")
    return int(struct.unpack_from(">I", blob, start)[0])


# -- apk -----------------------------------------------------------------------------


def _apk(ctx: Context) -> list[Package] | None:
    for path in APK_INSTALLED:
        text = ctx.read_text(path)
        if text is not None:
            return parse_apk_installed(text, path)
    return None


def parse_apk_installed(text: str, source: str) -> list[Package]:
    """apk's installed database: blank-line separated records of ``X:value`` lines.

    P is the name, V the version, A the architecture (absent in old databases).
    """
    packages = []
    for start, fields in _apk_records(text, source):
        name, version = fields.get("P"), fields.get("V")
        if not name or not version:
            missing = "P (name)" if not name else "V (version)"
            raise ProbeError(f"{source}:{start}: record has no {missing} line")
        packages.append(Package(name, version, fields.get("A", "")))
    return packages


def _apk_records(text: str, source: str) -> Iterator[tuple[int, dict[str, str]]]:
    fields: dict[str, str] = {}
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if start:
                yield start, fields
            fields, start = {}, 0
            continue
        start = start or number
        if line[1:2] != ":":
            raise ProbeError(f"{source}:{number}: line is not an 'X:value' line: {line[:80]!r}")
        if line[0] in ("P", "V", "A"):
            fields.setdefault(line[0], line[2:])
    if start:
        yield start, fields


PROBE = Probe(
    name="system",
    section="system",
    layer=SOFTWARE,
    tags=frozenset({"system", "packages"}),
    collect=collect,
    reads_files=True,
)
