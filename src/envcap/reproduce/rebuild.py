"""``envcap rebuild`` as a library call: every step in order, the result recorded as a run.

1. The run and its environment's manifest are loaded; the command, parameters, seeds
   and environment it will be given are worked out (:mod:`.plan`).
2. The data is fingerprinted where it will be read from. Data that is not what the run
   read stops the rebuild here, before anything runs, unless drift is allowed.
3. GPU pre-flight (:mod:`.preflight`), for runs that had NVIDIA GPUs and CUDA.
4. The image: the env's image recorded in the store's ``images`` table, pulled by
   digest when this engine lacks it; else, with ``--registry``, the registry's image
   of the env (its tag names the env id), or a new build through :mod:`envcap.builder`.
5. The code in a fresh workspace (:mod:`.workspace`), then the new run's first record
   (a reproduction of the original), then the container (:mod:`envcap.engines`): the command
   runs with the run's parameters, seeds and environment while envcap captures the
   environment inside it.
6. The new run is finished like any other (metrics, outputs), and compared with the
   original (:mod:`.verdict`); its record keeps the verdict.

What was worked out before anything runs is one frozen :class:`~.plan.RebuildPlan`; what
happened is one frozen :class:`~.report.RebuildReport` (its ``to_dict`` is ``--json``).

``action`` is ``run``, or ``build-only`` (steps 1 and 4), ``dry-run`` (what would happen,
nothing pulled, built, written or run) or ``print`` (the equivalent ``docker run`` and
``apptainer exec`` command lines, with the workspace prepared for them).
"""

from __future__ import annotations

import dataclasses

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..builder.fidelity import MOUNT as CAPTURE_MOUNT
from ..core.errors import EnvcapError
from ..core.manifest import Manifest
from ..engines import ContainerSpec, Mount, make_runner
from . import plan as plan_mod
from . import preflight as preflight_mod
from .errors import RebuildError, Stopped
from .launch import default_output, launcher, secret_values
from .plan import BACKEND_MOUNT, CA_MOUNT, CONTAINER_LIB, OUT_DIR, RUN_DIR, ImageChoice, Original, RebuildOptions, RebuildPlan
from .report import (
    Candidate,
    CodePlan,
    CodeResult,
    Commands,
    EnvComparison,
    ExitComparison,
    RebuildReport,
    Verdict,
)
from .verdict import NOT_REPRODUCED
from ..store.base import StoreBackend

Progress = Callable[[str], None]
ACTIONS = ("run", "build-only", "dry-run", "print")


# The report of a rebuild (kept under its old name for callers of the library).
Report = RebuildReport


@dataclass
class _Clock:
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    laps: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self.last, 3)
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.laps, "total": round(time.monotonic() - self.started, 3)}


