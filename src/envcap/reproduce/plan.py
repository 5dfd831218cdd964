"""What a rebuild needs, read from the run's record and checked before anything runs.

Nothing here starts a container or writes a file: the command, the parameters and seeds
it is given, the environment variables it sees, where its code and data are mounted,
and whether the data is still what the run read.

**Environment.** The command sees the variables the run's snapshot kept (the
allow-listed ones: ``PATH``, ``PYTHONHASHSEED``, ``OMP_NUM_THREADS``, ``CUDA_*``...; see
:mod:`envcap.probes.environment`) with their recorded values, and nothing else of this
machine's. A value recorded as ``[REDACTED]`` is never restored: secrets are given
explicitly (``--secret-env NAME``), from the caller's environment, when the rebuild runs.
A run without a snapshot of its environment falls back on the determinism switches
recorded with its seeds. Variables that were not recorded (any name outside the
allow-list) are not set: a script that depends on one will not reproduce, which is the
point of the check.

**Paths.** The code is mounted where the run's repository was (``git.root``), so that
paths the script prints or records come out the same; data at the path recorded for it.
A recorded path that would hide a part of the image (``/usr``, the Python prefix) is
replaced by ``/workspace``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.manifest import Manifest
from ..core.redact import REDACTED
from ..core.run import RunRecord
from .errors import RebuildError
from .preflight import Preflight
from ..store.base import StoreBackend

# Where envcap puts its own things in the container, out of the way of any image.
CONTAINER_LIB = "/.envcap/lib"  # envcap's package, for scripts that import it
RUN_DIR = "/.envcap/run"  # ENVCAP_RUN_DIR: the script's metrics and events
OUT_DIR = "/.envcap/out"  # the environment captured inside, and the command's timings
CA_MOUNT = "/.envcap/ca.pem"  # --ca-bundle, for installing the run's own package editable
BACKEND_MOUNT = "/.envcap/build-backend"  # the build backend of the run's own package (backend.py)
CODE_FALLBACK = "/workspace"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Mounting over one of these (or over a directory holding one) would hide the image.
_PROTECTED = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
              "/sys", "/usr", "/var/lib", "/.envcap", "/.envcap-capture")


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildOptions:
    """How to rebuild; the CLI's options, one for one."""

    registry: str | None = None  # where to find (or build and push) the image
    base: str | None = None  # the base image for a build
    ca_bundle: Path | None = None  # a proxy's CA bundle for a build
    data: tuple[str, ...] = ()  # NAME=PATH: read this dataset from PATH
    allow_data_drift: bool = False
    secret_env: tuple[str, ...] = ()  # variables passed from the caller's environment
    rtol: float = 0.0
    atol: float = 0.0
    ignore: tuple[str, ...] = ()  # --ignore NAME: metrics not expected to reproduce
    tol: tuple[tuple[str, float], ...] = ()  # --tol NAME=REL: a metric's own relative tolerance
    engine: str = "docker"  # or "podman"
    repo: str | None = None  # a repository holding the run's commit
    no_gpu: bool = False  # run a GPU run on the CPU
    pin_os: tuple[str, ...] = ("auto",)  # for a build: which OS packages to pin (as envcap build --pin-os)
    # An image to run in instead of the env's (envcap bisect's intermediate images, which
    # no env owns): a local name or REPOSITORY@sha256:...
    image: str | None = None
    # Kept in the new run's ``reproduction`` beside the verdict: why it was rebuilt
    # ({"revalidation": ROUND} or {"bisect": {...}}).
    purpose: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in ("docker", "podman"):
            raise RebuildError(f"--engine {self.engine}: use docker or podman")
        for name, value in (("--rtol", self.rtol), ("--atol", self.atol)):
            if not (value >= 0.0 and value != float("inf")):
                raise RebuildError(f"{name} must be a finite number of at least 0, not {value}")
        for name, rel in self.tol:
            if not name or not (rel >= 0.0 and rel != float("inf")):
                raise RebuildError(f"--tol {name}={rel}: give NAME=REL, REL a finite number of at least 0")
        both = sorted(set(self.ignore) & {n for n, _ in self.tol})
        if both:
            raise RebuildError(f"metric {both[0]} is given both --ignore and --tol: choose one")


