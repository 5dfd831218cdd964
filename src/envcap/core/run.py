"""The run record: one immutable JSON object per state of a run, and run ids.

A run is stored as a record object in the content-addressed store. It is written when
the run starts, marked ``unfinished``, and replaced (the index is pointed at a new
object, in one transaction) as more is known and once more when the run ends. A reader
therefore sees one whole record or another, never part of one. Notes are the one thing
added to a finished run; they live beside the record, not in it (see :mod:`.store`).

Run ids are ULIDs: 26 characters of Crockford base32, the first ten the start time in
milliseconds, so ids sort by time. They are upper case and contain letters outside
hexadecimal in practice, which keeps them apart from manifest ids (``sha256:`` and
lower-case hex).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterator, Mapping

from .errors import StoreError

SCHEMA = "envcap.run/1"
UNFINISHED = "unfinished"
FINISHED = "finished"

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
RUN_PREFIX = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4,26}$")


def new_run_id(now_ms: int | None = None) -> str:
    """A fresh ULID: 48 bits of milliseconds since the epoch, then 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def run_id_time(run_id: str) -> float:
    """The start time (seconds since the epoch) encoded in a run id."""
    ms = 0
    for ch in run_id[:10]:
        ms = ms * 32 + CROCKFORD.index(ch)
    return ms / 1000


def looks_like_run_ref(ref: str) -> bool:
    """Whether ``ref`` could be a run id or a prefix of one."""
    return bool(RUN_PREFIX.match(ref))