def rebuild(store: StoreBackend, ref: str, options: RebuildOptions, *, action: str = "run",
            progress: Progress = lambda _: None, output: BinaryIO | None = None,
            cwd: str | None = None) -> RebuildReport:
    if action not in ACTIONS:
        raise RebuildError(f"unknown action {action!r}")
    clock = _Clock()
    candidate: str | None = None
    if ref.startswith("oci://"):
        # A run bundle in a registry (envcap push RUN --registry): imported, then rebuilt like any run.
        # The image it hangs from is a candidate for this rebuild only, bound to the env
        # only if the run in it captures that env.
        from .oci import fetch

        fetched = fetch(store, ref, progress=progress)
        ref, candidate = fetched.run_id, fetched.subject
    original = plan_mod.load_original(store, ref)
    record = original.record
    env_id = original.manifest.env_id
    if action == "build-only":
        image = _image(store, original, options, action, progress, candidate)
        clock.lap("image")
        return RebuildReport(action=action, original=record.id, env_id=env_id, image=image, timings=clock.total())
    argv = plan_mod.command(record)
    code = plan_mod.code_paths(original)
    editables = plan_mod.editable_installs(original, code)  # refused here, before any image is built
    env_plan = plan_mod.environment(original, secret_names=options.secret_env)
    clock.lap("load")
    checks = tuple(_check_data(store, original, code, options))
    clock.lap("data")
    drifted = [c for c in checks if c.drifted]
    caveats: list[str] = []
    if drifted and not options.allow_data_drift:
        reason = "; ".join(f"data {c.name} changed: the run read {c.recorded[:19]}…, {c.source} is now "
                           f"{(c.now or '')[:19]}…" for c in drifted)
        refused = Verdict(reproduced=False, reasons=(f"{reason}. Nothing was run (--allow-data-drift runs it anyway)",))
        return RebuildReport(action=action, original=record.id, env_id=env_id, data=checks, verdict=refused,
                             timings=clock.total())
    if drifted:
        caveats.append("--allow-data-drift: the run read other data (" + ", ".join(c.name for c in drifted) + ")")
    gpu = preflight_mod.check(original.manifest, _host_gpu(original), no_gpu=options.no_gpu)
    caveats += gpu.notes
    clock.lap("gpu")
    image = _image(store, original, options, action, progress, candidate)
    caveats += image.notes
    plan = RebuildPlan(original=original, options=options, command=tuple(argv), code=code, env=env_plan, data=checks,
                       gpu=gpu, image=image, caveats=tuple(caveats), cwd=cwd, editables=editables)
    if action == "dry-run":
        return _report(plan, action, code=_code_plan(plan), caveats=plan.caveats, timings=clock.total())
    clock.lap("image")
    if action == "print":
        return _print(store, plan, progress)
    return _run(store, plan, clock, progress, output or default_output())


def _report(plan: RebuildPlan, action: str, **parts: Any) -> RebuildReport:
    """The report of what was planned, with the parts the action added."""
    return RebuildReport(action=action, original=plan.original.record.id, env_id=plan.original.manifest.env_id,
                         data=plan.data, gpu=plan.gpu, command=plan.command, workdir=plan.code.workdir,
                         environment_plan=plan.env, image=plan.image, **parts)


# -- steps -------------------------------------------------------------------------------


def _check_data(store: StoreBackend, original: Original, code: plan_mod.CodePaths, options: RebuildOptions) -> list[Any]:
    from ..runs.data import HashCache

    return plan_mod.check_data(original, code, options.data, HashCache(store))


def _host_gpu(original: Original) -> Any:
    facts = preflight_mod.GpuFacts.of(original.manifest.sections.get("gpu"))
    return preflight_mod.host_gpu_section() if facts is not None else None


def _image(store: StoreBackend, original: Original, options: RebuildOptions, action: str, progress: Progress,
           candidate: str | None = None) -> ImageChoice:
    """The run's image by digest: from the store's images table, the registry, or a build;
    else ``candidate`` (the subject of the artifact the run came from), unverified."""
    from ..store import images as image_store
    from ..builder.pipeline import BuildOptions, build, tag_for
    from ..builder.registry import Registry, Repository

    manifest = original.manifest
    if options.image:
        return _given_image(options, action, progress)
    repository = str(Repository.parse(options.registry)) if options.registry else None
    rows = [r for r in image_store.images(store, manifest.env_id) if repository in (None, r.repository)]
    rank = {"complete": 0, "unchecked": 1, "partial": 2}
    rows.sort(key=lambda r: r.built_at, reverse=True)  # the newest first,
    rows.sort(key=lambda r: rank.get(r.status, 3))  # and complete images before the others
    if not rows and candidate and repository is None:
        return _candidate(candidate, action, make_runner(options.engine) if action not in ("dry-run", "print")
                          else None, progress)
    if action in ("dry-run", "print"):
        if rows:
            return _image_info(rows[0], "in the store")
        if repository is None:
            raise RebuildError(_no_image(original))
        registry = Registry(Repository.parse(repository))
        digest = registry.manifest_digest(tag_for(manifest.env_id))
        if digest is not None:
            return ImageChoice(reference=f"{repository}@{digest}", how="in the registry", status="unchecked",
                               digest=digest)
        if action == "print":
            raise RebuildError(f"{repository} holds no image of env {manifest.env_id} yet: build it first "
                               f"(envcap rebuild {original.record.id} --build-only --registry {repository})")
        return ImageChoice(reference=None, how=f"would be built and pushed to {repository}", base=options.base)
    if not rows and repository is None:
        raise RebuildError(_no_image(original))
    runner = make_runner(options.engine)
    try:
        for row in rows:
            try:
                pulled = runner.ensure_image(row.reference, progress)
            except RebuildError as exc:
                progress(f"warning: {exc}")
                continue
            return _image_info(row, "in the store", pulled=pulled == "pulled")
        if repository is None:
            raise RebuildError(_no_image(original))
        progress(f"looking for env {manifest.env_id} in {repository}, building it if it is not there")
        result = build(manifest, BuildOptions(registry=repository, base=options.base, ca_bundle=options.ca_bundle,
                                              reproducible=options.engine == "podman", pin_os=options.pin_os),
                       store=store, progress=progress)
        how = "in the registry" if result.already else "built"
        pulled = runner.ensure_image(result.reference, progress)
        notes = tuple(n for n in result.notes if "substituted" in n)
        return dataclasses.replace(_image_info(result.record, how, pulled=pulled == "pulled"), notes=notes)
    finally:
        runner.close()