@dataclass(frozen=True, slots=True)
class Original:
    """The run to rebuild: its newest record and the manifest of its environment."""

    record: RunRecord
    manifest: Manifest


def load_original(store: StoreBackend, ref: str) -> Original:
    from ..store import runs as runs_store

    record = runs_store.load(store, runs_store.resolve(store, ref))
    if not record.finished:
        raise RebuildError(f"run {record.id} has not finished (or its recording was cut off): "
                           "there is nothing to compare a rebuild with")
    if not record.manifest:
        raise RebuildError(f"run {record.id} has no captured environment, so there is no image to run it in "
                           f"({'; '.join(record.problems) or 'the snapshot was not taken'})")
    return Original(record, store.get(record.manifest))


# -- the command ------------------------------------------------------------------------


def command(record: RunRecord) -> list[str]:
    """The command as recorded; refused when the recording redacted part of it."""
    argv = list(record.argv)
    if not argv:
        raise RebuildError(f"run {record.id} recorded no command")
    for i, arg in enumerate(argv):
        if REDACTED in arg:
            raise RebuildError(f"the command of run {record.id} held a secret, recorded as {REDACTED} "
                               f"(argument {i}: {arg!r}), which a rebuild cannot restore: have the script read "
                               "it from an environment variable and pass that with --secret-env NAME")
    return argv


def user_params(record: RunRecord) -> tuple[dict[str, Any], list[str]]:
    """The parameters the run was given (``ENVCAP_PARAMS``), and the secret ones left out."""
    given: dict[str, Any] = {}
    withheld: list[str] = []
    for p in record.params:
        if p.source != "user":
            continue  # defaults and derived values come from the script itself
        if p.value == REDACTED:
            withheld.append(p.name)
        else:
            given[p.name] = p.value
    return given, withheld


def seed_env(record: RunRecord) -> dict[str, str]:
    """``ENVCAP_SEED`` and ``ENVCAP_SEEDS`` as the run had them (or as it drew them)."""
    seeds = record.seeds
    out: dict[str, str] = {}
    if isinstance(seeds.get("global"), int):
        out["ENVCAP_SEED"] = str(seeds["global"])
    named = seeds.get("named")
    if isinstance(named, dict) and named:
        out["ENVCAP_SEEDS"] = json.dumps(named, sort_keys=True)
    return out


# -- the environment ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnvPlan:
    """The variables the command sees (besides envcap's own ``ENVCAP_*``)."""

    values: Mapping[str, str]  # recorded, restored as they were (plus what envcap adds)
    secrets: tuple[str, ...]  # names only: their values come from the caller at run time
    withheld: tuple[str, ...]  # recorded as secrets: not restored
    added: Mapping[str, str] = field(default_factory=dict)  # what envcap changed, and why

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "secrets": list(self.secrets), "withheld": list(self.withheld),
                "added": dict(self.added)}


def uses_api(record: RunRecord) -> bool:
    """Whether the script reported through envcap's Python API (so it imports envcap)."""
    return (record.mode == "api" or bool(record.seeds.get("set"))
            or any(p.source != "user" for p in record.params)
            or any(d.get("source") == "api" for d in record.data))


def has_envcap(manifest: Manifest) -> bool:
    return manifest.python is not None and manifest.python.package("envcap") is not None


