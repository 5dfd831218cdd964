"""Every value a manifest hands the builder is checked against its grammar first.

This module is the one grammar of manifest values that reach a rendered file, a command
line or a terminal. Its rules:

- every pattern is matched whole (``re.fullmatch``: a ``$`` would let one trailing
  newline through), ASCII only (``re.ASCII``: under IGNORECASE, ``[a-z]`` also matches
  the Kelvin sign and the long s), and linear (no nested quantifiers);
- free text that is only ever shown (a comment in a lockfile, a note) must be printable
  (``str.isprintable``): no control characters, no line or paragraph separators (pip,
  like ``str.splitlines``, ends a line at ``\x85``, U+2028 and U+2029), no direction
  overrides or other format characters.

A manifest is data from another machine, possibly crafted: nothing from it reaches a
lockfile, a Dockerfile or a command line before it matches the grammar of what it
claims to be (PEP 508 names and PEP 440 versions through ``packaging``, Debian policy
for package names and versions, strict shapes for paths, URLs, digests). A value that
does not is refused with the field that holds it, so the user can find it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import ManifestRefused

# PEP 508: a name starts and ends with a letter or digit, with . _ - between.
_PEP508_NAME = re.compile(r"([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])", re.ASCII | re.IGNORECASE)
# Debian policy 5.6.1 (Source/Package): lower case letters, digits, + - ., at least two
# characters, starting with an alphanumeric.
_DEB_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+", re.ASCII)
# Debian policy 5.6.12: [epoch:]upstream_version[-debian_revision]; the upstream version
# starts with a digit and holds letters, digits, . + ~ (and - when a revision follows);
# the revision holds letters, digits, + . ~.
_DEB_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*", re.ASCII)
_DEB_REVISION = re.compile(r"[A-Za-z0-9+.~]+", re.ASCII)
_DEB_ARCH = re.compile(r"[a-z0-9][a-z0-9-]*", re.ASCII)
# rpm: NAME, and [EPOCH:]VERSION-RELEASE with rpm's own character set.
_RPM_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*", re.ASCII)
_RPM_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9._+~^]+-[A-Za-z0-9._+~^]+", re.ASCII)
_RPM_ARCH = re.compile(r"[A-Za-z0-9_]+", re.ASCII)
# apk: name, and version-rN.
_APK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*", re.ASCII)
_APK_VERSION = re.compile(r"[0-9][A-Za-z0-9._]*(?:-r[0-9]+)?", re.ASCII)
# conda: names are lower case; versions have no "-"; build strings are simple tokens.
_CONDA_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*", re.ASCII)
_CONDA_VERSION = re.compile(r"[A-Za-z0-9_.+!*]+", re.ASCII)
_CONDA_BUILD = re.compile(r"[A-Za-z0-9_.+]+", re.ASCII)
_CONDA_SUBDIR = re.compile(r"(?:noarch|[a-z0-9]+-[a-z0-9_]+)", re.ASCII)
_MD5 = re.compile(r"[0-9a-f]{32}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_COMMIT = re.compile(r"[0-9a-f]{7,64}", re.ASCII)
# An absolute path of plain components: nothing a shell, a Dockerfile or pip would read
# as anything but a path. Components are separated by exactly one "/", so the match is
# linear: a nested quantifier such as ``(?:[...]+/?)*`` backtracks exponentially on a
# long component followed by a character outside the set.
_COMPONENT = r"[A-Za-z0-9._+@-]+"
_PATH = re.compile(rf"/(?:{_COMPONENT}(?:/{_COMPONENT})*/?)?", re.ASCII)
# A URL: scheme, then RFC 3986 characters but never whitespace, quotes or backslashes,
# so that it cannot end a requirements line or start an option.
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+", re.ASCII)
_VCS_SCHEMES = ("git+", "hg+", "svn+", "bzr+")
_PEP440_CHARS = re.compile(r"[A-Za-z0-9.!+_-]+", re.ASCII)
# A plain token: an OS id or codename, an architecture, an installer's or a state's name.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def _refuse(field: str, value: Any, what: str) -> ManifestRefused:
    # repr() escapes what is not printable; the field may hold a manifest's key (an
    # environment variable's name), so it is made terminal-safe too.
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "...'"
    return ManifestRefused(f"manifest refused: {terminal_safe(field)} = {shown} is not {what}")


def printable(value: str) -> bool:
    """Whether ``value`` is one line of text that shows as it reads (see the module's rules)."""
    return value.isprintable()


def terminal_safe(value: Any, limit: int | None = None) -> str:
    """``value`` as text with every character that is not printable escaped (``\\x1b``),
    so that it cannot move the cursor, start a new line or reorder what follows."""
    from ..core.text import terminal_safe as safe

    return safe(value, limit)


def _text(field: str, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _refuse(field, value, what)
    return value


def _matching(field: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    """``value`` when it is a string that ``pattern`` matches, else refused as not ``what``."""
    text = _text(field, value, what)
    if not pattern.fullmatch(text):
        raise _refuse(field, value, what)
    return text


def python_name(field: str, value: Any) -> str:
    """A PEP 508 distribution name, returned in its PEP 503 normalized form."""
    return canonicalize_name(_matching(field, value, _PEP508_NAME, "a Python distribution name (PEP 508)"))


def python_version(field: str, value: Any) -> str:
    """A PEP 440 version, as written."""
    text = _text(field, value, "a Python version (PEP 440)")
    # packaging's own pattern allows surrounding whitespace and matches case-insensitively
    # over Unicode: the characters a PEP 440 version can hold are checked first.
    if not _PEP440_CHARS.fullmatch(text):
        raise _refuse(field, value, "a Python version (PEP 440)")
    try:
        Version(text)
    except InvalidVersion:
        raise _refuse(field, value, "a Python version (PEP 440)") from None
    return text


def deb_name(field: str, value: Any) -> str:
    return _matching(field, value, _DEB_NAME, "a Debian package name (policy 5.6.1)")


def deb_version(field: str, value: Any) -> str:
    text = _text(field, value, "a Debian package version (policy 5.6.12)")
    ok = bool(_DEB_VERSION.fullmatch(text)) and not text.endswith("-")
    if ok and "-" in text:
        ok = bool(_DEB_REVISION.fullmatch(text.rpartition("-")[2]))
    if not ok:
        raise _refuse(field, value, "a Debian package version (policy 5.6.12)")
    return text


def deb_arch(field: str, value: Any) -> str:
    return _matching(field, value, _DEB_ARCH, "a Debian architecture")


def system_package(field: str, manager: str, record: Any) -> tuple[str, str, str]:
    """(name, version, arch) of one ``sections.system.packages[]`` record."""
    if not isinstance(record, Mapping):
        raise _refuse(field, record, "a package record")
    name, version, arch = record.get("name"), record.get("version"), record.get("arch", "")
    if manager == "dpkg":
        return (deb_name(f"{field}.name", name), deb_version(f"{field}.version", version),
                deb_arch(f"{field}.arch", arch) if arch else "")
    if manager == "rpm":
        checks = ((name, _RPM_NAME, "an rpm package name"), (version, _RPM_VERSION, "an rpm [epoch:]version-release"),
                  (arch, _RPM_ARCH, "an rpm architecture"))
    elif manager == "apk":
        checks = ((name, _APK_NAME, "an apk package name"), (version, _APK_VERSION, "an apk version"),
                  (arch or "noarch", _RPM_ARCH, "an apk architecture"))
    else:
        raise _refuse(field.rsplit(".packages", 1)[0] + ".manager", manager, "dpkg, rpm or apk")
    for (value, grammar, what), leaf in zip(checks, ("name", "version", "arch")):
        if not isinstance(value, str) or not grammar.fullmatch(value):
            raise _refuse(f"{field}.{leaf}", value, what)
    assert isinstance(name, str) and isinstance(version, str)  # checked above
    return name, version, arch or ""


def conda_record(field: str, record: Any) -> dict[str, str | None]:
    """One ``sections.conda.packages[]`` record with every field checked."""
    if not isinstance(record, Mapping):
        raise _refuse(field, record, "a conda package record")
    out: dict[str, str | None] = {}
    for key, grammar, what in (
        ("name", _CONDA_NAME, "a conda package name"),
        ("version", _CONDA_VERSION, "a conda version"),
        ("build", _CONDA_BUILD, "a conda build string"),
        ("subdir", _CONDA_SUBDIR, "a conda subdir (linux-64, noarch, ...)"),
        ("md5", _MD5, "an MD5 hex digest"),
        ("sha256", _SHA256, "a SHA-256 hex digest"),
    ):
        value = record.get(key)
        if value is None and key not in ("name", "version"):
            out[key] = None
            continue
        if not isinstance(value, str) or not grammar.fullmatch(value):
            raise _refuse(f"{field}.{key}", value, what)
        out[key] = value
    out["url"] = url(f"{field}.url", record["url"]) if record.get("url") is not None else None
    return out


def url(field: str, value: Any, *, vcs: bool = False) -> str:
    text = _text(field, value, "a URL")
    bare = text
    if vcs:
        if not text.startswith(_VCS_SCHEMES):
            raise _refuse(field, value, "a VCS URL (git+, hg+, svn+ or bzr+)")
        bare = text.split("+", 1)[1]
    if not _URL.fullmatch(bare) or "[REDACTED]" in text:
        raise _refuse(field, value, "a URL without spaces, quotes or redacted parts")
    return text


def commit(field: str, value: Any) -> str:
    return _matching(field, value, _COMMIT, "a commit id (hex)")


def sha256(field: str, value: Any) -> str:
    return _matching(field, value, _SHA256, "a SHA-256 hex digest")


def path(field: str, value: Any) -> str:
    text = _text(field, value, "an absolute path")
    if not _PATH.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        raise _refuse(field, value, "an absolute path of plain components")
    return text.rstrip("/") or "/"


def env_name(field: str, value: Any) -> str:
    return _matching(field, value, _ENV_NAME, "an environment variable name")


def env_value(field: str, value: Any) -> str:
    text = _text(field, value, "a one-line printable value")
    if not printable(text) or "[REDACTED]" in text:
        raise _refuse(field, value, "a one-line printable value")
    return text


def token(field: str, value: Any) -> str:
    """A plain token (an OS id, an architecture, an installer or package state)."""
    return _matching(field, value, _TOKEN, "a plain token (letters, digits, . _ + -)")


def plain(value: Any) -> str | None:
    """``value`` when it is a plain token, else None (for values that are optional hints)."""
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def comment(field: str, value: Any) -> str:
    """Free text that goes into a comment of a rendered file or a note: one printable line."""
    text = value if isinstance(value, str) else str(value)
    if not printable(text) or "\\" in text:
        raise _refuse(field, value, "one line of printable text")
    return text


def system_manager(field: str, value: Any) -> str:
    if value not in ("dpkg", "rpm", "apk"):
        raise _refuse(field, value, "dpkg, rpm or apk")
    return str(value)