UNVERIFIED = "the artifact's subject, unverified"


def _candidate(reference: str, action: str, runner: Any, progress: Progress) -> ImageChoice:
    """The image an artifact names: used for this rebuild, recorded for the env only if
    the run in it captures the env (:func:`envcap.reproduce.oci.bind_if_captured`)."""
    digest = reference.partition("@")[2]
    if runner is None:
        return ImageChoice(reference=reference, how=UNVERIFIED, status="unverified", digest=digest)
    try:
        pulled = runner.ensure_image(reference, progress)
    finally:
        runner.close()
    return ImageChoice(reference=reference, how=UNVERIFIED, status="unverified", digest=digest,
                       pulled=pulled == "pulled")


def _given_image(options: RebuildOptions, action: str, progress: Progress) -> ImageChoice:
    """The image the caller named (``RebuildOptions.image``), whichever env it holds."""
    reference = str(options.image)
    digest = reference.rsplit("@", 1)[1] if "@sha256:" in reference else None
    if action in ("dry-run", "print"):
        return ImageChoice(reference=reference, how="given", status="unchecked", digest=digest)
    runner = make_runner(options.engine)
    try:
        pulled = runner.ensure_image(reference, progress)
    finally:
        runner.close()
    return ImageChoice(reference=reference, how="given", status="unchecked", digest=digest, pulled=pulled == "pulled")


def _image_info(row: Any, how: str, *, pulled: bool | None = None) -> ImageChoice:
    return ImageChoice(reference=row.reference, how=how, status=row.status, digest=row.digest,
                       differences=tuple(row.differences), pulled=pulled)


def _no_image(original: Original) -> str:
    return (f"run {original.record.id}'s environment (env {original.manifest.env_id}) has no image in this store: "
            "give --registry HOST[:PORT]/REPOSITORY to take it from that registry, or to build and push it there "
            "(with --base REF to choose its base image)")


def _code_plan(plan: RebuildPlan) -> CodePlan:
    from .workspace import candidates, has_commit

    git = plan.original.record.git
    found = []
    for what, where in candidates(git, plan.options.repo, plan.cwd or os.getcwd()):
        local = os.path.isdir(where)
        state = ("has the commit" if git.get("commit") and has_commit(where, git["commit"]) else "no such commit") \
            if local else "would be cloned"
        found.append(Candidate(where, what, state))
    diff = git.get("diff") or {}
    return CodePlan(commit=git.get("commit"), diff_bytes=diff.get("size"), untracked=len(git.get("untracked") or ()),
                    candidates=tuple(found), paths=plan.code)