def environment(original: Original, *, secret_names: Sequence[str] = (),
                caller_env: Mapping[str, str] | None = None) -> EnvPlan:
    record, manifest = original.record, original.manifest
    caller_env = os.environ if caller_env is None else caller_env
    section = manifest.sections.get("environment")
    recorded = section.get("variables") if isinstance(section, dict) else None
    if not isinstance(recorded, dict):
        determinism = record.seeds.get("determinism") or {}
        recorded = determinism.get("env") if isinstance(determinism, dict) else None
    values: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in sorted((recorded or {}).items()):
        if not isinstance(value, str) or not _NAME.match(name) or name.startswith("ENVCAP_"):
            continue
        if REDACTED in value:
            withheld.append(name)
        else:
            values[name] = value
    secrets: list[str] = []
    for name in secret_names:
        if not _NAME.match(name):
            raise RebuildError(f"--secret-env {name!r}: not a variable name")
        if name not in caller_env:
            raise RebuildError(f"--secret-env {name}: {name} is not set in your environment")
        if name.startswith("ENVCAP_"):
            raise RebuildError(f"--secret-env {name}: envcap sets its own ENVCAP_* variables")
        values.pop(name, None)
        if name not in secrets:
            secrets.append(name)
    added: dict[str, str] = {}
    if uses_api(record) and not has_envcap(manifest):
        parts = [p for p in values.get("PYTHONPATH", "").split(":") if p]
        if CONTAINER_LIB not in parts:
            values["PYTHONPATH"] = ":".join([*parts, CONTAINER_LIB])
            added["PYTHONPATH"] = (f"{CONTAINER_LIB} added: the script uses envcap's API and the image has no "
                                   "envcap, so envcap's own package is mounted there")
    return EnvPlan(values, tuple(secrets), tuple(w for w in withheld if w not in secrets), added)


# -- paths in the container -----------------------------------------------------------------


def hides_image(path: str, keep: Sequence[str] = ()) -> bool:
    """Whether mounting at ``path`` would hide a part of the image."""
    norm = posixpath.normpath(path)
    if not norm.startswith("/") or norm == "/":
        return True
    for protected in (*_PROTECTED, *keep):
        if not protected:
            continue
        if norm == protected or protected.startswith(norm.rstrip("/") + "/") or norm.startswith(protected + "/"):
            return True
    return False


def image_prefixes(manifest: Manifest) -> list[str]:
    """The image's own interpreter prefixes, which no mount may hide."""
    python, conda = manifest.python, manifest.conda
    prefixes = (python.prefix, python.base_prefix) if python else ()
    return [p for p in (*prefixes, conda.prefix if conda else None) if p is not None]


@dataclass(frozen=True, slots=True)
class CodePaths:
    target: str  # where the code is mounted in the container
    workdir: str  # the command's working directory there
    moved: bool  # the recorded root could not be used

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "workdir": self.workdir, "moved": self.moved}


def code_paths(original: Original) -> CodePaths:
    git = original.record.git
    root = git.get("root") if isinstance(git.get("root"), str) else None
    moved = root is None or hides_image(root, image_prefixes(original.manifest))
    target = CODE_FALLBACK if moved else posixpath.normpath(root or CODE_FALLBACK)
    cwd = original.record.cwd or "."
    workdir = posixpath.normpath(posixpath.join(target, cwd)) if not cwd.startswith("/") else target
    if not (workdir == target or workdir.startswith(target.rstrip("/") + "/")):
        workdir = target
    return CodePaths(target, workdir, moved)


def container_path(original: Original, code: CodePaths, recorded: str) -> str:
    """A path of the original run as it is in the rebuild's container."""
    root = original.record.git.get("root")
    if code.moved and isinstance(root, str) and (recorded == root or recorded.startswith(root.rstrip("/") + "/")):
        return posixpath.join(code.target, posixpath.relpath(recorded, root))
    return recorded


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataCheck:
    """One dataset of the run: where it is read from here, and whether it is what the run read."""

    name: str
    recorded_path: str
    source: str  # on this machine
    target: str  # in the container
    recorded: str
    now: str | None
    source_given: bool  # --data NAME=PATH
    by_api: bool  # recorded by the script itself (it records it again when it runs)
    entry: Mapping[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.now != self.recorded

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recorded_path": self.recorded_path, "source": self.source,
                "mounted_at": self.target, "recorded": self.recorded, "now": self.now, "same": not self.drifted,
                "given": self.source_given}


