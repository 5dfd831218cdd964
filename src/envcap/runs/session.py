"""The life of one run, shared by ``envcap run`` and ``envcap.start_run``.

1. :meth:`Session.begin`: the code is read (git state and uncommitted bytes, held in
   memory) and a first record, marked unfinished, is stored. Nothing slow happens
   here: this is what the command waits on before it starts.
2. :meth:`Session.capture`: while the command runs, the environment snapshot is taken
   and stored, the uncommitted bytes are stored, the data is fingerprinted, and a
   fuller unfinished record replaces the first.
3. :meth:`Session.finish`: metrics and what the script reported through the API are
   read from the run directory, outputs are hashed, and the finished record replaces
   the unfinished one in one transaction.

If the process dies between two steps, the store holds the last whole record, marked
unfinished; it never holds part of one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.canonical import canonical_bytes
from ..core.errors import EnvcapError
from ..core.redact import Redactor
from . import rundir
from .data import HashCache, dataset_entry, fingerprint, hash_bytes, lineage_step
from .git import Capture, caps_from_env
from .git import capture as capture_git
from .params import ParamSet, ParamsFile, params_id
from ..core.run import FINISHED, UNFINISHED, RunRecord, new_run_id, utc_now
from .seeds import determinism_state
from ..store.runs import Note, put_record
from ..store.base import StoreBackend

LISTING_CAP = 64 << 20  # bytes of a directory's file listing kept with a run (about 600,000 files)
_NOT_STORED_YET = "unfinished: the uncommitted changes, untracked files and parameter files are not stored yet"


@dataclass
class Plan:
    """Everything a run is started with, validated before anything is written."""

    argv: list[str]
    cwd: str
    mode: str
    params: ParamSet
    params_files: list[ParamsFile] = field(default_factory=list)
    seed: int | None = None
    named_seeds: dict[str, int] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)  # {"path", "name", "split", "version", "lineage"}
    outputs: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    python: dict[str, Any] = field(default_factory=dict)  # {"executable", "from"}
    resource_interval: float | None = None  # seconds between samples; None: ENVCAP_RESOURCE_INTERVAL


class Session:
    """One run being recorded into ``store``."""

    def __init__(self, store: StoreBackend, plan: Plan, redactor: Redactor, *, run_dir: str | None = None) -> None:
        from ..core.version import __version__

        self.store = store
        self.plan = plan
        self.redactor = redactor
        self.id = new_run_id()
        self.dir = run_dir or os.path.join(str(store.path), "runs", self.id)
        self._started = time.monotonic()
        self._git: Capture | None = None
        self._objects: list[tuple[str, int, str]] = []
        self._problems: list[str] = []
        self._cache: HashCache | None = None
        self._params_entries: list[dict[str, Any]] = []
        self._numerics: dict[str, Any] | None = None  # what the script's process reported (.numerics)
        argv = redactor.argv(plan.argv)
        self.record = RunRecord(
            id=self.id,
            state=UNFINISHED,
            mode=plan.mode,
            argv=tuple(argv),
            command=shlex.join(argv),
            cwd=plan.cwd,
            host=os.uname().nodename,
            started_at=utc_now(),
            labels={redactor.text(k): redactor.value(k, v) for k, v in plan.labels.items()},
            python=dict(plan.python),
            params=plan.params.params(),
            params_id=params_id(plan.params.params()),
            params_files=(),
            seeds=self._initial_seeds(),
            envcap_version=__version__,
        )

    # -- 1. before the command starts ------------------------------------------------------

    def begin(self) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            from ..core.errors import StoreError

            raise StoreError(f"cannot make the run's directory {self.dir}: {exc.strerror}; "
                             "nothing was recorded and the command was not started") from exc
        file_cap, total_cap = caps_from_env()
        self._git = capture_git(self.plan.cwd, redactor=self.redactor, cache=self._hash_cache(),
                                file_cap=file_cap, total_cap=total_cap)
        git = dict(self._git.state)
        params_files = self._params_files(git)
        for entry in params_files:
            if entry.get("withheld") and entry.get("repo_path"):
                self._git.withhold(entry["repo_path"], entry["withheld"])
        self._params_entries = params_files
        cwd = git["cwd"] if git.get("in_repository") else self.plan.cwd
        # The first record names no object that is not stored yet: the content is stored,
        # and named, while the command runs (see capture).
        self.record = self.record.evolve(
            cwd=cwd,
            git={**git, "diff": None, "untracked": []},
            params_files=tuple({**e, "object": None} for e in params_files),
            problems=(_NOT_STORED_YET,),
        )
        notes = [Note(utc_now(), self.redactor.free_text(n)) for n in self.plan.notes]
        self._put(notes=notes)

    def _params_files(self, git: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        root = git.get("root")
        for pf in self.plan.params_files:
            full = os.path.realpath(pf.path)
            entry: dict[str, Any] = {"path": str(pf.path), "format": pf.format, "sha256": pf.digest,
                                     "size": len(pf.content), "repo_path": None, "object": None}
            if root and (full + os.sep).startswith(os.path.realpath(root) + os.sep):
                entry["repo_path"] = os.path.relpath(full, os.path.realpath(root))
            text = pf.content.decode("latin-1")
            if self.plan.params.has_secret_names(pf.values):
                entry["withheld"] = "withheld: it sets a parameter whose name marks a secret"
            elif self.redactor.may_contain_secret(text) and self.redactor.text(text) != text:
                # A URL with credentials, a password in a connection string: the copy
                # would keep what the recorded values have redacted (size and hash stay).
                entry["withheld"] = "withheld: the file looks like it holds a secret"
            else:
                entry["object"] = pf.digest
            out.append(entry)
        return out

    def _initial_seeds(self) -> dict[str, Any]:
        return {
            "global": self.plan.seed,
            "named": dict(sorted(self.plan.named_seeds.items())),
            "set": [],
            "determinism": determinism_state(),
        }

    # -- 2. while the command runs ---------------------------------------------------------

    def capture(self, python: str | None, *, manifest: Any = None) -> None:
        """Store the code's bytes, take and store the environment, fingerprint the data.

        ``manifest`` is a snapshot (or the error that stopped one) taken already, in
        another thread; without it the snapshot is taken here.
        """
        assert self._git is not None
        problems = list(self._problems)
        try:
            self._objects += self._git.store_blobs(self.store)
            for pf in self.plan.params_files:
                if any(e["object"] == pf.digest for e in self._params_entries):
                    oid = self.store.put_object(pf.content)
                    self._objects.append((oid, len(pf.content), "run-file"))
        except EnvcapError as exc:
            problems.append(f"the code's uncommitted content could not be stored: {exc}")
        if manifest is None:
            manifest = self.take_snapshot(python)
        self._editable_diffs(manifest, problems)
        env = self._store_manifest(manifest, problems)
        data = self._fingerprint_data(problems)
        self._keep_listings(data)
        self.record = self.record.evolve(git=dict(self._git.state), params_files=tuple(self._params_entries),
                                         data=tuple(data), problems=tuple(problems), **env)
        self._put()

    def _editable_diffs(self, manifest: Any, problems: list[str]) -> None:
        """Keep the uncommitted changes of the other checkouts the environment installed
        editable (a sibling library), as the run's own diff is kept."""
        from ..core.manifest import Manifest
        from .git import editable_diffs

        assert self._git is not None
        if not isinstance(manifest, Manifest):
            return
        extra = Capture({}, None)
        entries = editable_diffs(manifest, self._git.root, self.redactor, extra)
        if not entries:
            return
        try:
            self._objects += extra.store_blobs(self.store)
        except EnvcapError as exc:
            problems.append(f"the uncommitted changes of an editable checkout could not be stored: {exc}")
            return
        self._git.state["editables"] = entries

    def take_snapshot(self, python: str | None, env: dict[str, str] | None = None) -> Any:
        """The environment's manifest, or the error that kept it from being taken."""
        from ..capture.collect import snapshot

        try:
            # The run's own labels (--label) describe the node it ran on as well: its
            # snapshot carries them, with the node's labels from the configuration.
            return snapshot(python=python, labels={**self.plan.labels, "run": self.id}, env=env, native=True)
        except EnvcapError as exc:
            return exc

    def note_problem(self, text: str) -> None:
        self._problems.append(text)
        self.record = self.record.evolve(problems=(*self.record.problems, text))

    def _store_manifest(self, manifest: Any, problems: list[str]) -> dict[str, Any]:
        if isinstance(manifest, BaseException):
            problems.append(f"the environment could not be captured: {manifest}")
            return {}
        try:
            snapshot_id = self.store.add(manifest)
        except EnvcapError as exc:
            problems.append(f"the environment could not be stored: {exc}")
            return {}
        for unknown in manifest.unknowns:
            if unknown.probe == "python":
                problems.append(f"the environment's python could not be described: {unknown.error}")
        return {"manifest": manifest.id, "snapshot": snapshot_id, "env_id": manifest.env_id,
                "platform_id": manifest.platform_id}

    def _fingerprint_data(self, problems: list[str]) -> list[dict[str, Any]]:
        out = [dict(d) for d in self.record.data]
        for spec in self.plan.data:
            try:
                fp = fingerprint(spec["path"], self._hash_cache())
            except EnvcapError as exc:
                problems.append(f"data {spec['path']}: {exc}")
                continue
            out.append(dataset_entry(spec["path"], fp, name=spec.get("name"), split=spec.get("split"),
                                     version=spec.get("version"), lineage=spec.get("lineage") or (),
                                     source=spec.get("source", "cli")))
        return out

    # -- 3. when the command has ended -------------------------------------------------------

    def finish(self, exit_code: int | None, signal_name: str | None = None, *, monitor: Any = None) -> RunRecord:
        """``monitor`` (a :class:`.resources.Monitor`) is stopped here, and what it saw recorded."""
        ended = utc_now()
        duration = round(time.monotonic() - self._started, 3)
        problems = list(self.record.problems)
        resources = self._resources(monitor, problems) if monitor is not None else None
        points, metric_problems = rundir.read_metrics(self.dir)
        problems += metric_problems
        for point in points:
            # A metric's name is the script's text, stored in the log and as a key of the
            # record's metrics: it goes through the redactor like every other text.
            point["name"] = self.redactor.text(point["name"])
        params = self.plan.params
        seeds = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                 for k, v in self.record.seeds.items()}
        data = [dict(d) for d in self.record.data]
        notes = self._apply_events(params, seeds, data, problems)
        metrics_log = None
        if points:
            log = rundir.metrics_log_bytes(points)
            oid = self.store.put_object(log)
            self._objects.append((oid, len(log), "run-metrics"))
            metrics_log = {"object": oid, "points": len(points)}
        self._keep_listings(data)
        data = self._link_producers(self._recheck_data(data, problems))
        outputs = self._hash_outputs(problems)
        self._keep_listings(outputs)
        self.record = self.record.evolve(
            state=FINISHED, ended_at=ended, duration_s=duration, exit_code=exit_code, signal=signal_name,
            params=params.params(), params_id=params_id(params.params()), seeds=seeds, data=tuple(data),
            outputs=tuple(outputs), metrics=rundir.summarize(points), metrics_log=metrics_log,
            problems=tuple(p for p in problems if not p.startswith("unfinished:")),
            resources=resources, numerics=self._numerics,
        )
        self._put(notes=notes)
        self._cleanup()
        return self.record

    def _resources(self, monitor: Any, problems: list[str]) -> dict[str, Any] | None:
        try:
            monitor.stop()
            summary = monitor.summary()
            samples = monitor.samples_bytes()
        except Exception as exc:  # noqa: BLE001 - bookkeeping never loses the record
            problems.append(f"resource usage could not be summarised: {type(exc).__name__}: {exc}")
            return None
        problems += monitor.problems
        summary["object"] = None
        if samples is not None:
            try:
                summary["object"] = self.store.put_object(samples)
                self._objects.append((summary["object"], len(samples), "run-resources"))
            except EnvcapError as exc:
                problems.append(f"the resource samples could not be stored: {exc}")
        return summary

    def _apply_events(self, params: ParamSet, seeds: dict[str, Any], data: list[dict[str, Any]],
                      problems: list[str]) -> list[Note]:
        notes: list[Note] = []
        for number, event, problem in rundir.read_lines(self.dir, rundir.EVENTS):
            if problem:
                problems.append(problem)
                continue
            try:
                kind = event["kind"]
                if kind == "param":
                    said = params.set(event["name"], event["value"], event["source"], used=bool(event.get("used")))
                    if said:
                        problems.append(said)
                elif kind == "seed_global":
                    self._check_seed(seeds, event["value"], problems)
                    seeds["global"] = event["value"]
                elif kind == "seed_named":
                    seeds["named"][event["name"]] = event["value"]
                elif kind == "seed_set":
                    entry = {k: event.get(k) for k in ("library", "seed", "how")}
                    if entry not in seeds["set"]:
                        seeds["set"].append(entry)
                elif kind == "determinism":
                    seeds["determinism"] = event["state"]
                elif kind == "data":
                    data.append(event["entry"])
                elif kind == "data_step":
                    self._add_step(data, event["dataset"], event["step"], problems)
                elif kind == "note":
                    notes.append(Note(event["time"], self.redactor.free_text(event["text"])))
                elif kind == "config":
                    self._store_config(event, problems)
                elif kind == "numerics":
                    self._numerics = self._checked_numerics(event["facts"], number, problems)
                elif kind == "label":
                    self.record = self.record.evolve(labels={
                        **self.record.labels,
                        self.redactor.text(event["key"]): self.redactor.value(event["key"], event["value"])})
                else:
                    problems.append(f"{rundir.EVENTS} line {number}: unknown kind {kind!r}")
            except (KeyError, TypeError, EnvcapError) as exc:
                problems.append(f"{rundir.EVENTS} line {number}: {exc}")
        seeds["named"] = dict(sorted(seeds["named"].items()))
        return notes

    def _checked_numerics(self, facts: Any, number: int, problems: list[str]) -> dict[str, Any] | None:
        from .numerics import checked

        kept = checked(facts)
        if kept is None:
            problems.append(f"{rundir.EVENTS} line {number}: the numeric runtime's facts are malformed")
            return None
        kept["settings"] = {k: self.redactor.value(k, v) for k, v in kept["settings"].items()}
        return kept

    def _store_config(self, event: dict[str, Any], problems: list[str]) -> None:
        """A composed config the script reported (already redacted there; scrubbed again)."""
        from ..core.canonical import digest

        content = self.redactor.text(str(event["text"])).encode("utf-8")
        oid = self.store.put_object(content)
        self._objects.append((oid, len(content), "run-file"))
        entry = {"name": str(event["name"]), "format": str(event.get("format") or "text"),
                 "sha256": digest(content), "size": len(content), "object": oid,
                 "overrides": [self.redactor.text(str(o)) for o in event.get("overrides") or ()]}
        kept = [c for c in self.record.configs if c.get("name") != entry["name"]]
        self.record = self.record.evolve(configs=(*kept, entry))

    def _check_seed(self, seeds: dict[str, Any], value: Any, problems: list[str]) -> None:
        """Say when the script seeds otherwise than it was told, naming who told it what."""
        current = seeds.get("global")
        if current in (None, value):
            return
        if self.plan.seed is not None and current == self.plan.seed:
            problems.append(f"the script seeded with {value}, not the --seed {current} it was given")
        else:
            problems.append(f"the script seeded twice: with {current}, then with {value} (recorded: the last)")

    @staticmethod
    def _add_step(data: list[dict[str, Any]], name: str, step: Any, problems: list[str]) -> None:
        for entry in reversed(data):
            if entry.get("name") == name:
                entry["lineage"] = [*entry.get("lineage", []), lineage_step(step)]
                return
        problems.append(f"a lineage step names no recorded dataset: {name}")

    def _recheck_data(self, data: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
        """Fingerprint the data again (from the cache, unless it changed) after the run."""
        out = []
        for entry in data:
            path = entry.get("abspath")
            if path and os.path.exists(path):
                try:
                    now = fingerprint(path, self._hash_cache())
                except EnvcapError:
                    now = None
                if now is not None and now.fingerprint != entry.get("fingerprint"):
                    entry = {**entry, "changed_during_run": True}
                    problems.append(f"data {entry.get('path')} changed while the run was going on "
                                    f"(recorded {entry.get('fingerprint')}, after it {now.fingerprint})")
            out.append(entry)
        return out

    def _link_producers(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Data whose bytes an earlier run wrote as an output begins its lineage there."""
        from ..store.runs import producers

        out = []
        for entry in data:
            fp = entry.get("fingerprint")
            known = {(s.get("name"), (s.get("params") or {}).get("output")) for s in entry.get("lineage") or ()
                     if s.get("kind") == "output"}
            steps = [{"kind": "output", "name": run_id, "params": {"output": path}, "seed": None}
                     for run_id, path in (producers(self.store, fp, self.id) if fp else [])
                     if (run_id, path) not in known]
            out.append({**entry, "lineage": steps + list(entry.get("lineage") or ())} if steps else entry)
        return out

    def _keep_listings(self, entries: list[dict[str, Any]]) -> None:
        """Store the file listing of each directory (its id is the fingerprint), so that an
        audit can name the files that changed. A listing over the cap is not kept."""
        from ..store.runs import has_object
        from .data import listing

        for entry in entries:
            fp, path = entry.get("fingerprint"), entry.get("abspath")
            if entry.get("kind") != "dir" or entry.get("listing") or not fp or not path:
                continue
            if not has_object(self.store, fp):
                try:
                    data = listing(path, self._hash_cache())
                except EnvcapError:
                    continue
                if len(data) > LISTING_CAP or hash_bytes(data) != fp:
                    continue  # Too large to keep, or the tree changed since it was fingerprinted.
                self._objects.append((self.store.put_object(data), len(data), "run-listing"))
            entry["listing"] = fp

    def _hash_outputs(self, problems: list[str]) -> list[dict[str, Any]]:
        outputs = []
        for path in self.plan.outputs:
            full = os.path.join(self.plan.cwd, path)
            if not os.path.exists(full):
                outputs.append({"path": path, "missing": True})
                problems.append(f"output {path} does not exist after the run")
                continue
            try:
                fp = fingerprint(full, self._hash_cache())
            except EnvcapError as exc:
                problems.append(f"output {path}: {exc}")
                continue
            outputs.append({"path": path, "abspath": os.path.abspath(full), **fp.to_dict()})
        return outputs

    # -- storing ---------------------------------------------------------------------------

    def _hash_cache(self) -> HashCache:
        if self._cache is None:
            self._cache = HashCache(self.store)
        return self._cache

    def _put(self, notes: list[Note] = ()) -> None:  # type: ignore[assignment]
        record = self.record
        text = canonical_bytes(record.to_dict()).decode("utf-8")
        if self.redactor.may_contain_secret(text):
            # A safety net behind the redaction of each part: whatever still looks like a
            # secret in the record as a whole is scrubbed before it is stored.
            record = RunRecord.from_dict(self.redactor.deep(record.to_dict()))
            self.record = record
        objects, self._objects = self._objects, []
        put_record(self.store, record, notes=notes, objects=objects)

    def _cleanup(self) -> None:
        """Remove the run directory's files that are now in the store (and it, if empty)."""
        for name in (rundir.METRICS, rundir.EVENTS):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
            os.rmdir(os.path.dirname(self.dir))
        except OSError:
            pass  # Files the script left there stay, and so does the folder.

    def discard_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