@dataclass(frozen=True, slots=True)
class _Install:
    """How the run's own package is installed in the container."""

    backend: str = ""  # the build backend's folder on this machine (mounted at BACKEND_MOUNT), or ""
    drop: str = ""  # uid:gid: the container starts as root for the install, the run then as the caller
    own: tuple[str, ...] = ()  # checkouts the build restored in the image, given to the caller before the run


def _install_step(plan: RebuildPlan, workspace: str, store_path: Path, progress: Callable[[str], None]) -> _Install:
    """The build backend of the run's own package (made once, kept in the store) and, for a
    caller who is not root, the install as root in the container: the image's environment
    is root's, and the package goes into it as it went in where the run was recorded."""
    uid, gid = os.getuid(), os.getgid()
    siblings = _restored_checkouts(plan) if uid != 0 else ()
    if not plan.editables:
        return _Install(drop=f"{uid}:{gid}", own=siblings) if siblings else _Install()
    from . import backend as backend_mod

    python = plan.original.manifest.sections.get("python") or {}
    version = python.get("version") if isinstance(python, dict) else None
    cpu = plan.original.manifest.sections.get("cpu") or {}
    arch = cpu.get("architecture") if isinstance(cpu, dict) else None
    checkouts = [Path(workspace) / os.path.relpath(e.path, plan.code.target) for e in plan.editables]
    found = backend_mod.prepare(checkouts, version if isinstance(version, str) else "",
                                arch if isinstance(arch, str) else None, store_path / "cache",
                                plan.options.ca_bundle)
    if found.path is not None:
        progress(f"build backend of the run's package: {' '.join(found.installed) or ' '.join(found.requires)} "
                 f"({found.note}; mounted at {BACKEND_MOUNT})")
    else:
        progress(f"build backend of the run's package: none prepared ({found.note}); pip builds it its own way")
    return _Install(backend=str(found.path) if found.path else "", drop=f"{uid}:{gid}" if uid != 0 else "",
                    own=siblings)


def _restored_checkouts(plan: RebuildPlan) -> tuple[str, ...]:
    """The editable installs of other checkouts than the run's own, which the build restored
    at their recorded paths in the image (as root): on the run's machine they were the
    caller's, and git reads the state of no checkout another user owns."""
    from ..store import carried

    root = plan.original.record.git.get("root")
    deps = carried.needs(plan.original.manifest, own=[root] if isinstance(root, str) else [])
    return tuple(dict.fromkeys(d.path for d in deps if d.kind == "editable" and "\n" not in d.path))


def _spec(plan: RebuildPlan, outputs: list[plan_mod.OutputPlan], *, workspace: str, run_id: str, run_dir: str,
          extra_mounts: tuple[Mount, ...] = (), as_root: bool = False) -> ContainerSpec:
    import envcap

    original, code = plan.original, plan.code
    package = str(Path(envcap.__file__).resolve().parent)
    params, _ = plan_mod.user_params(original.record)
    env = {**plan.env.values, "ENVCAP_RUN_ID": run_id, "ENVCAP_RUN_DIR": RUN_DIR,
           "ENVCAP_PARAMS": json.dumps(params, sort_keys=True), **plan_mod.seed_env(original.record)}
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        env.setdefault("HOME", "/tmp")  # the caller's uid has no home in the image
    mounts = [Mount(workspace, code.target, False), Mount(run_dir, RUN_DIR, False),
              Mount(package, f"{CONTAINER_LIB}/envcap", True), *_threadpoolctl_mount()]
    mounts += [Mount(c.source, c.target, True) for c in plan.data]
    mounts += [Mount(o.mount[0], o.mount[1], False) for o in outputs if o.mount]
    mounts += extra_mounts
    return ContainerSpec(image=plan.reference, argv=plan.command, workdir=code.workdir, env=env,
                         secrets=plan.env.secrets, mounts=tuple(sorted(mounts, key=lambda m: m.target)),
                         user="0:0" if as_root else f"{uid}:{gid}", gpus=plan.gpu.use_gpus, label=original.record.id)