def parse_overrides(items: Sequence[str], record: RunRecord) -> dict[int, str]:
    """``--data NAME=PATH`` as {index of the dataset in the record: PATH}."""
    out: dict[int, str] = {}
    names = sorted({str(d.get("name")) for d in record.data})
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise RebuildError(f"--data {item!r} must look like NAME=PATH")
        hits = [i for i, d in enumerate(record.data) if name in (d.get("name"), d.get("path"), d.get("abspath"))]
        if not hits:
            known = ", ".join(names) if names else "none"
            raise RebuildError(f"--data {item}: run {record.id} read no dataset named {name} (its datasets: {known})")
        if len(hits) > 1 and len({record.data[i].get("abspath") for i in hits}) > 1:
            raise RebuildError(f"--data {item}: {len(hits)} datasets are named {name}; name one by its recorded path")
        for i in hits:
            out[i] = os.path.abspath(path)
    return out


def check_data(original: Original, code: CodePaths, overrides: Sequence[str], cache: Any) -> list[DataCheck]:
    """Every dataset of the run fingerprinted where it will be read from."""
    from ..core.errors import UsageError
    from ..runs.data import fingerprint

    record = original.record
    given = parse_overrides(overrides, record)
    checks: list[DataCheck] = []
    keep = image_prefixes(original.manifest)
    for i, entry in enumerate(record.data):
        name = str(entry.get("name") or entry.get("path"))
        recorded_abs = str(entry.get("abspath") or entry.get("path") or "")
        source = given.get(i, recorded_abs)
        if not source or not os.path.exists(source):
            how = "the path given" if i in given else "its recorded path"
            raise RebuildError(f"data {name}: {source or '(no path recorded)'} ({how}) does not exist on this "
                               f"machine; point at a copy with --data {name}=PATH")
        target = container_path(original, code, recorded_abs)
        if hides_image(target, keep):
            raise RebuildError(f"data {name}: its recorded path {target} would hide part of the image in the "
                               "container; this run cannot be rebuilt as recorded")
        try:
            now: str | None = fingerprint(source, cache).fingerprint
        except UsageError as exc:
            raise RebuildError(f"data {name}: {exc}") from exc
        checks.append(DataCheck(name=name, recorded_path=str(entry.get("path") or recorded_abs), source=source,
                                target=target, recorded=str(entry.get("fingerprint")), now=now,
                                source_given=i in given, by_api=entry.get("source") == "api", entry=entry))
    return checks


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """An output of the run: where the rebuild writes it, seen from here and from the container."""

    path: str  # as recorded
    host: str | None  # where to hash it after the run (None: cannot be placed)
    mount: tuple[str, str] | None  # (host dir, container dir) for an output outside the code
    recorded: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


def plan_outputs(original: Original, code: CodePaths, workspace: str, scratch: str) -> list[OutputPlan]:
    record = original.record
    root = record.git.get("root") if isinstance(record.git.get("root"), str) else None
    out: list[OutputPlan] = []
    keep = image_prefixes(original.manifest)
    for i, entry in enumerate(record.outputs):
        path = str(entry.get("path"))
        recorded_abs = entry.get("abspath")
        if not isinstance(recorded_abs, str):
            cwd_abs = posixpath.join(root, record.cwd) if root else record.cwd
            recorded_abs = posixpath.normpath(posixpath.join(cwd_abs, path))
        if root and (recorded_abs == root or recorded_abs.startswith(root.rstrip("/") + "/")):
            rel = posixpath.relpath(recorded_abs, root)
            out.append(OutputPlan(path, os.path.normpath(os.path.join(workspace, rel)), None, entry))
            continue
        is_dir = entry.get("kind") == "dir"
        mount_at = recorded_abs if is_dir else posixpath.dirname(recorded_abs)
        if hides_image(mount_at, keep):
            out.append(OutputPlan(path, None, None, entry,
                                  f"written outside the code, at {recorded_abs}, where a mount would hide the image: "
                                  "not compared"))
            continue
        host_dir = os.path.join(scratch, f"output-{i}")
        host = host_dir if is_dir else os.path.join(host_dir, posixpath.basename(recorded_abs))
        out.append(OutputPlan(path, host, (host_dir, mount_at), entry))
    return out