def utc_now() -> str:
    """The time now, as recorded in runs: ISO 8601, UTC, milliseconds."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One hyperparameter: its name, its JSON value, and where it came from."""

    name: str
    value: Any
    source: str  # "default", "user" or "derived"
    # What the command line or a parameter file gave when the script reported that it
    # used another value (``run.log_args``): ``{"value", "source"}``. Written only when
    # set, so that every other record keeps its bytes.
    given: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "value": self.value, "source": self.source}
        if self.given is not None:
            out["given"] = dict(self.given)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One state of a run. Nested parts are plain JSON values, read-only by convention."""

    id: str
    state: str
    mode: str  # "cli": started by `envcap run`; "api": by envcap.start_run in a script
    argv: tuple[str, ...]
    command: str
    cwd: str
    host: str | None
    started_at: str
    ended_at: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    manifest: str | None = None
    snapshot: str | None = None
    env_id: str | None = None
    platform_id: str | None = None
    python: Mapping[str, Any] = field(default_factory=dict)
    git: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    params_id: str = ""
    params_files: tuple[Mapping[str, Any], ...] = ()
    seeds: Mapping[str, Any] = field(default_factory=dict)
    data: tuple[Mapping[str, Any], ...] = ()
    outputs: tuple[Mapping[str, Any], ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    metrics_log: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()
    envcap_version: str = ""
    # Set on a run made by ``envcap rebuild``: ``{"of": ORIGINAL_RUN_ID, "verdict": ...}``.
    # Written only when set, so that records of every other run keep their bytes.
    reproduction: Mapping[str, Any] | None = None
    # What the run's process tree used (see envcap.runs.resources): peaks, means, totals,
    # and the id of the stored samples. Written only when set, so that records made
    # before it existed keep their bytes and still load.
    resources: Mapping[str, Any] | None = None
    # Configs a framework composed for the run (Hydra's, see envcap.integrations.hydra):
    # {"name", "format", "sha256", "size", "object", ...}. Written only when there are any.
    configs: tuple[Mapping[str, Any], ...] = ()
    # The numeric runtime the run's own process used (BLAS and OpenMP libraries through
    # threadpoolctl, their kernels and threads, the settings that choose them; see
    # envcap.runs.numerics): platform facts, hashed into no id. Written only when known.
    numerics: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

    @property
    def status(self) -> str:
        """A word for people: unfinished, ok, failed or killed."""
        if not self.finished:
            return UNFINISHED
        if self.signal:
            return "killed"
        return "ok" if self.exit_code == 0 else "failed"

    def param_values(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.params}

    def evolve(self, **changes: Any) -> RunRecord:
        """A new record with some fields changed (this one is left as it is)."""
        return replace(self, **changes)

    def objects(self) -> Iterator[tuple[str, str, str]]:
        """Every stored object this record refers to, as (id, kind, what)."""
        if self.snapshot:
            yield self.snapshot, "snapshot", "environment snapshot"
        if self.manifest:
            yield self.manifest, "manifest", "environment manifest"
        diff = self.git.get("diff") or {}
        if diff.get("object"):
            yield diff["object"], "run-diff", "uncommitted diff"
        for item in self.git.get("untracked") or ():
            if item.get("object"):
                yield item["object"], "run-file", f"untracked file {item['path']}"
        for item in self.git.get("editables") or ():
            if (item.get("diff") or {}).get("object"):
                yield item["diff"]["object"], "run-diff", f"uncommitted diff of {item.get('path')}"
        for item in self.params_files:
            if item.get("object"):
                yield item["object"], "run-file", f"parameter file {item['path']}"
        if self.metrics_log and self.metrics_log.get("object"):
            yield self.metrics_log["object"], "run-metrics", "metrics log"
        for item in self.configs:
            if item.get("object"):
                yield item["object"], "run-file", f"composed config {item.get('name')}"
        if self.resources and self.resources.get("object"):
            yield self.resources["object"], "run-resources", "resource samples"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "state": self.state,
            "mode": self.mode,
            "argv": list(self.argv),
            "command": self.command,
            "cwd": self.cwd,
            "host": self.host,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "labels": dict(self.labels),
            "manifest": self.manifest,
            "snapshot": self.snapshot,
            "env_id": self.env_id,
            "platform_id": self.platform_id,
            "python": dict(self.python),
            "git": dict(self.git),
            "params": [p.to_dict() for p in self.params],
            "params_id": self.params_id,
            "params_files": [dict(p) for p in self.params_files],
            "seeds": dict(self.seeds),
            "data": [dict(d) for d in self.data],
            "outputs": [dict(o) for o in self.outputs],
            "metrics": dict(self.metrics),
            "metrics_log": dict(self.metrics_log) if self.metrics_log else None,
            "problems": list(self.problems),
            "envcap_version": self.envcap_version,
            **({"reproduction": dict(self.reproduction)} if self.reproduction is not None else {}),
            **({"resources": dict(self.resources)} if self.resources is not None else {}),
            **({"configs": [dict(c) for c in self.configs]} if self.configs else {}),
            **({"numerics": dict(self.numerics)} if self.numerics is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "run record") -> RunRecord:
        """Validate and load a record; an error names the field that is wrong."""
        if not isinstance(data, dict):
            raise StoreError(f"{source}: a run record is a JSON object, not {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise StoreError(f"{source}: not a run record of a schema this envcap reads ({SCHEMA})")
        get = _Getter(data, source)
        run_id = get.value("id", str)
        if not RUN_ID.match(run_id):
            raise StoreError(f"{source}: id {run_id!r} is not a run id")
        state = get.value("state", str)
        if state not in (UNFINISHED, FINISHED):
            raise StoreError(f"{source}: state must be {UNFINISHED!r} or {FINISHED!r}, not {state!r}")
        params = []
        for i, item in enumerate(get.value("params", list)):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str) and "value" in item
                    and item.get("source") in ("default", "user", "derived")):
                raise StoreError(f"{source}: params[{i}] must have a name, a value and a source "
                                 "(default, user or derived)")
            given = item.get("given")
            if given is not None and not (isinstance(given, dict) and "value" in given):
                raise StoreError(f"{source}: params[{i}].given must be an object with a value")
            params.append(Param(name=item["name"], value=item["value"], source=item["source"], given=given))
        return cls(
            id=run_id,
            state=state,
            mode=get.value("mode", str),
            argv=tuple(get.value("argv", list)),
            command=get.value("command", str),
            cwd=get.value("cwd", str),
            host=get.optional("host", str),
            started_at=get.value("started_at", str),
            ended_at=get.optional("ended_at", str),
            duration_s=get.optional("duration_s", (int, float)),
            exit_code=get.optional("exit_code", int),
            signal=get.optional("signal", str),
            labels=MappingProxyType(get.value("labels", dict)),
            manifest=get.optional("manifest", str),
            snapshot=get.optional("snapshot", str),
            env_id=get.optional("env_id", str),
            platform_id=get.optional("platform_id", str),
            python=MappingProxyType(get.value("python", dict)),
            git=MappingProxyType(get.value("git", dict)),
            params=tuple(params),
            params_id=get.value("params_id", str),
            params_files=tuple(get.records("params_files")),
            seeds=MappingProxyType(get.value("seeds", dict)),
            data=tuple(get.records("data")),
            outputs=tuple(get.records("outputs")),
            metrics=MappingProxyType(get.value("metrics", dict)),
            metrics_log=get.optional("metrics_log", dict),
            problems=tuple(get.value("problems", list)),
            envcap_version=get.value("envcap_version", str),
            reproduction=_reproduction(get.optional("reproduction", dict), source),
            resources=_resources(get.optional("resources", dict), source),
            configs=tuple(get.records("configs")) if data.get("configs") is not None else (),
            numerics=_numerics(get.optional("numerics", dict), source),
        )


def _reproduction(value: dict[str, Any] | None, source: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not (isinstance(value.get("of"), str) and RUN_ID.match(value["of"])):
        raise StoreError(f"{source}: reproduction.of must be the id of the run reproduced")
    return MappingProxyType(value)


def _numerics(value: dict[str, Any] | None, source: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value.get("settings"), dict) or not isinstance(value.get("libraries", []), list):
        raise StoreError(f"{source}: numerics must hold settings (an object) and libraries (a list)")
    return MappingProxyType(value)


def _resources(value: dict[str, Any] | None, source: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    oid = value.get("object")
    if oid is not None and not isinstance(oid, str):
        raise StoreError(f"{source}: resources.object must be the id of the stored samples")
    return MappingProxyType(value)


class _Getter:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def value(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.data:
            raise StoreError(f"{self.source}: missing field {key}")
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StoreError(f"{self.source}: field {key} has the wrong type ({type(value).__name__})")
        return value

    def optional(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if self.data.get(key) is None:
            return None
        return self.value(key, kind)

    def records(self, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.value(key, list)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise StoreError(f"{self.source}: {key}[{i}] must be a JSON object")
        return items


_OBJECT_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_untrusted(record: RunRecord, source: str) -> None:
    """Refuse a record from elsewhere (a bundle, an artifact, a shared store) whose
    references could lead envcap astray: an object id that is not one, a file path that
    is absolute, not normalised or climbs out of its root, an entry of the wrong type.

    Checked when the record comes in; the places that use a path check it again
    (:func:`envcap.core.files.safe_join`).
    """
    from .files import UnsafePathError, safe_relpath

    def oid(value: Any, where: str) -> None:
        if value is not None and not (isinstance(value, str) and _OBJECT_ID.match(value)):
            raise StoreError(f"{source}: {where} must be an object id (sha256:<64 hex>), not {str(value)[:80]!r}")

    def items(value: Any, where: str) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
            raise StoreError(f"{source}: {where} must be a list of JSON objects")
        return list(value)

    def relpath(value: Any, where: str) -> None:
        try:
            safe_relpath(value, what=f"{source}: {where}")
        except UnsafePathError as exc:
            raise StoreError(str(exc)) from None

    def text(value: Any, where: str, *, optional: bool = False) -> None:
        if (value is None and optional) or isinstance(value, str):
            return
        raise StoreError(f"{source}: {where} must be a string, not {type(value).__name__}")

    git = record.git
    diff = git.get("diff")
    if diff is not None:
        if not isinstance(diff, Mapping):
            raise StoreError(f"{source}: git.diff must be a JSON object")
        oid(diff.get("object"), "git.diff.object")
    for i, item in enumerate(items(git.get("editables"), "git.editables")):
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise StoreError(f"{source}: git.editables[{i}].path must be an absolute path")
        text(item.get("commit"), f"git.editables[{i}].commit")
        text(item.get("name"), f"git.editables[{i}].name")
        entry = item.get("diff")
        if not isinstance(entry, Mapping):
            raise StoreError(f"{source}: git.editables[{i}].diff must be a JSON object")
        oid(entry.get("object"), f"git.editables[{i}].diff.object")
    for i, item in enumerate(items(git.get("untracked"), "git.untracked")):
        relpath(item.get("path"), f"git.untracked[{i}].path")
        oid(item.get("object"), f"git.untracked[{i}].object")
        if item.get("kind") not in (None, "file", "symlink"):
            raise StoreError(f"{source}: git.untracked[{i}].kind must be file or symlink")
    for i, item in enumerate(record.params_files):
        text(item.get("path"), f"params_files[{i}].path")
        if item.get("repo_path") is not None:
            relpath(item.get("repo_path"), f"params_files[{i}].repo_path")
        oid(item.get("object"), f"params_files[{i}].object")
    for i, item in enumerate(record.configs):
        text(item.get("name"), f"configs[{i}].name")
        text(item.get("format"), f"configs[{i}].format", optional=True)
        relpath(f"{item['name']}.{item.get('format') or 'txt'}", f"configs[{i}].name")
        oid(item.get("object"), f"configs[{i}].object")
    for key, entries in (("data", record.data), ("outputs", record.outputs)):
        for i, item in enumerate(entries):
            text(item.get("path"), f"{key}[{i}].path")
            text(item.get("abspath"), f"{key}[{i}].abspath", optional=True)
    for key, value in (("metrics_log", record.metrics_log), ("resources", record.resources)):
        if value is not None:
            oid(value.get("object"), f"{key}.object")
    text(record.cwd, "cwd")