def _threadpoolctl_mount() -> list[Mount]:
    """threadpoolctl (one module) beside envcap's package, so that the script's run can say
    which BLAS kernel it used (envcap.runs.numerics) in an image that lacks it."""
    import importlib.util

    spec = importlib.util.find_spec("threadpoolctl")
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    return [Mount(str(Path(spec.origin).resolve()), f"{CONTAINER_LIB}/threadpoolctl.py", True)]


def _print(store: StoreBackend, plan: RebuildPlan, progress: Progress) -> RebuildReport:
    from ..builder.registry import Repository
    from ..core.run import new_run_id
    from .printcmd import apptainer_command, docker_run_command
    from .workspace import prepare

    run_id = new_run_id()
    base = Path(store.path) / "rebuilds" / run_id
    base.mkdir(parents=True)
    workspace = prepare(plan.original.record.git, store, str(base / "code"), repo=plan.options.repo, cwd=plan.cwd)
    run_dir = base / "run"
    run_dir.mkdir()
    outputs = plan_mod.plan_outputs(plan.original, plan.code, workspace.path, str(base))
    for o in outputs:
        if o.mount:
            os.makedirs(o.mount[0], exist_ok=True)
    spec = _spec(plan, outputs, workspace=workspace.path, run_id=run_id, run_dir=str(run_dir))
    plain = Repository.parse(plan.reference.split("@", 1)[0]).loopback
    commands = Commands(docker_run_command(spec), apptainer_command(spec, plain_http=plain))
    progress(f"workspace prepared in {workspace.path}; metrics go to {run_dir}")
    return _report(plan, "print", code=workspace, commands=commands, spec=spec)


