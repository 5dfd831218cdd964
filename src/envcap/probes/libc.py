"""The C library: glibc's version, or musl's."""

from __future__ import annotations

import os
import re

from . import SOFTWARE, Finding, Probe
from .context import Context

_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/lib", "/usr/lib64", "/usr/lib")
_GLIBC_BANNER = re.compile(rb"GNU C Library \(([^)]*)\) (?:stable )?release version (\d+\.\d+(?:\.\d+)?)")


def _from_confstr() -> dict[str, str] | None:
    # os.confstr asks the running libc itself: exact, and far cheaper than
    # platform.libc_ver(), which scans the interpreter binary.
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not value:
        return None
    name, _, version = value.partition(" ")
    return {"family": name, "version": version}


def _from_glibc_file(ctx: Context) -> dict[str, str] | None:
    for directory in _LIB_DIRS:
        data = ctx.read_bytes(f"{directory}/libc.so.6")
        if data:
            match = _GLIBC_BANNER.search(data)
            if match:
                return {"family": "glibc", "version": match.group(2).decode()}
    return None


def _from_musl(ctx: Context) -> dict[str, str] | None:
    for directory in ("/lib", "/usr/lib"):
        for path in ctx.glob(directory, "ld-musl-*.so.1"):
            data = ctx.read_bytes(path) or b""
            match = re.search(rb"\x00(1\.\d+\.\d+)\x00", data)
            return {"family": "musl", "version": match.group(1).decode() if match else None}  # type: ignore[dict-item]
    return None


_DPKG_LIBC6 = re.compile(r"^Package: libc6\n(?:[^\n]+\n)*?Version: (?:\d+:)?(\d+\.\d+(?:\.\d+)?)", re.M)


def _from_dpkg(ctx: Context) -> dict[str, str] | None:
    # A trimmed tree (or one whose libraries were not copied) still says which glibc
    # its package manager installed: Debian and Ubuntu name the package libc6.
    status = ctx.read_text("/var/lib/dpkg/status")
    match = _DPKG_LIBC6.search(status) if status else None
    return {"family": "glibc", "version": match.group(1)} if match else None


def collect(ctx: Context) -> Finding:
    found = (
        (_from_confstr() if ctx.live else None) or _from_glibc_file(ctx) or _from_musl(ctx) or _from_dpkg(ctx)
    )
    return Finding(found)


PROBE = Probe(
    name="libc",
    section="libc",
    layer=SOFTWARE,
    tags=frozenset({"libc", "system"}),
    collect=collect,
)
