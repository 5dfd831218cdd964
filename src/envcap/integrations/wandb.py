"""Weights & Biases: an envcap run's environment in a W&B run's config and artifacts.

::

    run = wandb.init(project="p", config={"lr": 0.01})
    envcap.integrations.wandb.log_environment()        # wandb.run unless given

The run's config gains an ``envcap`` entry (``run_id``, ``env_id``, ``platform_id``,
``manifest`` and the git state, redacted as in the run record), and the manifest is
logged as an artifact of type ``environment`` named ``envcap-env-<first 12 hex digits of
env_id>`` (``manifest.json``), so that runs of one environment share an artifact
lineage. Works offline (``WANDB_MODE=offline``) as online. Inside an envcap run, the
envcap run is labelled ``wandb.run_id`` with the W&B run's id. W&B is imported only
when this is called.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ..core.errors import UsageError
from . import environment_facts, manifest_json

ARTIFACT_TYPE = "environment"


def artifact_name(env_id: str | None) -> str:
    """``envcap-env-0123456789ab``: W&B artifact names allow letters, digits, ``-_.``."""
    hexdigits = (env_id or "").removeprefix("sha256:")[:12]
    return f"envcap-env-{hexdigits or 'unknown'}"


def log_environment(wandb_run: Any = None, *, record: Any = None) -> Any:
    """Put the environment into ``wandb_run`` (default: ``wandb.run``); return the artifact.

    ``record`` is the envcap run record to describe; without it, the envcap run this
    script reports into, and a snapshot taken here.
    """
    try:
        import wandb
    except ImportError as exc:
        raise UsageError("the W&B integration needs wandb: pip install 'envcap[wandb]'") from exc
    run = wandb_run if wandb_run is not None else wandb.run
    if run is None:
        raise UsageError("no W&B run: call wandb.init() first, or pass the run")
    facts = environment_facts(record)
    run.config.update({"envcap": facts}, allow_val_change=True)
    artifact = wandb.Artifact(artifact_name(facts.get("env_id")), type=ARTIFACT_TYPE,
                              description="the environment envcap captured for this run",
                              metadata={k: v for k, v in facts.items() if k != "git"})
    with tempfile.TemporaryDirectory(prefix="envcap-wandb-") as scratch:
        path = os.path.join(scratch, "manifest.json")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(manifest_json(record))
        artifact.add_file(path, name="manifest.json")  # copied into W&B's staging area now
    run.log_artifact(artifact)
    if record is None:
        from ..runs.api import active_run

        envcap_run = active_run()
        if envcap_run is not None:
            envcap_run.label("wandb.run_id", str(run.id))
    return artifact