def _run(store: StoreBackend, plan: RebuildPlan, clock: _Clock, progress: Progress, output: BinaryIO) -> RebuildReport:
    from ..core.redact import default_redactor
    from ..runs.session import Session
    from ..store.runs import put_record
    from .workspace import prepare

    original, options, code = plan.original, plan.options, plan.code
    record = original.record
    caveats = list(plan.caveats)
    secrets = secret_values(plan.env.secrets)  # asked first: a secret that is not set stops it before anything
    redactor = default_redactor()
    run_plan = _session_plan(plan, caveats, redactor)
    runner = make_runner(options.engine)  # before anything is recorded: an engine that is down stops it here
    try:
        session = Session(store, run_plan, redactor)
        session.record = session.record.evolve(reproduction={**dict(options.purpose), "of": record.id,
                                                             "verdict": None})
        base = Path(store.path) / "rebuilds" / session.id
        base.mkdir(parents=True)
        progress(f"code: commit {record.git.get('commit')} into {base / 'code'}")
        workspace = prepare(record.git, store, str(base / "code"), repo=options.repo, cwd=plan.cwd)
        if workspace.missing:
            caveats.append("code the run's record did not keep: " + "; ".join(workspace.missing))
        outputs = plan_mod.plan_outputs(original, code, workspace.path, str(base))
        for o in outputs:
            if o.mount:
                os.makedirs(o.mount[0], exist_ok=True)
        # Session.begin reads the git state of the workspace, where the command will run.
        run_plan.cwd = os.path.normpath(os.path.join(workspace.path, os.path.relpath(code.workdir, code.target)))
        run_plan.outputs = [o.host for o in outputs if o.host]
        clock.lap("workspace")
        session.begin()
        clock.lap("record_start")
        extra = [Mount(_package(), f"{CAPTURE_MOUNT}/envcap", True), Mount(str(base / "capture"), OUT_DIR, False)]
        if plan.editables and options.ca_bundle is not None:
            extra.append(Mount(str(Path(options.ca_bundle).resolve()), CA_MOUNT, True))
        install = _install_step(plan, workspace.path, Path(store.path), progress)
        if install.backend:
            extra.append(Mount(install.backend, BACKEND_MOUNT, True))
        clock.lap("backend")
        spec = _spec(plan, outputs, workspace=workspace.path, run_id=session.id, run_dir=session.dir,
                     extra_mounts=tuple(extra), as_root=bool(install.drop))
        for e in plan.editables:
            progress(f"installing {e.name} {e.version} editable from {e.path} in the container (pip install -e"
                     + (", as root, then the run as you" if install.drop else "") + ")")
        progress(f"run {session.id}: {record.command}  (in {plan.reference})")
        status = _execute(runner, spec, plan, secrets, output, base / "capture", store, session, install)
        caveats += _editable_problems(plan, base / "capture")
        how = base / "capture" / "editable.how"
        if how.is_file():
            ways = {"backend": "with the build backend envcap mounted (no index)", "image": "with the image's own "
                    "build backend", "index": "in pip's isolated build environment, from the index"}
            progress("installed editable " + "; ".join(ways.get(w, w) for w in how.read_text().split()))
        clock.lap("container")
        captured = _captured(base / "capture", session.id)
        if plan.image.how == UNVERIFIED and plan.image.reference:
            from .oci import bind_if_captured

            if bind_if_captured(store, plan.image.reference, original.manifest.env_id,
                                captured.env_id if isinstance(captured, Manifest) else None):
                progress(f"image {plan.image.reference}: the run in it captured env "
                         f"{original.manifest.env_id[:19]}…: recorded as that env's image")
        session.capture(None, manifest=captured)
        new = session.finish(status)
        clock.lap("record_finish")
        verdict, code_result = _compare(store, original, new, captured, outputs, options, caveats, workspace)
    finally:
        runner.close()
    timings = _timings(clock, base / "capture")
    assert verdict.environment is not None  # a finished run is always compared in full
    env = verdict.environment
    put_record(store, new.evolve(reproduction={
        **dict(options.purpose), "of": record.id, "verdict": verdict.text, "reasons": list(verdict.reasons),
        "image": plan.reference, "env_same": env.same,
        # What revalidation and drift read: the node's platform and what differed (bounded).
        **({"platform_id": env.rebuild_platform, "env_id": env.rebuild,
            "environment": list(env.software[:50]), "platform": list(env.platform[:20])} if env.captured else {}),
        "metrics": dict(new.metrics)}))
    return _report(plan, "run", rebuild=session.id, code=code_result, verdict=verdict, caveats=tuple(caveats),
                   problems=tuple(new.problems), timings=timings)


def _session_plan(plan: RebuildPlan, caveats: list[str], redactor: Any) -> Any:
    """The new run as ``envcap run`` would have planned it: the run's command, parameters,
    seeds and data (the data the script records itself, it records again)."""
    from ..runs.params import ParamSet
    from ..runs.session import Plan

    record, env_plan = plan.original.record, plan.env
    params, withheld = plan_mod.user_params(record)
    if withheld:
        caveats.append("secret parameters are not restored: " + ", ".join(withheld))
    if env_plan.withheld:
        caveats.append("variables recorded as secrets are not set (--secret-env NAME passes them): "
                       + ", ".join(env_plan.withheld))
    caveats += list(env_plan.added.values())
    param_set = ParamSet(redactor)
    for name, value in params.items():
        param_set.set(name, value, "user")
    seeds = record.seeds
    return Plan(argv=list(record.argv), cwd="", mode="rebuild", params=param_set,
                seed=seeds.get("global") if isinstance(seeds.get("global"), int) else None,
                named_seeds=dict(seeds.get("named") or {}),
                data=[{"path": c.source, "name": c.name, "split": c.entry.get("split"),
                       "version": c.entry.get("version"), "lineage": c.entry.get("lineage") or ()}
                      for c in plan.data if not c.by_api],
                python=dict(record.python))


