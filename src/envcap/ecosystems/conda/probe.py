"""Conda packages of one environment, read from its conda-meta records.

conda, mamba, micromamba and pixi all write one JSON record per installed package to
``<prefix>/conda-meta/<name>-<version>-<build>.json``; reading those is what
``conda list`` does, without the seconds conda takes to start.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ...core.errors import ProbeError
from ...probes import SOFTWARE, Finding, Probe
from ...probes.context import Context

# Where installers put a base environment, for trees whose environment is unknown
# (--root): the installers' defaults, and the prefixes common container images use.
COMMON_PREFIXES = (
    "/opt/conda",
    "/opt/miniconda3",
    "/opt/miniconda",
    "/opt/miniforge3",
    "/opt/mambaforge",
    "/opt/anaconda3",
    "/opt/micromamba",
    "/root/miniconda3",
    "/root/miniforge3",
    "/root/mambaforge",
    "/root/anaconda3",
    "/usr/local",
)
# The same installers' defaults in a user's home directory.
HOME_PREFIXES = ("miniconda3", "miniforge3", "mambaforge", "anaconda3", "micromamba")

FIELDS = ("name", "version", "build", "channel", "url", "sha256", "md5", "subdir")
# Fields that can carry a credential: private channels put a token in the path
# (/t/<token>/) or the authority (user:password@).
URL_FIELDS = frozenset({"channel", "url"})


def collect(ctx: Context) -> Finding:
    prefix = find_prefix(ctx)
    if prefix is None:
        return Finding(None)
    meta = f"{prefix}/conda-meta"
    packages = [read_record(ctx, path) for path in ctx.glob(meta, "*.json")]
    section = {
        "prefix": prefix,
        "packages": sorted((redact_record(ctx, p) for p in packages), key=lambda p: p["name"]),
    }
    return Finding(section)


def find_prefix(ctx: Context) -> str | None:
    """The environment to record: the one asked for, the active one, Python's, a common one."""
    for prefix in _candidate_prefixes(ctx):
        if ctx.is_dir(f"{prefix}/conda-meta"):
            return prefix
    return None


def _candidate_prefixes(ctx: Context) -> list[str]:
    explicit = ctx.conda_prefix or ctx.env.get("CONDA_PREFIX")
    if explicit:
        # Asked for, or active: that environment or nothing, never a guessed other one.
        return [explicit.rstrip("/") or "/"]
    pythons = [ctx.python] if ctx.python else _default_pythons(ctx)
    # A venv's bin/python links into its base environment, so both ends are tried.
    candidates = [_prefix_of(p) for python in pythons for p in (python, ctx.realpath(python))]
    if not ctx.live and not ctx.python:
        # A file tree has no active environment: look where installers put one.
        homes = [f"{home}/{name}" for home in ctx.glob("/home", "*") for name in HOME_PREFIXES]
        candidates.extend([*COMMON_PREFIXES, *homes])
    return candidates


def _default_pythons(ctx: Context) -> list[str]:
    """On the live machine: envcap's own Python, then the one a user gets on PATH."""
    if not ctx.live:
        return []
    on_path = (ctx.which("python3"), ctx.which("python"))
    return [sys.executable, *(p for p in on_path if p)]


def _prefix_of(python: str) -> str:
    return os.path.dirname(os.path.dirname(python)) or "/"


def read_record(ctx: Context, path: str) -> dict[str, Any]:
    text = ctx.read_text(path)
    if text is None:
        raise ProbeError(f"{path}: cannot be read")
    return parse_record(text, path)


def parse_record(text: str, source: str) -> dict[str, Any]:
    """The recorded fields of one conda-meta record; absent ones are ``None``."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ProbeError(f"{source}: not a conda package record (no name)")
    out = {}
    for field in FIELDS:
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            raise ProbeError(f"{source}: field {field!r} is {type(value).__name__}, not a string")
        out[field] = value
    return out


def redact_record(ctx: Context, record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ctx.redactor.text(v) if k in URL_FIELDS and isinstance(v, str) else v for k, v in record.items()
    }


PROBE = Probe(
    name="conda",
    section="conda",
    layer=SOFTWARE,
    tags=frozenset({"conda", "packages"}),
    collect=collect,
    reads_files=True,
)
