"""The ``envcap rebuild`` command: click code only; the work is in :mod:`envcap.reproduce`.

The verdict (a table, or ``--json``) goes to standard output; envcap's progress and the
command's own output (both of its streams) go to standard error, so that the verdict
can be piped. Exit 0 only when the run reproduced, 1 when it did not, 2 on error.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from .common import err, safe

if TYPE_CHECKING:
    from ..reproduce.report import RebuildReport


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--registry", metavar="HOST[:PORT]/REPO",
              help="Take the run's image from this registry, or build it and push it there if it is not there.")
@click.option("--base", metavar="REF", help="Build on this base image instead of the mapped one (as envcap build).")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True),
              help="A CA bundle for a TLS-intercepting proxy, for a build (as envcap build).")
@click.option("--data", "data", multiple=True, metavar="NAME=PATH",
              help="Read the dataset NAME (its recorded name or path) from PATH instead (repeatable).")
@click.option("--allow-data-drift", is_flag=True,
              help="Run even when the data is not what the run read (the report says so).")
@click.option("--secret-env", "secret_env", multiple=True, metavar="NAME",
              help="Pass this variable from your environment (repeatable); secrets are never restored from records.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for metrics.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance for metrics.")
@click.option("--ignore", "ignore", multiple=True, metavar="NAME",
              help="Metric NAME is not expected to reproduce: listed apart, the verdict stands on the rest (repeatable).")
@click.option("--tol", "tol", multiple=True, metavar="NAME=REL",
              help="Compare metric NAME with its own relative tolerance REL (repeatable).")
@click.option("--engine", type=click.Choice(["docker", "podman"]), default="docker", show_default=True,
              help="Run the container with Docker (its SDK) or podman (its CLI).")
@click.option("--repo", metavar="PATH|URL", help="A repository that holds the run's commit.")
@click.option("--pin-os", "pin_os", multiple=True, metavar="auto|all|NAME",
              help="For a build: pin what the run needs (auto, the default), every OS package (all), or these too.")
@click.option("--no-gpu", is_flag=True, help="Run a run that had GPUs without them (on the CPU).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the equivalent docker run and apptainer exec commands (pinned by digest); run nothing.")
@click.option("--build-only", is_flag=True, help="Get the image (pull or build it) and stop.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; pull, build, write and run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def rebuild(run_ref: str, registry: str | None, base: str | None, ca_bundle: str | None, data: tuple[str, ...],
            allow_data_drift: bool, secret_env: tuple[str, ...], rtol: float, atol: float, ignore: tuple[str, ...],
            tol: tuple[str, ...], engine: str,
            repo: str | None, pin_os: tuple[str, ...], no_gpu: bool, print_only: bool, build_only: bool, dry_run: bool,
            as_json: bool) -> None:
    """Run RUN again in its own image and say whether it reproduced.

    \b
    envcap rebuild 01JD3M8Q                      # the image recorded for the run's env
    envcap rebuild 01JD3M8Q --registry 127.0.0.1:5000/envs --rtol 1e-6
    The code is rebuilt at the recorded commit (with its diff and untracked files) in a
    fresh workspace, the data checked against its fingerprints, and the command run
    with the run's parameters, seeds and recorded environment. Exit 0 only when it
    reproduced.
    """
    from pathlib import Path

    from ..reproduce.plan import RebuildOptions
    from ..reproduce.rebuild import rebuild as run_rebuild
    from ..store.factory import open_store

    chosen = [name for name, on in (("--print", print_only), ("--build-only", build_only), ("--dry-run", dry_run))
              if on]
    if len(chosen) > 1:
        from ..core.errors import UsageError

        raise UsageError(f"{' and '.join(chosen)} cannot be combined: choose one")
    action = {"--print": "print", "--build-only": "build-only", "--dry-run": "dry-run"}.get(chosen[0] if chosen
                                                                                          else "", "run")
    options = RebuildOptions(registry=registry, base=base, ca_bundle=Path(ca_bundle) if ca_bundle else None,
                             data=data, allow_data_drift=allow_data_drift, secret_env=secret_env, rtol=rtol,
                             atol=atol, ignore=ignore, tol=_tolerances(tol), engine=engine, repo=repo, no_gpu=no_gpu,
                             pin_os=_pins(pin_os))
    with open_store(create=run_ref.startswith("oci://")) as store:
        report = run_rebuild(store, run_ref, options, action=action, progress=err,
                             output=sys.stderr.buffer)  # (click.get_binary_stream is deprecated)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif action == "run":
        from ..reproduce.verdict import render

        render(report, sys.stdout)
    else:
        for line in _lines(report):
            click.echo(safe(line))
    sys.exit(report.exit_code)


def _pins(values: tuple[str, ...]) -> tuple[str, ...]:
    """--pin-os values, each possibly a comma-separated list; auto when none is given."""
    out = tuple(p.strip() for v in values for p in v.split(",") if p.strip())
    return out if any(p in ("auto", "all") for p in out) else ("auto", *out)


def _tolerances(given: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    from ..core.errors import UsageError

    out = []
    for item in given:
        name, sep, rel = item.rpartition("=")
        try:
            value = float(rel)
        except ValueError:
            value = -1.0
        if not sep or not name or not (0.0 <= value < float("inf")):
            raise UsageError(f"--tol {item}: give NAME=REL, REL a finite number of at least 0 (--tol loss=1e-6)")
        out.append((name, value))
    return tuple(out)


def _lines(report: RebuildReport) -> list[str]:
    """``--print``, ``--build-only`` and ``--dry-run`` for people."""
    from ..reproduce.report import CodePlan

    image = report.image
    if report.action == "build-only":
        return [(image.reference or "") if image else ""]
    if report.action == "print" and report.commands:
        return ["# docker", report.commands.docker, "", "# apptainer (HPC clusters without Docker)",
                report.commands.apptainer]
    if report.verdict:  # refused before anything would run
        return ["would not run: " + r for r in report.verdict.reasons]
    out = [f"run {report.original} (env {report.env_id})"]
    if image:
        out.append(f"image:     {image.reference or image.how}"
                   + (f"  ({image.how}, {image.status})" if image.reference else ""))
    code = report.code
    if isinstance(code, CodePlan):
        out.append(f"code:      commit {code.commit}, diff {code.diff_bytes or 0} bytes, "
                   f"{code.untracked} untracked file(s), mounted at {code.paths.target}")
        for c in code.candidates:
            out.append(f"           {c.what}: {c.where} ({c.state})")
    for d in report.data or ():
        out.append(f"data:      {d.name}: {d.source} → {d.target} "
                   f"({'same' if not d.drifted else 'CHANGED'})")
    env = report.environment_plan
    if env:
        out.append("env:       " + " ".join(f"{k}={v}" for k, v in sorted(env.values.items())))
        for name in env.secrets:
            out.append(f"           {name} from your environment (secret)")
    gpu = report.gpu
    if gpu and gpu.gpu_run:
        out.append(f"gpu:       image CUDA {gpu.image_cuda}, " + ("GPUs given" if gpu.use_gpus else "no GPUs"))
    out.append(f"command:   {' '.join(report.command or ())}  (in {report.workdir})")
    out += [f"note:      {c}" for c in report.caveats or ()]
    return out