def _execute(runner: Any, spec: ContainerSpec, plan: RebuildPlan, secrets: dict[str, str], output: BinaryIO,
             out_dir: Path, store: StoreBackend, session: Any, install: _Install | None = None) -> int:
    """The command in its container, the environment captured beside it; its exit status."""
    from ..builder import fidelity

    original = plan.original
    out_dir.mkdir()
    interpreters, capture_args = fidelity.capture_args(original.manifest)
    ca = CA_MOUNT if plan.editables and plan.options.ca_bundle is not None else ""
    entry = launcher(spec, OUT_DIR, fidelity.CAPTURE_SCRIPT, capture_args, interpreters,
                     [(e.python, e.path) for e in plan.editables], ca,
                     backend=BACKEND_MOUNT if install is not None and install.backend else "",
                     drop=install.drop if install is not None else "",
                     own=install.own if install is not None else ())
    try:
        return int(runner.run(spec, entry, secrets, output))
    except Stopped as exc:
        # The scheduler ended the job (scancel, its time limit): the runner has removed the
        # container; the new run is finished as stopped, with no verdict, for none was reached.
        _abandon(store, session, original.record, f"stopped by {exc.signal_name} ({exc.why})", exit_code=143,
                 signal_name=exc.signal_name, verdict=None, purpose=dict(session.record.reproduction or {}))
        raise
    except KeyboardInterrupt:
        _abandon(store, session, original.record, "interrupted", exit_code=130, signal_name="SIGINT")
        raise
    except EnvcapError as exc:
        _abandon(store, session, original.record, str(exc))
        raise


def _editable_problems(plan: RebuildPlan, out_dir: Path) -> list[str]:
    """What went wrong installing the run's own package (pip's last line for each)."""
    failed = out_dir / "editable.failed"
    if not plan.editables or not failed.is_file():
        return []
    log = (out_dir / "editable.log").read_text(errors="replace").strip().splitlines() \
        if (out_dir / "editable.log").is_file() else []
    last = next((line.strip() for line in reversed(log) if line.strip()), "no output")
    paths = failed.read_text(errors="replace").split()
    names = [e.name for e in plan.editables if e.path in paths]
    return [f"the editable install of {', '.join(names)} failed in the container (pip: {last[:300]}); with an index "
            "behind a proxy, give --ca-bundle"]


def _timings(clock: _Clock, out_dir: Path) -> dict[str, float]:
    timings = clock.total()
    script = _script_seconds(out_dir)
    if script is not None:
        timings["script"] = round(script, 3)
        timings["overhead"] = round(timings["total"] - script, 3)
    install = _stamps(out_dir, "installing", "installed")
    if install is not None:
        timings["editable_install"] = round(install, 3)  # in the container, before the script
    return timings


def _stamps(out_dir: Path, first: str, second: str) -> float | None:
    try:
        return float((out_dir / second).read_text()) - float((out_dir / first).read_text())
    except (OSError, ValueError):
        return None


def _package() -> str:
    import envcap

    return str(Path(envcap.__file__).resolve().parent)


def _abandon(store: StoreBackend, session: Any, record: Any, why: str, *, exit_code: int | None = None,
             signal_name: str | None = None, verdict: str | None = NOT_REPRODUCED,
             purpose: dict[str, Any] | None = None) -> None:
    """Finish a rebuild that could not run to the end, so that no record is left unfinished."""
    from ..store.runs import put_record

    try:
        session.note_problem(f"the rebuild did not complete: {why}")
        new = session.finish(exit_code, signal_name)
        put_record(store, new.evolve(reproduction={**(purpose or {}), "of": record.id, "verdict": verdict,
                                                   "reasons": [why]}))
    except EnvcapError:
        pass


