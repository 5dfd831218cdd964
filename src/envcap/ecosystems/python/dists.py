"""Installed Python distributions, read from their ``*.dist-info`` and ``*.egg-info``.

Reading the few files pip itself writes (METADATA headers, INSTALLER, REQUESTED,
direct_url.json) is an order of magnitude faster than importlib.metadata or
``pip list``, and works the same on a file tree as on the live machine.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...core.canonical import ID_PREFIX, digest
from ...probes.context import Context

_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized name."""
    return _NORMALIZE.sub("-", name).lower()


def parse_metadata_headers(text: str) -> tuple[str | None, str | None]:
    """Name and Version from the RFC 822 headers of METADATA or PKG-INFO."""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name is not None and version is not None:
            break
    return name, version


def _read_metadata(ctx: Context, path: str) -> tuple[str | None, str | None]:
    # Name and Version come within the first lines; read a little, and everything
    # only when a long header block hides them.
    head = ctx.read_text(path, limit=4096)
    if head is None:
        return None, None
    name, version = parse_metadata_headers(head)
    if (name is None or version is None) and len(head) >= 4096:
        name, version = parse_metadata_headers(ctx.read_text(path) or "")
    return name, version


def scan(ctx: Context, directories: list[str]) -> list[dict[str, Any]]:
    """Every distribution in ``directories``; the first of a name wins, as on import."""
    seen: dict[str, dict[str, Any]] = {}
    for directory in directories:
        for entry in ctx.listdir(directory):
            if entry.endswith(".dist-info"):
                record = _dist_info(ctx, f"{directory}/{entry}")
            elif entry.endswith(".egg-info"):
                record = _egg_info(ctx, f"{directory}/{entry}")
            else:
                continue
            if record is not None and record["name"] not in seen:
                seen[record["name"]] = record
    return [seen[name] for name in sorted(seen)]


def _dist_info(ctx: Context, path: str) -> dict[str, Any] | None:
    name, version = _read_metadata(ctx, f"{path}/METADATA")
    if name is None or version is None:
        return None
    installer = ctx.read_text(f"{path}/INSTALLER")
    direct_url = ctx.read_text(f"{path}/direct_url.json")
    return {
        "name": normalize(name),
        "version": version,
        "installer": installer.strip() or None if installer is not None else None,
        "requested": ctx.exists(f"{path}/REQUESTED"),
        "origin": origin(ctx, installer.strip() if installer else None, direct_url, path),
    }


def _egg_info(ctx: Context, path: str) -> dict[str, Any] | None:
    # An .egg-info is a directory holding PKG-INFO, or (distutils) the PKG-INFO itself.
    name, version = _read_metadata(ctx, f"{path}/PKG-INFO")
    if name is None:
        name, version = _read_metadata(ctx, path)
    if name is None or version is None:
        return None
    installer = ctx.read_text(f"{path}/INSTALLER")
    return {
        "name": normalize(name),
        "version": version,
        "installer": installer.strip() or None if installer is not None else None,
        "requested": None,
        "origin": {"kind": "egg-info"},
    }


def origin(ctx: Context, installer: str | None, direct_url: str | None, dist_path: str) -> dict[str, Any]:
    """Where a distribution came from, per PEP 610's direct_url.json."""
    if direct_url is None:
        if installer == "conda":
            return {"kind": "conda"}
        return {"kind": "index"} if installer else {"kind": "unknown"}
    try:
        data = json.loads(direct_url)
        url = data["url"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{dist_path}/direct_url.json is not valid PEP 610 JSON: {exc}") from exc
    redacted = ctx.redactor.text(url)
    if "vcs_info" in data:
        vcs = data["vcs_info"]
        return {
            "kind": "vcs",
            "vcs": vcs.get("vcs"),
            "url": redacted,
            "commit": vcs.get("commit_id"),
            "requested_revision": vcs.get("requested_revision"),
        }
    if "archive_info" in data:
        return {"kind": "file" if url.startswith("file:") else "url", "url": redacted,
                "sha256": _archive_sha256(ctx, data["archive_info"], url)}
    dir_info = data.get("dir_info", {})
    path = url[len("file://"):] if url.startswith("file://") else None
    kind = "editable" if dir_info.get("editable") else "directory"
    record: dict[str, Any] = {"kind": kind, "url": redacted}
    if path is not None:
        record["git"] = git_state(ctx, path)
    return record


def _archive_sha256(ctx: Context, archive_info: dict[str, Any], url: str) -> str | None:
    hashes = archive_info.get("hashes") or {}
    if "sha256" in hashes:
        return str(hashes["sha256"])
    legacy = archive_info.get("hash", "")
    if legacy.startswith("sha256="):
        return str(legacy[len("sha256="):])
    # pip records no hash for a local file it was given directly: hash the file while
    # it is still there, since "which wheel was this" is what the origin is for.
    if url.startswith("file://"):
        data = ctx.read_bytes(url[len("file://"):])
        if data is not None:
            return digest(data)[len(ID_PREFIX):]
    return None


def git_state(ctx: Context, path: str) -> dict[str, Any] | None:
    """The commit of a git checkout read from its files, and (live) whether it is dirty."""
    git_dir = _find_git_dir(ctx, path)
    if git_dir is None:
        return None
    head = (ctx.read_text(f"{git_dir}/HEAD") or "").strip()
    commit: str | None = head
    branch = None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _read_ref(ctx, git_dir, ref)
    dirty = None
    if ctx.live:
        result = ctx.run(["git", "-C", path, "status", "--porcelain"])
        if result is not None and result.returncode == 0:
            dirty = bool(result.stdout.strip())
    return {"commit": commit, "branch": branch, "dirty": dirty}


def _find_git_dir(ctx: Context, path: str) -> str | None:
    current = path.rstrip("/") or "/"
    while True:
        candidate = f"{current}/.git"
        if ctx.is_dir(candidate):
            return candidate
        pointer = ctx.read_text(candidate)
        if pointer and pointer.startswith("gitdir:"):
            target = pointer[len("gitdir:"):].strip()
            return target if target.startswith("/") else f"{current}/{target}"
        if current in ("", "/"):
            return None
        current = current.rsplit("/", 1)[0] or "/"


def _read_ref(ctx: Context, git_dir: str, ref: str) -> str | None:
    common = (ctx.read_text(f"{git_dir}/commondir") or "").strip()
    dirs = [git_dir] + ([common if common.startswith("/") else f"{git_dir}/{common}"] if common else [])
    for directory in dirs:
        value = ctx.read_text(f"{directory}/{ref}")
        if value:
            return value.strip()
        for line in (ctx.read_text(f"{directory}/packed-refs") or "").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return sha
    return None
