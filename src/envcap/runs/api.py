"""The Python API: ``envcap.start_run``, ``envcap.log_metric``, ``envcap.seed_everything``.

::

    import envcap

    with envcap.start_run(params={"lr": 0.01}, seed=7, data="data/train.csv") as run:
        seeds = run.seeds                      # seeded already; seeds.child("shuffle")
        for step in range(10):
            envcap.log_metric("loss", loss, step=step)

Inside ``envcap run`` the script attaches to the run already started (found through
``ENVCAP_RUN_DIR``) and reports into it; run on its own it records a run itself, as
``envcap run`` would have. Either way reporting is an append to a file in the run
directory: the script never waits on the store.

The API needs nothing but envcap: numpy, torch and the rest are used only if the script
imported them (see :mod:`.seeds`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from types import TracebackType
from typing import Any, Iterable, Mapping

from ..core.errors import UsageError
from . import rundir
from .seeds import Seeds, check_seed
from ..store.base import StoreBackend

_lock = threading.RLock()
_active: Run | None = None


class Dataset:
    """A dataset recorded in a run; its lineage grows with :meth:`step`."""

    def __init__(self, run: Run, entry: dict[str, Any]) -> None:
        self._run = run
        self.entry = entry

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def fingerprint(self) -> str:
        return str(self.entry["fingerprint"])

    def step(self, kind: str, name: str, *, seed: int | None = None, **params: Any) -> Dataset:
        """Record a lineage step: ``ds.step("sample", "10-percent", seed=3, fraction=0.1)``."""
        from .data import lineage_step

        step = lineage_step({"kind": kind, "name": name, "params": params, "seed": seed})
        self.entry["lineage"].append(step)
        self._run._event({"kind": "data_step", "dataset": self.name, "step": step})
        return self


class Run:
    """A run a script reports into (attached to ``envcap run``, or its own)."""

    def __init__(self, run_id: str, directory: str, *, attached: bool, session: Any = None) -> None:
        self.id = run_id
        self.dir = directory
        self.attached = attached
        self.params: dict[str, Any] = {}
        self.seeds: Seeds | None = None
        self.datasets: list[Dataset] = []
        self._session = session
        self._snapshot: threading.Thread | None = None
        self._manifest: Any = None
        self._depth = 0
        self._closed = False
        self._redactor: Any = None
        self._given: set[str] = set()  # names the user set (a default does not replace them)
        self._monitor: Any = None  # resource sampling of a run of its own (see .resources)

    # -- reporting --------------------------------------------------------------------

    def _event(self, event: dict[str, Any]) -> None:
        if self._closed:
            raise UsageError(f"run {self.id} is finished: nothing more can be recorded in it")
        rundir.append(self.dir, rundir.EVENTS, event)

    def log_param(self, name: str, value: Any, source: str = "user") -> None:
        """Record one parameter; ``source`` is ``user``, ``default`` or ``derived``."""
        self._log_param(name, value, source, used=False)

    def _log_param(self, name: str, value: Any, source: str, *, used: bool) -> None:
        from .params import SOURCES, normalize

        if source not in SOURCES:
            raise UsageError(f"parameter {name}: source must be one of {', '.join(SOURCES)}, not {source!r}")
        plain = normalize(value, name)
        if source == "default" and name in self.params and name in self._given and not used:
            return
        self.params[name] = plain
        if source != "default":
            self._given.add(name)
        event = {"kind": "param", "name": name, "value": self._redacted(name, plain), "source": source}
        if used:
            event["used"] = True
        self._event(event)

    def log_params(self, params: Mapping[str, Any], source: str = "user") -> None:
        """Record many parameters; nested mappings become dotted names (``optim.lr``)."""
        from .params import flatten

        for name, value in flatten(params).items():
            self.log_param(name, value, source)

    def log_args(self, namespace: Any, parser: Any = None) -> None:
        """Record an ``argparse`` namespace; with its parser, values left at their
        defaults are recorded as ``default``.

        These are the values the script runs with, so they win over ``--param``: a
        value given there that the script did not use is recorded beside it (``given``)
        and named among the run's problems.
        """
        for name, value in sorted(vars(namespace).items()):
            is_default = parser is not None and parser.get_default(name) == value
            self._log_param(name, value, "default" if is_default else "user", used=True)

    def log_metric(self, name: str, value: Any, step: int | None = None, *, reproducible: bool = True,
                   rtol: float | None = None) -> None:
        """Record one value of a metric. ``reproducible=False`` declares it not expected to
        reproduce (a timing): a rebuild lists it apart and its verdict stands on the other
        metrics; ``rtol`` gives it its own relative tolerance there."""
        try:
            line = rundir.metric_line(name, value, step, reproducible=reproducible, rtol=rtol)
        except TypeError as exc:
            raise UsageError(f"metric {name!r}: {exc}") from exc
        if self._closed:
            raise UsageError(f"run {self.id} is finished: nothing more can be recorded in it")
        rundir.append(self.dir, rundir.METRICS, line)

    def log_dataset(self, path: str | os.PathLike[str], *, name: str | None = None, split: str | None = None,
                    version: str | None = None, lineage: Iterable[Mapping[str, Any]] = ()) -> Dataset:
        """Fingerprint a file or directory now and record it as data the run read."""
        from .data import dataset_entry, fingerprint

        path = os.fspath(path)
        fp = fingerprint(path, _hash_cache())
        entry = dataset_entry(path, fp, name=name, split=split, version=version, lineage=list(lineage),
                              source="api")
        self._event({"kind": "data", "entry": entry})
        dataset = Dataset(self, entry)
        self.datasets.append(dataset)
        return dataset

    def seed_everything(self, seed: int | None = None, *, deterministic: bool = False) -> Seeds:
        self.seeds = _seed(self, seed, deterministic)
        return self.seeds

    def note(self, text: str) -> None:
        import time

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._event({"kind": "note", "time": stamp, "text": str(text)})

    def label(self, key: str, value: str) -> None:
        from ..capture.collect import parse_labels

        parse_labels([f"{key}={value}"])
        self._event({"kind": "label", "key": key, "value": str(value)})

    @property
    def seed(self) -> int | None:
        """The global seed given to ``envcap run --seed`` or set here, if any."""
        if self.seeds is not None:
            return self.seeds.seed
        raw = os.environ.get("ENVCAP_SEED") if self.attached else None
        return check_seed(raw, "ENVCAP_SEED") if raw else None

    # -- the life of a run of its own ---------------------------------------------------

    def _redacted(self, name: str, value: Any) -> Any:
        if self._redactor is None:
            from ..core.redact import default_redactor
            from .params import ParamSet

            self._redactor = ParamSet(default_redactor())
        return self._redactor.redact(name, value)

    def finish(self, exit_code: int | None = 0) -> None:
        """End a run of the script's own (a run attached to ``envcap run`` ends with the command)."""
        global _active
        with _lock:
            if self._closed:
                return
            self._record_numerics()
            self._closed = True
            if _active is self:
                _active = None
        if self.attached or self._session is None:
            return
        try:
            if self._snapshot is not None:
                self._snapshot.join()
            self._session.capture(None, manifest=self._manifest)
            self._session.finish(exit_code, monitor=self._monitor)
        finally:
            for name in ("ENVCAP_RUN_ID", "ENVCAP_RUN_DIR"):
                if os.environ.get(name) in (self.id, self.dir):
                    del os.environ[name]
            self._session.store.close()

    def _record_numerics(self) -> None:
        """The numeric runtime this process used (BLAS, OpenMP, their kernels, threads and
        settings; see :mod:`.numerics`), read here, where the script loaded it."""
        from .numerics import observe

        try:
            self._event({"kind": "numerics", "facts": observe()})
        except (OSError, ValueError, UsageError):
            pass  # a run directory gone or a value JSON cannot hold: the facts stay unknown

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with _lock:
            self._depth -= 1
            if self._depth > 0:
                return
        if exc_type is None:
            code: int | None = 0
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        elif issubclass(exc_type, KeyboardInterrupt):
            code = 130
        else:
            code = 1
        self.finish(code)

    def __repr__(self) -> str:
        return f"<envcap run {self.id}{' (attached)' if self.attached else ''}>"


