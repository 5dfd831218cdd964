"""envcap inside the tools people already use: MLflow, Weights & Biases, Hydra, argparse.

Each module imports its tool only when called, and each tool is an optional extra
(``pip install 'envcap[mlflow]'``, ``envcap[wandb]``, ``envcap[hydra]``); argparse is
the standard library's. They record through the run API (:mod:`envcap.runs.api`), so a
parameter from any of them lands in the same list, with the same provenance rules.
"""

from __future__ import annotations

from typing import Any


def environment_facts(record: Any = None) -> dict[str, Any]:
    """What a tracker is told about an envcap run: ids, and the git state (redacted).

    ``record`` is the finished :class:`~envcap.core.run.RunRecord` (``envcap run``);
    without one, the facts of the run this script reports into, with a snapshot taken
    here (see :func:`current_manifest`).
    """
    if record is not None:
        git = dict(record.git)
        facts = {"run_id": record.id, "env_id": record.env_id, "platform_id": record.platform_id,
                 "manifest": record.manifest}
    else:
        from ..runs.api import active_run

        run = active_run()
        manifest = current_manifest()
        git = _git_here()
        facts = {"run_id": run.id if run is not None else None, "env_id": manifest.env_id,
                 "platform_id": manifest.platform_id, "manifest": manifest.id}
    facts["git"] = {k: git.get(k) for k in ("commit", "branch", "dirty", "remote") if git.get(k) is not None}
    return facts


_manifest: Any = None


def current_manifest() -> Any:
    """This interpreter's environment, taken once per process."""
    global _manifest
    if _manifest is None:
        from ..capture.collect import snapshot

        _manifest = snapshot()
    return _manifest


def manifest_json(record: Any = None) -> str:
    """The manifest of ``record`` from the store, or of this process."""
    if record is not None and record.snapshot:
        from ..store.embedded import Store

        with Store(create=False) as store:
            return str(store.get(record.snapshot).to_json())
    return str(current_manifest().to_json())


def _git_here() -> dict[str, Any]:
    import os

    from ..core.redact import default_redactor
    from ..runs.git import capture

    try:
        return dict(capture(os.getcwd(), redactor=default_redactor(), cache=None, file_cap=0, total_cap=0).state)
    except Exception:  # noqa: BLE001 - git facts are a courtesy to the tracker
        return {}