# -- the image and the whole plan ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageChoice:
    """The image the rebuild runs in: by digest, and how it was found (or would be built)."""

    reference: str | None  # REPOSITORY@sha256:...; None when it would be built
    how: str  # "in the store", "in the registry", "built", "would be built and pushed to ..."
    status: str | None = None  # the fidelity check's: "complete", "partial", "unchecked"
    digest: str | None = None
    differences: tuple[str, ...] | None = None  # the fidelity check's, when the store recorded it
    pulled: bool | None = None  # None: this engine was not asked
    base: str | None = None  # the base image a build would use
    notes: tuple[str, ...] = ()  # what a build made now says it could not reproduce (a substituted Python)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "how": self.how, "status": self.status}
        if self.reference is None:
            out["base"] = self.base
            return out
        out["digest"] = self.digest
        if self.differences is not None:
            out["differences"] = list(self.differences)
        if self.pulled is not None:
            out["pulled"] = self.pulled
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildPlan:
    """Everything a rebuild will do, worked out and checked before anything runs."""

    original: Original
    options: RebuildOptions
    command: tuple[str, ...]
    code: CodePaths
    env: EnvPlan
    data: tuple[DataCheck, ...]
    gpu: Preflight
    image: ImageChoice
    caveats: tuple[str, ...] = ()  # what the plan already knows will differ
    cwd: str | None = None  # where to look for the run's repository first
    editables: tuple[EditablePlan, ...] = ()  # the run's own package, installed editable in the container

    @property
    def reference(self) -> str:
        """The image by digest (a plan that runs something always has one)."""
        if self.image.reference is None:
            raise RebuildError("the image would still have to be built")  # pragma: no cover - never planned so
        return self.image.reference


# -- the run's own package, installed editable -------------------------------------------------


@dataclass(frozen=True, slots=True)
class EditablePlan:
    """A package the run's environment had installed editable from the run's own
    repository: installed again, editable, from the workspace inside the container."""

    name: str
    version: str
    python: str  # the environment's interpreter, in the image
    path: str  # the checkout in the container (the workspace, or a folder of it)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "python": self.python, "path": self.path}


def editable_installs(original: Original, code: CodePaths) -> tuple[EditablePlan, ...]:
    """The editable installs of the run's environment from its own repository.

    An image cannot hold them (their source is the run's code, at the run's commit), so
    the rebuild installs each from the workspace, which is the recorded commit with the
    recorded diff applied, at the path it was recorded at. An editable install from any
    other checkout is the image's: the build carried it like a git dependency (see
    :mod:`envcap.store.carried`) and installed it there.
    """
    from ..pins import validate as v

    python = original.manifest.sections.get("python")
    if not isinstance(python, Mapping):
        return ()
    root = original.record.git.get("root")
    root = posixpath.normpath(root) if isinstance(root, str) and root.startswith("/") else None
    prefix = python.get("prefix")
    executable = python.get("executable")
    interpreter = executable if isinstance(executable, str) and executable.startswith("/") else \
        (f"{prefix}/bin/python" if isinstance(prefix, str) else None)
    out: list[EditablePlan] = []
    for i, package in enumerate(python.get("packages") or ()):
        origin = package.get("origin") if isinstance(package, Mapping) else None
        if not isinstance(origin, Mapping) or origin.get("kind") != "editable":
            continue
        where = f"sections.python.packages[{i}]"
        name = v.python_name(f"{where}.name", package.get("name"))
        version = v.python_version(f"{where}.version", package.get("version"))
        url = origin.get("url")
        path = posixpath.normpath(url[len("file://"):]) if isinstance(url, str) and url.startswith("file:///") \
            else None
        inside = root is not None and path is not None and (path == root or path.startswith(root.rstrip("/") + "/"))
        if not inside or root is None or path is None:
            continue  # another checkout: not the run's code (the build installed it in the image)
        if interpreter is None:
            raise RebuildError(f"python package {name} {version} is installed editable, and the manifest names no "
                               "interpreter to install it with")
        here = posixpath.normpath(posixpath.join(code.target, posixpath.relpath(path, root)))
        out.append(EditablePlan(name, version, v.path("sections.python.executable", interpreter), here))
    return tuple(out)