def start_run(params: Mapping[str, Any] | None = None, *, seed: int | None = None,
              data: Any = None, defaults: Mapping[str, Any] | None = None,
              labels: Mapping[str, str] | None = None, note: str | None = None,
              deterministic: bool = False) -> Run:
    """The run this script reports into: ``envcap run``'s, one already started, or a new one.

    ``params`` are recorded as given by the user, ``defaults`` as defaults (a value the
    user gave wins), ``seed`` seeds everything (:func:`seed_everything`), and ``data``
    (a path, a list of paths, or a mapping of names to paths) is fingerprinted.
    """
    global _active
    with _lock:
        run = _active or _attach() or _own_run()
        _active = run
        run._depth += 1
    try:
        if defaults:
            run.log_params(defaults, "default")
        if params:
            run.log_params(params, "user")
        for key, value in (labels or {}).items():
            run.label(key, value)
        if note:
            run.note(note)
        if seed is not None:
            run.seed_everything(seed, deterministic=deterministic)
        for name, path in _datasets(data):
            run.log_dataset(path, name=name)
    except BaseException:
        with _lock:
            run._depth -= 1
        raise
    return run


def active_run() -> Run | None:
    """The run being reported into, attaching to ``envcap run``'s if there is one."""
    global _active
    with _lock:
        if _active is None:
            _active = _attach()
        return _active