def _captured(out_dir: Path, run_id: str) -> Manifest | EnvcapError:
    """The manifest captured in the container, labelled with the new run (labels are not hashed)."""
    from ..core.errors import ManifestError

    path = out_dir / "manifest.json"
    if not path.is_file():
        err = (out_dir / "capture.err").read_text(errors="replace").strip().splitlines() \
            if (out_dir / "capture.err").is_file() else []
        return ManifestError("the capture inside the container gave no manifest"
                             + (f": {err[-1]}" if err else ""))
    try:
        m = Manifest.from_json(path.read_bytes(), source="the capture inside the container")
        data = m.to_dict()
        data["labels"] = {**data.get("labels", {}), "run": run_id}
        return Manifest.from_dict(data, source="the capture inside the container")
    except ManifestError as exc:
        return exc


def _script_seconds(out_dir: Path) -> float | None:
    try:
        started = float((out_dir / "started").read_text().strip())
        ended = float((out_dir / "ended").read_text().strip())
    except (OSError, ValueError):
        return None
    return max(0.0, ended - started)


def _compare(store: StoreBackend, original: Original, new: Any, captured: Manifest | EnvcapError,
             outputs: list[plan_mod.OutputPlan], options: RebuildOptions, caveats: list[str],
             workspace: Any) -> tuple[Verdict, CodeResult]:
    from ..compare.diff import changes_between, describe
    from .verdict import compare_metrics, compare_outputs, decide, metric_rules, platform_reasons, read_log
    from .workspace import compare_code

    record = original.record
    # Shell-style statuses on both sides (128 + N for a signal N): the container's shell
    # reports a signal only that way, so the status decides, not the signal's name.
    exit_same = record.exit_code == new.exit_code
    exit_text = f"exit status {new.exit_code}, not {record.exit_code}" + (f" ({record.signal})" if record.signal else "")
    original_log = read_log(store, record.metrics_log)
    rules = metric_rules(original_log, ignore=options.ignore, tol=dict(options.tol))
    metrics = compare_metrics(record.metrics, new.metrics, rtol=options.rtol, atol=options.atol,
                              original_log=original_log, rebuilt_log=read_log(store, new.metrics_log), rules=rules)
    by_path = {o.get("path"): o for o in new.outputs}
    rebuilt = [by_path.get(o.host) if o.host else None for o in outputs]
    rows = compare_outputs(record.outputs, rebuilt, [o.note for o in outputs])
    reproduced, reasons = decide(exit_same, exit_text, metrics, rows)
    m = original.manifest
    if isinstance(captured, Manifest):
        software = changes_between(m, captured, layers=["software"])
        platform = changes_between(m, captured, layers=["platform"])
        env = EnvComparison(original=m.env_id, captured=True, rebuild=captured.env_id,
                            same=captured.current_env_id() == m.current_env_id(), platform_same=captured.platform_id == m.platform_id,
                            original_platform=m.platform_id, rebuild_platform=captured.platform_id,
                            software=tuple(describe(c, "run", "rebuild") for c in software),
                            platform=tuple(describe(c, "run", "rebuild") for c in platform),
                            changes=(*software, *platform))
        if not env.same:
            caveats.append(f"the environment in the container differs from the run's: {len(software)} software "
                           "difference(s), listed above")
    else:
        env = EnvComparison(original=m.env_id, captured=False, error=str(captured))
        caveats.append(f"the environment inside the container was not captured: {captured}")
    code_diff = compare_code(record.git, new.git)
    if code_diff:
        caveats.append("the rebuilt code is not the run's: " + "; ".join(code_diff))
    exit_ = ExitComparison(original_code=record.exit_code, original_signal=record.signal,
                           reproduced_code=new.exit_code, reproduced_signal=new.signal, match=exit_same)
    # Why the bits may differ, where the records can tell: said with the reasons when it did not reproduce.
    bits = platform_reasons(m, captured if isinstance(captured, Manifest) else None, record.numerics,
                            new.numerics)
    if not reproduced:
        reasons += [f"the platform differs: {line}" for line in bits]
    verdict = Verdict(reproduced=reproduced, reasons=tuple(reasons), exit=exit_, metrics=tuple(metrics),
                      outputs=tuple(rows), environment=env, platform=tuple(bits))
    return verdict, CodeResult(workspace, tuple(code_diff))
