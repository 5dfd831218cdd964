"""A manifest's lock rendered into a Dockerfile and its build context, deterministically.

``Dockerfile.base`` (at the top of the repository) is the skeleton every image shares;
``images/steps/*.sh`` are the fixed scripts of each kind of step. Like repo2docker's
buildpacks, each ecosystem (:mod:`envcap.ecosystems`) contributes steps, walked in layer
order, slow and stable layers first: OS packages, then conda, then the Python
environment and its packages; then the environment variables. The same manifest, base
and options give byte-identical output.

Nothing from the manifest is ever parsed by a shell: each RUN is exec form, running
one of envcap's own scripts (``bash /usr/share/envcap/steps/STEP.sh ARG...``, copied from
``images/steps``) whose arguments are values
that passed :mod:`envcap.pins.validate`, or lockfiles copied into the image. Captured
environment values become ``ENV`` only when allow-listed.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .. import ecosystems
from ..core.manifest import Manifest
from ..ecosystems.build import LOCK_DIR, Step
from ..pins import validate as v
from .base import images_dir
from .lock import Lock

STEPS_DIR = "/usr/share/envcap/steps"
LABEL_ENV_ID = "dev.envcap.env-id"
# Captured variables that may become ENV in an image: they shape what runs there and
# are harmless to repeat. Anything else (LD_PRELOAD, PYTHONPATH, credentials...) stays
# out unless the user allow-lists it (--env NAME).
DEFAULT_ENV_ALLOW = ("PATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ", "PYTHONHASHSEED", "PYTHONNOUSERSITE",
                     "PYTHONUTF8")


@dataclass(frozen=True, slots=True)
class Rendered:
    dockerfile: str
    files: Mapping[str, str]  # build-context files beside the Dockerfile
    wheels: Mapping[str, str] = field(default_factory=dict)  # served file name -> path on this machine
    notes: tuple[str, ...] = ()  # what this Dockerfile will not reproduce, known before building
    carried: Mapping[str, str] = field(default_factory=dict)  # served path -> git bundle on this machine

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Dockerfile").write_text(self.dockerfile, encoding="utf-8")
        for name, text in self.files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text, encoding="utf-8")


@cache
def _template(name: str) -> str:
    folder = images_dir()
    path = folder / name if (folder / name).is_file() else folder.parent / name
    return path.read_text(encoding="utf-8")


def _run(step: str, *args: str) -> str:
    """A RUN of envcap's script for ``step`` in exec form; ``args`` are checked values."""
    return "RUN " + json.dumps(["/bin/bash", f"{STEPS_DIR}/{step}.sh", *args])


def _copy(names: Iterable[str], dest: str) -> str:
    return "COPY " + json.dumps([*names, dest + "/"])


def _quoted(value: str) -> str:
    """A Dockerfile double-quoted word: no expansion, no escapes left for the parser."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def render(manifest: Manifest, lock: Lock, base_ref: str, *, env_allow: Iterable[str] = DEFAULT_ENV_ALLOW,
           tag: str | None = None) -> Rendered:
    steps: list[str] = []
    files: dict[str, str] = {}
    notes: list[str] = [u.text() + " (not installed)" for u in lock.unlocked]
    for name in ecosystems.ECOSYSTEMS:
        part = ecosystems.build_part(name).steps(manifest, lock)
        steps += [line for step in part.steps for line in _step_lines(step)]
        files.update(part.files)
        notes += part.notes
    used = [json.loads(line[4:])[1].rsplit("/", 1)[1] for line in steps if line.startswith("RUN [")]
    if used:
        # envcap's step scripts, fixed text that takes manifest values only as arguments.
        for name in ["prologue.sh", *used]:
            files[f"envcap-steps/{name}"] = _template(f"steps/{name}")
        steps = ["# envcap's build steps (fixed scripts; manifest values reach them only as arguments).",
                 _copy(["envcap-steps/"], STEPS_DIR)] + steps
    steps += _env_steps(manifest, env_allow, notes)
    labels = _labels(manifest, base_ref, tag)
    text = string.Template(_template("Dockerfile.base")).substitute(
        env_id=manifest.env_id, base=base_ref, labels=labels, steps="\n".join(steps))
    wheels = {Path(p.local_file).name: p.local_file for p in lock.pip_hashed if p.local_file}
    carried = {f"git/{p.name}.bundle": p.carried for p in lock.pip_vcs if p.carried}
    carried.update({f"git/editable-{p.name}.bundle": p.carried for p in lock.pip_editable if p.carried})
    carried.update({f"git/editable-{p.name}.patch": p.patch for p in lock.pip_editable if p.patch})
    return Rendered(text, dict(sorted(files.items())), dict(sorted(wheels.items())), tuple(notes),
                    dict(sorted(carried.items())))


def _step_lines(step: Step) -> list[str]:
    lines = [f"# {step.comment}"]
    if step.copy:
        lines.append(_copy(step.copy, LOCK_DIR))
    return lines + [_run(step.script, *step.args)]


def _env_steps(manifest: Manifest, allow: Iterable[str], notes: list[str]) -> list[str]:
    variables = (manifest.sections.get("environment") or {}).get("variables") or {}
    allowed = set(allow)
    lines = []
    left_out = []
    for name in sorted(variables):
        if name not in allowed:
            left_out.append(v.terminal_safe(name, 80))
            continue
        key = v.env_name(f"sections.environment.variables.{name}", name)
        value = v.env_value(f"sections.environment.variables.{name}", variables[name])
        lines.append(f"ENV {key}={_quoted(value)}")
    if left_out:
        notes.append(f"environment: {', '.join(left_out)} not set in the image (not allow-listed; --env NAME allows)")
    return (["# Environment variables, allow-listed."] + lines) if lines else []


def _labels(manifest: Manifest, base_ref: str, tag: str | None) -> str:
    name, _, digest = base_ref.partition("@")
    pairs = [
        ("org.opencontainers.image.title", f"envcap environment {manifest.env_id[7:19]}"),
        ("org.opencontainers.image.description", f"Rebuilt by envcap from env {manifest.env_id}"),
        ("org.opencontainers.image.version", manifest.env_id),
        ("org.opencontainers.image.base.name", name),
    ]
    if digest:
        pairs.append(("org.opencontainers.image.base.digest", digest))
    if tag:
        pairs.append(("org.opencontainers.image.ref.name", tag))
    pairs.append((LABEL_ENV_ID, manifest.env_id))
    return "LABEL " + " \\\n      ".join(f"{k}={_quoted(val)}" for k, val in pairs)