def log_metric(name: str, value: Any, step: int | None = None, *, reproducible: bool = True,
               rtol: float | None = None) -> None:
    """Record one value of a metric (``step`` optional) in the active run; ``reproducible=False``
    or ``rtol=REL`` declare how a rebuild compares it (:meth:`Run.log_metric`)."""
    run = active_run()
    if run is None:
        raise UsageError("no run to record the metric in: use `with envcap.start_run():` "
                         "or run the script with `envcap run -- python ...`")
    run.log_metric(name, value, step, reproducible=reproducible, rtol=rtol)


def seed_everything(seed: int | None = None, *, deterministic: bool = False) -> Seeds:
    """Seed random, numpy, torch, TensorFlow (and PYTHONHASHSEED for child processes).

    The seed is the one given, else the run's own (``start_run(seed=...)``), else
    ``envcap run --seed``'s, else a fresh random one (which is recorded, so the run can
    still be repeated). Named seeds given to ``envcap run --seed NAME=N`` are returned by
    ``seeds.child(NAME)`` as given. ``deterministic=True`` also turns on
    the frameworks' deterministic modes. Recorded in the active run, if there is one.
    """
    run = active_run()
    seeds = _seed(run, seed, deterministic)
    if run is not None:
        run.seeds = seeds
    return seeds


def _seed(run: Run | None, seed: int | None, deterministic: bool) -> Seeds:
    from .seeds import seed_everything as seed_all

    if seed is None and run is not None and run.seeds is not None:
        seed = run.seeds.seed  # Seeded already (start_run(seed=...)): the same seed again.
    if seed is None:
        raw = os.environ.get("ENVCAP_SEED")
        seed = check_seed(raw, "ENVCAP_SEED") if raw else int.from_bytes(os.urandom(4), "big")
    recorder = None
    if run is not None:
        def recorder(kind: str, event: dict[str, Any]) -> None:
            if kind == "determinism":
                run._event({"kind": kind, "state": event})
            else:
                run._event({"kind": kind, **event})
    given: dict[str, int] = {}
    raw_named = os.environ.get("ENVCAP_SEEDS")
    if raw_named:
        try:
            given = {str(k): int(v) for k, v in json.loads(raw_named).items()}
        except (ValueError, TypeError, AttributeError):
            given = {}
    return seed_all(seed, deterministic=deterministic, recorder=recorder, named=given)


