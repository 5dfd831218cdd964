"""The fidelity check: capture the built image and compare it with the source manifest.

envcap must not change what it captures, and installing it into an image would add
packages to it. So the image is captured from outside: envcap's own package is
mounted read-only into a container of the image and run by the image's Python
interpreter with nothing installed, pointed at the environment's interpreter as
``--python`` would. The probes are those the source snapshot ran.

The result is complete when the image's ``env_id`` equals the source's; otherwise it
is partial, with exactly what differs, section by section.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compare.diff import changes_between, describe
from ..core.errors import ManifestError
from ..core.manifest import Manifest
from ..ecosystems.python.record import PythonSection
from ..capture.registry import all_probes
from ..pins.errors import BuildError

MOUNT = "/.envcap-capture"
# Run by the image's interpreter with nothing but the standard library and envcap's
# own package (mounted) on its path.
CAPTURE_SCRIPT = f"""\
import json, os, sys
if sys.version_info < (3, 10):
    sys.exit("envcap needs Python 3.10 or newer in the image to capture it from the inside")
sys.path.insert(0, {MOUNT!r})
args = json.loads(sys.argv[1])
from envcap.capture.collect import snapshot
python = args["python"] if args["python"] and os.path.exists(args["python"]) else None
manifest = snapshot(python=python, select=args["select"], files_only=args.get("files_only", False))
sys.stdout.write(manifest.to_json(indent=None))
"""
# Finds the first interpreter that exists and runs the capture with it; no manifest
# value is parsed by this shell, all arrive as arguments.
_LAUNCH = ('script=$1 args=$2; shift 2; for p in "$@"; do if [ -x "$p" ]; then exec "$p" -B -c "$script" "$args"; '
           'fi; done; echo "envcap: no Python interpreter in the image ($*)" >&2; exit 3')


@dataclass(frozen=True, slots=True)
class Fidelity:
    source_env_id: str
    image_env_id: str
    differences: tuple[str, ...]
    pinned: str = ""  # how the OS packages were chosen (--pin-os), in words
    unpinned: tuple[str, ...] = ()  # the differences that are OS packages the build did not pin

    @property
    def complete(self) -> bool:
        return self.source_env_id == self.image_env_id

    @property
    def status(self) -> str:
        return "complete" if self.complete else "partial"

    def lines(self) -> list[str]:
        if self.complete:
            return [f"fidelity: complete: the image captures as env {self.image_env_id}, the same as its manifest"]
        out = [f"fidelity: PARTIAL: the image captures as env {self.image_env_id}, not {self.source_env_id}; "
               f"{len(self.differences)} difference(s):"]
        out += [f"  {d}" for d in self.differences if d not in self.unpinned]
        if self.unpinned:
            out.append(f"  and {len(self.unpinned)} in OS packages the build did not pin (OS packages pinned: "
                       f"{self.pinned}; --pin-os all pins every one):")
            out += [f"    {d}" for d in self.unpinned]
        elif self.pinned:
            out.append(f"  (OS packages pinned: {self.pinned})")
        return out


def capture_args(source: Manifest) -> tuple[list[str], dict[str, Any]]:
    """The interpreters to try, and the snapshot arguments that mirror the source's.

    A source captured from a file tree (``--root``) is compared with the image read the
    same way, files only: a live capture would add what no tree shows (compilers, the
    environment, build flags) and call the build partial for it.
    """
    python = source.record(PythonSection)
    executable = python.executable if python else None
    base = python.base_prefix if python else None
    candidates = [c for c in (f"{base}/bin/python3" if base else None, "/usr/bin/python3", "/usr/local/bin/python3",
                              "/opt/conda/bin/python3", executable) if c]
    known = {p.name for p in all_probes()}
    ran = source.observed.get("probes")
    select = sorted(n for n in ran if n in known) if isinstance(ran, dict) and ran else []
    from_tree = source.observed.get("root") not in (None, "/")
    args = {"python": None if from_tree else executable, "select": select, "files_only": from_tree}
    return list(dict.fromkeys(candidates)), args


def capture_image(engine: Any, image: str, source: Manifest) -> Manifest:
    import envcap

    package = str(Path(envcap.__file__).resolve().parent)
    candidates, args = capture_args(source)
    argv = ["/bin/sh", "-c", _LAUNCH, "envcap-capture", CAPTURE_SCRIPT, json.dumps(args), *candidates]
    out = engine.run(image, argv, [(package, f"{MOUNT}/envcap")])
    try:
        return Manifest.from_json(out, source=f"the capture of {image}")
    except ManifestError as exc:
        raise BuildError(f"capturing the built image gave no manifest: {exc}") from exc


def compare(source: Manifest, image: Manifest, *, left: Sequence[str] = (), pinned: str = "") -> Fidelity:
    """The image against its manifest; ``left`` names the OS packages the build did not pin
    (--pin-os), whose differences are told apart from the others."""
    changes = changes_between(source, image, layers=["software"])
    names = set(left)
    unpinned = tuple(describe(c, "manifest", "image") for c in changes
                     if c.section == "system" and c.package is not None and str(c.package).split(":")[0] in names)
    return Fidelity(source.env_id, image.env_id, tuple(describe(c, "manifest", "image") for c in changes),
                    pinned=pinned, unpinned=unpinned)


def check(engine: Any, image: str, source: Manifest, *, left: Sequence[str] = (),
          pinned: str = "") -> tuple[Fidelity, Manifest]:
    captured = capture_image(engine, image, source)
    return compare(source, captured, left=left, pinned=pinned), captured


def summarize(differences: Sequence[str], limit: int = 20) -> list[str]:
    shown = list(differences[:limit])
    if len(differences) > limit:
        shown.append(f"... and {len(differences) - limit} more")
    return shown
