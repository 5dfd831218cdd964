"""Intermediate images of a bisect: the good environment's image plus a subset of package
changes, in one layer.

The layer is one ``RUN``: the subset's new wheels are fetched from a loopback server
(:mod:`envcap.builder.serve`, as a build's private files are) into a temporary folder,
installed with pip with no index (so pip resolves only against what the subset brings
and what the image has: a subset that needs a change it does not carry fails), removed
packages uninstalled, ``pip check`` run, and the folder removed. A failing step is a
subset pip cannot install, and the bisect skips it.

These images are never recorded in the store's images table: they belong to no env.
They are tagged ``localhost/envcap-bisect:<hash of base and subset>`` and removed when
the bisect ends.
"""

from __future__ import annotations

import hashlib
import shlex
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..pins.errors import BuildError
from ..builder.serve import serve
from .changes import BisectError, Change

Progress = Callable[[str], None]
INDEX = "https://pypi.org/simple"


@dataclass(frozen=True, slots=True)
class Step:
    image: str | None  # None: pip could not install the subset
    error: str | None = None


def image_name(base: str, subset: Sequence[Change]) -> str:
    key = hashlib.sha256("\n".join([base, *(c.text for c in subset)]).encode()).hexdigest()[:16]
    return f"localhost/envcap-bisect:{key}"


def dockerfile(base: str, python: str, subset: Sequence[Change], *, index_url: str = INDEX) -> str:
    """The one-layer Dockerfile that applies ``subset`` to ``base``."""
    wheels = [Path(c.wheel).name for c in subset if c.bad is not None and c.wheel]
    from_index = [f"{c.name}=={c.bad}" for c in subset if c.bad is not None and not c.wheel]
    local = [f"{c.name}=={c.bad}" for c in subset if c.bad is not None and c.wheel]
    removed = [c.name for c in subset if c.bad is None]
    pip = f"PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 {shlex.quote(python)} -m pip"
    lines = ['set -e', 'd=$(mktemp -d)']
    for name in wheels:
        url = f"http://127.0.0.1:${{ENVCAP_SERVER_PORT}}/wheels/{name}"
        lines.append(f"{shlex.quote(python)} -c 'import sys, urllib.request; "
                     f"urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \"{url}\" \"$d/{name}\"")
    wanted = local + from_index
    if wanted:
        where = '--no-index --find-links "$d"' if not from_index else \
            f'--find-links "$d" --index-url {shlex.quote(index_url)}'
        lines.append(f"{pip} install -q {where} " + " ".join(shlex.quote(w) for w in wanted))
    if removed:
        lines.append(f"{pip} uninstall -q -y " + " ".join(shlex.quote(r) for r in removed))
    lines += [f"{pip} check", 'rm -rf "$d"']
    body = "; \\\n    ".join(lines)
    return f"FROM {base}\nARG ENVCAP_SERVER_PORT\nRUN {body}\n"


def build(engine: Any, base: str, python: str, subset: Sequence[Change], *, progress: Progress,
          index_url: str = INDEX) -> Step:
    """Build the image of ``base`` + ``subset``; a :class:`Step` without an image when pip refused."""
    name = image_name(base, subset)
    served = {}
    for c in subset:
        if c.bad is not None and c.wheel:
            path = Path(c.wheel)
            if not path.is_file():
                raise BisectError(f"the wheel of {c.name} {c.bad} ({c.wheel}) is gone: put it back to bisect")
            served[f"wheels/{path.name}"] = path
    with tempfile.TemporaryDirectory(prefix="envcap-bisect-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile(base, python, subset, index_url=index_url))
        try:
            if served:
                with serve(served) as port:
                    engine.build(context, name, {"ENVCAP_SERVER_PORT": str(port)}, progress)
            else:
                engine.build(context, name, {"ENVCAP_SERVER_PORT": "0"}, progress)
        except BuildError as exc:
            if "refused the build" in str(exc):
                raise BisectError(str(exc)) from exc
            return Step(None, _why(str(exc)))
    return Step(name)


def _why(log: str) -> str:
    """The line of a failed step's log that says why pip refused the subset."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if "has requirement" in line or "requires" in line or line.startswith("ERROR") or "does not serve" in line:
            return line[:500]
    return (lines[-1] if lines else "the build failed")[:500]