def _datasets(data: Any) -> list[tuple[str | None, str]]:
    if data is None:
        return []
    if isinstance(data, (str, os.PathLike)):
        return [(None, os.fspath(data))]
    if isinstance(data, Mapping):
        return [(str(k), os.fspath(v)) for k, v in data.items()]
    return [(None, os.fspath(p)) for p in data]


def _attach() -> Run | None:
    run_dir = os.environ.get("ENVCAP_RUN_DIR")
    run_id = os.environ.get("ENVCAP_RUN_ID")
    if not run_dir or not run_id or not os.path.isdir(run_dir):
        return None
    run = Run(run_id, run_dir, attached=True)
    raw = os.environ.get("ENVCAP_PARAMS")
    if raw:
        try:
            given = json.loads(raw)
            run.params.update(given)
            run._given.update(given)
        except ValueError:
            pass
    return run


def _own_run() -> Run:
    """A run of the script's own: recorded as ``envcap run`` would record the script."""
    from ..core.redact import default_redactor
    from ..store.factory import open_store
    from .params import ParamSet
    from .session import Plan, Session

    store = open_store(create=True)
    redactor = default_redactor()
    plan = Plan(argv=[sys.executable, *sys.argv], cwd=os.getcwd(), mode="api", params=ParamSet(redactor),
                python={"executable": sys.executable, "from": "self"})
    session = Session(store, plan, redactor)
    session.begin()
    run = Run(session.id, session.dir, attached=False, session=session)
    from .resources import Monitor

    try:
        run._monitor = Monitor(os.getpid(), own_process=True).start()
    except UsageError as exc:  # a bad ENVCAP_RESOURCE_INTERVAL: said, and the run goes on unsampled
        session.note_problem(f"resource usage not sampled: {exc}")
    # Processes the script starts (data-loader workers, ranks) report into this run too.
    os.environ["ENVCAP_RUN_ID"] = session.id
    os.environ["ENVCAP_RUN_DIR"] = session.dir
    os.environ.setdefault("ENVCAP_HOME", str(store.path))

    # The environment the script was started with (the snapshot reads it from
    # /proc/self/environ): what a library sets in the process when imported (scikit-
    # learn's KMP_* variables) or seed_everything sets (PYTHONHASHSEED, recorded with the
    # seeds) is not a change of environment.
    def take() -> None:
        run._manifest = session.take_snapshot(None)

    run._snapshot = threading.Thread(target=take, name="envcap-run-snapshot", daemon=True)
    run._snapshot.start()
    import atexit

    _ExitWatch.install()
    atexit.register(_finish_at_exit, run)
    return run


class _ExitWatch:
    """How the script is ending, for a run left open (``params_from_argparse`` starts a
    run that ends with the script): an uncaught exception (``sys.excepthook`` sees it
    before the exit handlers run) or ``sys.exit(code)`` (argparse's errors too), else a
    normal end, status 0."""

    code: int | None = None
    installed = False

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        cls.installed = True
        hook, exit_ = sys.excepthook, sys.exit

        def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            cls.code = 130 if issubclass(kind, KeyboardInterrupt) else 1
            hook(kind, value, tb)

        def exit(status: object = None) -> None:
            cls.code = status if isinstance(status, int) else (0 if status is None else 1)
            exit_(status)  # type: ignore[arg-type]

        sys.excepthook = excepthook
        sys.exit = exit  # type: ignore[assignment]


def _finish_at_exit(run: Run) -> None:
    if not run._closed and run._session is not None:
        run.finish(0 if _ExitWatch.code is None else _ExitWatch.code)


_cache: Any = None


def _hash_cache() -> Any:
    """The store's fingerprint cache (a private one when there is no store yet)."""
    global _cache
    from .data import HashCache

    if _cache is None or _cache[0] != threading.get_ident():
        from ..core.errors import StoreError
        from ..store.factory import open_store

        try:
            store: StoreBackend | None = open_store(create=False)
        except StoreError:
            store = None
        _cache = (threading.get_ident(), HashCache(store))
    return _cache[1]
