"""The Python package changes between two environments, and which needs which.

A change is one distribution whose version differs (or that is only on one side). The
new side's wheel, when it was a local file, is read for its ``Requires-Dist``: a change
whose new version needs another changed package at a version the old environment does
not have depends on that change, and a subset of changes is always applied with what
it depends on (pip would refuse it otherwise). Requirements of index packages are not
known before pip sees them: a subset pip cannot install is found by the build, and
skipped.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path
from typing import Any

from ..core.errors import EnvcapError
from ..core.manifest import Manifest


class BisectError(EnvcapError):
    """Two environments that cannot be bisected, or a bisect that cannot go on."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Change:
    name: str  # canonical
    good: str | None  # the version in the good environment (None: added)
    bad: str | None  # the version in the bad environment (None: removed)
    wheel: str | None = None  # the bad side's local wheel file, when it was one
    sha256: str | None = None
    good_sha256: str | None = None
    good_wheel: str | None = None
    needs: tuple[str, ...] = field(default_factory=tuple)  # names of the changes this one needs

    @property
    def text(self) -> str:
        return f"{self.name} {self.good or '(absent)'} → {self.bad or '(removed)'}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "good": self.good, "bad": self.bad, "needs": list(self.needs),
                "wheel": self.wheel}


def _packages(manifest: Manifest) -> dict[str, Mapping[str, Any]]:
    python = manifest.sections.get("python")
    if not isinstance(python, Mapping):
        raise BisectError(f"env {manifest.env_id} has no Python section: nothing to bisect")
    out = {}
    for p in python.get("packages") or ():
        if isinstance(p, Mapping) and isinstance(p.get("name"), str) and isinstance(p.get("version"), str):
            out[canonical(p["name"])] = p
    return out


def _local(package: Mapping[str, Any]) -> tuple[str | None, str | None]:
    origin = package.get("origin") or {}
    url = origin.get("url") if isinstance(origin, Mapping) else None
    sha = origin.get("sha256") if isinstance(origin, Mapping) else None
    if isinstance(url, str) and url.startswith("file://") and url.endswith(".whl"):
        return url[len("file://"):], sha if isinstance(sha, str) else None
    return None, None


def python_prefix(manifest: Manifest) -> str:
    python = manifest.sections.get("python") or {}
    prefix = python.get("prefix") if isinstance(python, Mapping) else None
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise BisectError(f"env {manifest.env_id} names no Python prefix")
    return prefix


def between(good: Manifest, bad: Manifest) -> list[Change]:
    """Every Python package change from ``good`` to ``bad``, by name, with what each needs."""
    a, b = _packages(good), _packages(bad)
    changes = []
    for name in sorted(set(a) | set(b)):
        old, new = a.get(name), b.get(name)
        if old is not None and new is not None and old.get("version") == new.get("version"):
            continue
        wheel, sha = _local(new) if new is not None else (None, None)
        good_wheel, good_sha = _local(old) if old is not None else (None, None)
        changes.append(Change(name, old.get("version") if old else None, new.get("version") if new else None,
                              wheel, sha, good_sha, good_wheel))
    return _with_needs(changes)


def _requires(wheel: str) -> list[str]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            if meta is None:
                return []
            text = zf.read(meta).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return []
    return Parser().parsestr(text).get_all("Requires-Dist") or []


def _with_needs(changes: list[Change]) -> list[Change]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    by_name = {c.name: c for c in changes}
    out = []
    for c in changes:
        needs = []
        for line in _requires(c.wheel) if c.wheel else []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            other = by_name.get(canonical(req.name))
            if other is None or other.name == c.name:
                continue
            try:
                satisfied = other.good is not None and Version(other.good) in req.specifier
            except InvalidVersion:
                satisfied = False
            if not satisfied:
                needs.append(other.name)
        out.append(Change(c.name, c.good, c.bad, c.wheel, c.sha256, c.good_sha256, c.good_wheel, tuple(needs)))
    return out


def closure(chosen: Iterable[str], changes: Mapping[str, Change]) -> list[str]:
    """``chosen`` with every change it needs, in the order of ``changes``."""
    todo = list(chosen)
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo += [n for n in changes[name].needs if n in changes]
    return [n for n in changes if n in found]


def other_differences(good: Manifest, bad: Manifest) -> list[str]:
    """What differs besides Python packages (not bisected; said so)."""
    from ..compare.diff import changes_between, describe

    lines = []
    for change in changes_between(good, bad, layers=["software"]):
        text = describe(change, "good", "bad")
        if not text.lstrip().startswith("python"):
            lines.append(text)
    return lines


def wheel_path(change: Change) -> Path | None:
    return Path(change.wheel) if change.wheel else None
