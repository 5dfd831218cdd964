"""Hydra: a composed config recorded as parameters with their real provenance.

::

    @hydra.main(config_path="conf", config_name="config", version_base=None)
    def main(cfg):
        envcap.integrations.hydra.log_config(cfg)

or, with no change to the script, Hydra's callback (in the config, or on the command
line)::

    envcap run -- python train.py +hydra.callbacks.envcap._target_=envcap.integrations.hydra.Callback

Every leaf of the config becomes a parameter (nested keys dotted, ``optim.lr``; lists
stay values), recorded with its resolved value and where it came from:

- ``user``: set by a command-line override (``optim.lr=0.1``, ``+extra=1``, ``++x=2``;
  an override of a whole mapping makes every leaf under it ``user``);
- ``derived``: an interpolation (``${optim.lr}``, ``run_${seed}``) not overridden;
- ``default``: the rest, as the config files and their defaults list composed it.

The config group choices are recorded too, as ``hydra.choices.GROUP`` (``user`` when an
override picked it, as in ``db=postgres``, else ``default``). The composed config itself
(unresolved, as Hydra saves it in ``.hydra/config.yaml``, with secret-named values
redacted) is stored with the run, with the overrides, as ``configs[]`` of the record.

A multirun (``-m``) records each job as a run of its own, with its own parameters and
config, labelled ``sweep`` (the same value for every job of the sweep: the id of the
``envcap run`` that started it, else the first job's run id) and ``hydra.job.num``.
Under ``envcap run`` that run records the command and carries the ``sweep`` label too.
A job's run ends when the job does (the callback's ``on_job_end``, with its status),
or, with ``log_config`` alone, when the next job starts or the script ends.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from ..core.errors import UsageError


def _omegaconf() -> Any:
    try:
        import omegaconf
    except ImportError as exc:
        raise UsageError("the Hydra integration needs Hydra: pip install 'envcap[hydra]'") from exc
    return omegaconf


def override_keys(overrides: Iterable[str], groups: Iterable[str]) -> tuple[set[str], set[str]]:
    """(config keys, config groups) that the command-line ``overrides`` set.

    Parsed by Hydra's own override grammar; a key that names a config group (one of
    ``groups``) is a choice of group, not a value. Deletions (``~key``) set nothing.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    group_names = set(groups)
    keys: set[str] = set()
    chosen: set[str] = set()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete():
            continue
        name = override.key_or_group
        if name in group_names:
            chosen.add(name)
        else:
            keys.add(name)
    return keys, chosen


def provenance(cfg: Any, user_keys: Iterable[str] = ()) -> Iterator[tuple[str, Any, str]]:
    """(dotted name, resolved value, source) for every leaf of ``cfg``."""
    oc = _omegaconf()
    user = set(user_keys)

    def given(name: str) -> bool:
        return any(name == key or name.startswith(key + ".") for key in user)

    def walk(node: Any, prefix: str, derived: bool) -> Iterator[tuple[str, Any, str]]:
        for key in node.keys():
            name = f"{prefix}{key}"
            interpolated = derived or oc.OmegaConf.is_interpolation(node, key)
            if oc.OmegaConf.is_missing(node, key):
                yield name, "???", "user" if given(name) else "default"
                continue
            value = node[key]
            if isinstance(value, oc.DictConfig) and len(value) > 0:
                yield from walk(value, name + ".", interpolated)
                continue
            if isinstance(value, (oc.DictConfig, oc.ListConfig)):
                value = oc.OmegaConf.to_container(value, resolve=True)
            yield name, value, "user" if given(name) else ("derived" if interpolated else "default")

    yield from walk(cfg, "", False)


