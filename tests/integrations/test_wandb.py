"""W&B in offline mode: the environment read back from the offline run directory."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wandb")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from runs_helpers import envcap, make_repo, run_id_of, show
from wandb_offline import offline_runs, records

SCRIPT = textwrap.dedent("""\
    import wandb, envcap.integrations.wandb as ew
    run = wandb.init(project="envcap-test", config={"lr": 0.01, "epochs": 3})
    ew.log_environment()
    run.log({"loss": 0.25})
    run.finish()
""")


def _offline_env(tmp_path: Path) -> dict[str, str]:
    return {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path),
            "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
            "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}


def _read(run_dir: str) -> tuple[dict[str, Any], list[Any]]:
    config: dict[str, Any] = {}
    artifacts = []
    for record in records(run_dir):
        kind = record.WhichOneof("record_type")
        items = record.config.update if kind == "config" else record.run.config.update if kind == "run" else ()
        for item in items:
            config[item.key] = json.loads(item.value_json)
        if kind == "artifact":
            artifacts.append(record.artifact)
    return config, artifacts


def test_config_and_artifact_of_an_offline_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": SCRIPT})
    proc = envcap("run", "--", sys.executable, "train.py", cwd=repo, env=_offline_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    (run_dir,) = offline_runs(str(tmp_path))
    config, artifacts = _read(run_dir)
    assert config["lr"] == 0.01 and config["epochs"] == 3  # the script's own config is intact
    facts = config["envcap"]
    assert facts["run_id"] == view["id"]
    # The snapshot taken in the script describes the same environment envcap run recorded.
    assert facts["env_id"] == view["env_id"] and facts["platform_id"] == view["platform_id"]
    assert facts["git"] == {"commit": view["git"]["commit"], "branch": "main", "dirty": False}
    (artifact,) = artifacts
    assert artifact.type == "environment"
    assert artifact.name == "envcap-env-" + view["env_id"].removeprefix("sha256:")[:12]
    assert json.loads(artifact.metadata)["env_id"] == view["env_id"]
    (entry,) = artifact.manifest.contents
    assert entry.path == "manifest.json"
    content = Path(entry.local_path).read_bytes()
    assert base64.b64encode(hashlib.md5(content).digest()).decode() == entry.digest
    assert json.loads(content)["env_id"] == view["env_id"]
    assert view["labels"]["wandb.run_id"] == Path(run_dir).name.rsplit("-", 1)[1]


def test_no_wandb_run_is_a_clear_error(tmp_path: Path) -> None:
    from envcap.core.errors import UsageError
    from envcap.integrations import wandb as ew

    with pytest.raises(UsageError, match="wandb.init"):
        ew.log_environment()
