"""The identity form of the software sections: what ``env_id`` hashes (schema 1.1 on).

A manifest keeps every fact it found, and its ``id`` hashes all of them. ``env_id``
answers another question, "is this the same environment?", so it hashes each software
section in a form that leaves out what says where or how an environment was put, not
what it is:

- ``python``: ``prefix`` is left out, and the interpreter's ``executable`` and
  ``paths`` are written relative to it (``{prefix}/bin/python``): two identical venvs at
  other paths are one environment. ``base_prefix`` (the Python install a venv is made
  from) stays. Of each package, ``requested`` (whether pip was asked for it by name, which
  installing from a lockfile changes for every package) is left out, and the origin is
  reduced to what was installed: a built distribution is its name and version whether
  pip took the archive from an index, a local file or a URL (reinstalling a local wheel
  from a lock's ``--find-links`` folder is recorded by pip as an index install); a VCS
  install is its tool and commit; an editable or directory install is its checkout's
  commit and dirtiness, not where the checkout lies.
- ``environment``: ``PATH`` and ``VIRTUAL_ENV`` say where a shell looks and which
  folder it activated, not what is installed: left out.

From 1.2 the interpreter's ``executable`` is left out too: ``python``, ``python3`` and
``python3.11`` in one venv (names or links of one interpreter) are one environment, and
the interpreter is what the rest of the section says (version, implementation, build,
``base_prefix``, ``paths``).

Manifests of schema 1.0 hash the sections as they are; :func:`identity_sections` is
applied only from 1.1, and each manifest by its own revision's rule (see
docs/manifest.md). :func:`rule` names the revision whose rule a version follows.
"""

from __future__ import annotations

from typing import Any, Mapping

# Variables of the environment section that describe the shell, not the environment.
SHELL_VARIABLES = frozenset({"PATH", "VIRTUAL_ENV"})
PREFIX = "{prefix}"
_ARCHIVE_KINDS = frozenset({"index", "file", "url"})


# The newest identity rule (the schema's minor version that brought it).
NEWEST_RULE = 2


def rule(schema_version: str) -> int:
    """Which identity rule a manifest of ``schema_version`` is hashed by: 0 (1.0, the
    sections as they are), 1 (1.1, the identity form) or 2 (1.2, without the
    interpreter's name). A later minor than envcap knows follows the newest rule."""
    parts = schema_version.split(".")
    try:
        if int(parts[0]) != 1:
            return 0
        return min(int(parts[1]) if len(parts) > 1 else 0, NEWEST_RULE)
    except ValueError:
        return 0


def applies(schema_version: str) -> bool:
    """Whether manifests of ``schema_version`` hash the identity form (1.1 and later)."""
    return rule(schema_version) >= 1


def identity_sections(sections: Mapping[str, Any], revision: int = NEWEST_RULE) -> dict[str, Any]:
    """The sections as ``env_id`` hashes them under rule ``revision`` (1 or later);
    sections without an identity form as they are."""
    out = dict(sections)
    python = sections.get("python")
    if isinstance(python, Mapping):
        out["python"] = python_identity(python, revision)
    environment = sections.get("environment")
    if isinstance(environment, Mapping) and isinstance(environment.get("variables"), Mapping):
        variables = {k: v for k, v in environment["variables"].items() if k not in SHELL_VARIABLES}
        out["environment"] = {**environment, "variables": variables}
    return out


def python_identity(python: Mapping[str, Any], revision: int = NEWEST_RULE) -> dict[str, Any]:
    prefix = python.get("prefix")
    out = {k: v for k, v in python.items() if k not in ("prefix", "executable", "paths", "packages")}
    if revision < 2:
        # 1.1 kept the name the interpreter was started by; 1.2 leaves it out, since
        # python, python3 and python3.11 (or any link to it) are one interpreter.
        out["executable"] = _relative(python.get("executable"), prefix)
    if "paths" in python:
        paths = python.get("paths")
        out["paths"] = [_relative(p, prefix) for p in paths] if isinstance(paths, list) else paths
    if "packages" in python:
        packages = python.get("packages")
        out["packages"] = [package_identity(p) for p in packages] if isinstance(packages, list) else packages
    return out


def package_identity(record: Any) -> Any:
    if type(record) is not dict and not isinstance(record, Mapping):  # the type test first: it is 20x cheaper
        return record
    out = {k: v for k, v in record.items() if k not in ("requested", "origin")}
    origin = record.get("origin")
    out["origin"] = origin_identity(origin) if type(origin) is dict or isinstance(origin, Mapping) else origin
    return out


def origin_identity(origin: Mapping[str, Any]) -> dict[str, Any]:
    kind = origin.get("kind")
    if kind in _ARCHIVE_KINDS:
        return {"kind": "archive"}
    if kind == "vcs":
        return {"kind": "vcs", "vcs": origin.get("vcs"), "commit": origin.get("commit")}
    if kind in ("editable", "directory"):
        git = origin.get("git")
        state = {"commit": git.get("commit"), "dirty": git.get("dirty")} if isinstance(git, Mapping) else None
        return {"kind": kind, "git": state}
    return dict(origin)


def _relative(path: Any, prefix: Any) -> Any:
    if not (isinstance(path, str) and isinstance(prefix, str) and prefix):
        return path
    base = prefix.rstrip("/")
    if path == base:
        return PREFIX
    if base and path.startswith(base + "/"):
        return PREFIX + path[len(base):]
    return path