def composed_yaml(cfg: Any, redact: Any) -> str:
    """The config as Hydra composed it (interpolations kept), secret-named values redacted."""
    import yaml  # type: ignore[import-untyped]

    oc = _omegaconf()
    data = oc.OmegaConf.to_container(cfg, resolve=False)

    def scrub(value: Any, name: str) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v, f"{name}{k}.") for k, v in value.items()}
        return redact(name.rstrip("."), value)

    return str(yaml.safe_dump(scrub(data, ""), sort_keys=False, allow_unicode=True))


def _hydra_state() -> tuple[list[str], dict[str, Any]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], {}
    hc = HydraConfig.get()
    return list(hc.overrides.task), dict(hc.runtime.choices)


def log_config(cfg: Any, *, overrides: Iterable[str] | None = None, choices: Mapping[str, Any] | None = None,
               run: Any = None) -> Any:
    """Record ``cfg`` in the run this script reports into (or a new one); return the run.

    ``overrides`` and ``choices`` default to what Hydra says of the job running now.
    """
    from ..runs.api import active_run, start_run

    if overrides is None or choices is None:
        found_overrides, found_choices = _hydra_state()
        overrides = found_overrides if overrides is None else overrides
        choices = found_choices if choices is None else choices
    overrides = list(overrides)
    # Hydra's own groups (hydra/launcher, hydra/job_logging, ...) are not the task's.
    groups = {g: c for g, c in (choices or {}).items() if not str(g).startswith("hydra/") and g != "hydra"}
    keys, chosen = override_keys(overrides, groups)
    if run is None:
        job = _multirun_job()
        run = _job_run(job) if job is not None else (active_run() or start_run())
    # These are the values the script runs with: like log_args's, they win over --param.
    for name, value, source in provenance(cfg, keys):
        run._log_param(name, value, source, used=True)
    for group, choice in sorted(groups.items()):
        if choice is not None:
            run._log_param(f"hydra.choices.{group}", choice, "user" if group in chosen else "default", used=True)
    text = composed_yaml(cfg, run._redacted)
    run._event({"kind": "config", "name": "hydra", "format": "yaml", "text": text,
                "overrides": [run._redacted("override", o) for o in overrides]})
    return run


# -- multirun: a run per job ------------------------------------------------------------

_sweep: dict[str, Any] = {"id": None, "job": None, "run": None}


def _multirun_job() -> int | None:
    """The number of the multirun job running now, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return int(hc.job.num) if hc.mode == RunMode.MULTIRUN else None


def _job_run(job: int) -> Any:
    """The run of multirun job ``job``, started on its first use (ending the previous job's)."""
    from ..runs import api

    if _sweep["job"] == job and _sweep["run"] is not None:
        return _sweep["run"]
    end_job_run(0)
    if _sweep["id"] is None:
        parent = api.active_run()  # `envcap run`'s, when it started the sweep
        if parent is not None and parent.attached:
            _sweep["id"] = parent.id
            parent.label("sweep", parent.id)
    with api._lock:
        run = api._own_run()
        api._active = run
        run._depth += 1
    if _sweep["id"] is None:
        _sweep["id"] = run.id
    run.label("sweep", _sweep["id"])
    run.label("hydra.job.num", str(job))
    _sweep.update(job=job, run=run)
    return run


def end_job_run(exit_code: int | None) -> None:
    """End the run of the multirun job that ran last, if any."""
    run, _sweep["run"], _sweep["job"] = _sweep["run"], None, None
    if run is not None:
        run.finish(exit_code)


class Callback:
    """A Hydra callback that records the job's config: ``hydra.callbacks.envcap._target_``.

    Hydra calls every hook of a callback; those envcap has nothing to do in do nothing.
    """

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        oc = _omegaconf()
        task = oc.OmegaConf.masked_copy(config, [k for k in config.keys() if k != "hydra"]) \
            if "hydra" in config else config
        log_config(task)

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        status = getattr(job_return, "status", None)
        end_job_run(0 if status in (None, JobStatus.COMPLETED) else 1)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        end_job_run(0)

    def on_compose_config(self, config: Any, **kwargs: Any) -> None:
        pass
