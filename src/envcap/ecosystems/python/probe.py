"""The Python interpreter and every distribution it can import.

Live, the interpreter is envcap's own or the one named by ``--python``; the latter is
asked about itself in a child process running only the standard library (see
``_pyinfo``), so nothing is imported into it or into envcap. Under ``--root`` nothing
can run: the tree's Python library folders are found by their names and every
``*.dist-info`` in them is read.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ...probes import SOFTWARE, Finding, Probe
from ...probes.context import Context
from . import dists

# Where Python library folders live in the trees we meet: distribution packages,
# /usr/local builds, virtual environments and conda prefixes under /opt, /srv, /home
# and /root, and the official python images' /usr/local.
_TREE_PREFIX_GLOBS = (
    "/usr", "/usr/local", "/opt/*", "/opt/*/*", "/opt/*/envs/*", "/srv/*", "/srv/*/*",
    "/root/*", "/root/.local", "/home/*/*", "/home/*/.local", "/app", "/app/*", "/venv",
    "/workspace/*",
)
_LIB_DIR = re.compile(r"^(python|pypy)(\d+(?:\.\d+)?)t?$")


def collect(ctx: Context) -> Finding:
    if ctx.live:
        info = _interpreter_info(ctx)
        site_dirs = [p for p in info.pop("path") if os.path.isdir(p)]
        return Finding(_section(ctx, info, site_dirs))
    return _collect_tree(ctx)


def _interpreter_info(ctx: Context) -> dict[str, Any]:
    if ctx.python is None:
        from . import _pyinfo

        return _pyinfo.info()
    executable = ctx.python
    with open(os.path.join(os.path.dirname(__file__), "_pyinfo.py"), encoding="utf-8") as fh:
        source = fh.read()
    result = ctx.run([executable, "-c", source])
    if result is None:
        raise FileNotFoundError(f"no Python interpreter at {executable}")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{executable} could not describe itself: {last}")
    try:
        return dict(json.loads(result.stdout))
    except ValueError as exc:
        raise RuntimeError(f"{executable} printed something that is not JSON: {exc}") from exc


def _section(ctx: Context, info: dict[str, Any], site_dirs: list[str]) -> dict[str, Any]:
    build = {k: ctx.redactor.text(v) for k, v in info.get("build", {}).items()}
    return {
        "version": info["version"],
        "implementation": info["implementation"],
        "executable": info["executable"],
        "prefix": info["prefix"],
        "base_prefix": info.get("base_prefix"),
        "build": build,
        "paths": site_dirs,
        "packages": dists.scan(ctx, site_dirs),
    }


# -- file trees ------------------------------------------------------------------------


def _collect_tree(ctx: Context) -> Finding:
    prefixes = _tree_prefixes(ctx)
    if not prefixes:
        return Finding(None)
    # The prefix with the most distributions is the environment the tree is about
    # (a venv or conda env beside the distribution's own python); its folders come
    # first, and every other library folder found follows.
    counted = sorted(prefixes, key=lambda p: (-sum(len(ctx.listdir(d)) for d in p[2]), p[0]))
    primary_prefix, version, _ = counted[0]
    site_dirs = [d for _, _, dirs in counted for d in dirs]
    info: dict[str, Any] = {
        "version": _venv_version(ctx, primary_prefix) or version,
        "implementation": "PyPy" if "pypy" in site_dirs[0] else "CPython",
        "executable": _tree_executable(ctx, primary_prefix),
        "prefix": primary_prefix,
        "base_prefix": None,
        "build": {},
    }
    return Finding(_section(ctx, info, site_dirs))


def _tree_prefixes(ctx: Context) -> list[tuple[str, str, list[str]]]:
    """(prefix, python version, library folders) for each Python prefix in the tree."""
    if ctx.python:
        candidates = [os.path.dirname(os.path.dirname(ctx.python))]
    else:
        candidates = sorted({p for pattern in _TREE_PREFIX_GLOBS for p in _expand(ctx, pattern)})
    found = []
    for prefix in candidates:
        for lib in ("lib", "lib64"):
            for name in ctx.listdir(f"{prefix}/{lib}"):
                match = _LIB_DIR.match(name)
                if not match:
                    continue
                dirs = [
                    f"{prefix}/{lib}/{name}/{leaf}"
                    for leaf in ("site-packages", "dist-packages")
                    if ctx.is_dir(f"{prefix}/{lib}/{name}/{leaf}")
                ]
                if dirs:
                    found.append((prefix, _full_version(ctx, f"{prefix}/{lib}", match.group(2)), dirs))
    return found


def _full_version(ctx: Context, lib: str, version: str) -> str:
    """Debian keeps packages in lib/python3/dist-packages: take X.Y from the stdlib folder."""
    if "." in version:
        return version
    stdlibs = [n for n in ctx.listdir(lib) if n.startswith(f"python{version}.") and ctx.exists(f"{lib}/{n}/os.py")]
    return max(stdlibs, key=lambda n: [int(x) for x in n[6:].split(".") if x.isdigit()], default=f"python{version}")[6:]


def _expand(ctx: Context, pattern: str) -> list[str]:
    paths = ["/"]
    for part in pattern.strip("/").split("/"):
        if part == "*":
            paths = [f"{p.rstrip('/')}/{n}" for p in paths for n in ctx.listdir(p) if ctx.is_dir(f"{p.rstrip('/')}/{n}")]
        else:
            paths = [f"{p.rstrip('/')}/{part}" for p in paths if ctx.is_dir(f"{p.rstrip('/')}/{part}")]
    return paths


def _venv_version(ctx: Context, prefix: str) -> str | None:
    for line in (ctx.read_text(f"{prefix}/pyvenv.cfg") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("version", "version_info"):
            return value.strip()
    return None


def _tree_executable(ctx: Context, prefix: str) -> str | None:
    for name in ("python3", "python"):
        if ctx.exists(f"{prefix}/bin/{name}"):
            return f"{prefix}/bin/{name}"
    return None


PROBE = Probe(
    name="python",
    section="python",
    layer=SOFTWARE,
    tags=frozenset({"python", "packages"}),
    collect=collect,
)
