"""What a rebuild gives the command: the recorded environment (never secrets), parameters,
seeds, and paths in the container that do not hide the image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envcap.core.manifest import Manifest
from envcap.reproduce import plan
from envcap.reproduce.errors import RebuildError
from envcap.runs.data import HashCache
from envcap.core.run import FINISHED, Param, RunRecord, new_run_id

SECTIONS: dict[str, Any] = {
    "python": {"version": "3.11.2", "executable": "/opt/venv/bin/python", "prefix": "/opt/venv",
               "base_prefix": "/usr", "packages": [{"name": "numpy", "version": "2.2.6"}]},
    "environment": {"variables": {
        "PATH": "/opt/venv/bin:/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
        "HF_TOKEN": "[REDACTED]", "CUDA_HOME": "/usr/local/cuda", "ENVCAP_HOME": "/x",
    }},
}


def original(*, sections: dict[str, Any] | None = None, **changes: Any) -> plan.Original:
    fields: dict[str, Any] = {
        "id": new_run_id(), "state": FINISHED, "mode": "cli", "argv": ("python", "train.py", "--epochs", "3"),
        "command": "python train.py --epochs 3", "cwd": "src", "host": "h", "started_at": "2026-11-26T00:00:00.000Z",
        "exit_code": 0, "manifest": "sha256:" + "1" * 64,
        "git": {"in_repository": True, "root": "/home/ada/proj", "commit": "a" * 40},
        "params": (Param(name="lr", value=0.1, source="user"), Param(name="epochs", value=3, source="default"),
                   Param(name="api_key", value="[REDACTED]", source="user")),
        "seeds": {"global": 7, "named": {"shuffle": 123}, "set": [],
                  "determinism": {"env": {"PYTHONHASHSEED": "9"}}},
    }
    fields.update(changes)
    manifest = Manifest.create(sections if sections is not None else SECTIONS,
                               {"software": list(sections if sections is not None else SECTIONS)})
    return plan.Original(RunRecord(**fields), manifest)


def test_recorded_variables_are_restored_and_secrets_are_not() -> None:
    env = plan.environment(original(), caller_env={})
    assert env.values["PATH"] == "/opt/venv/bin:/usr/bin:/bin"
    assert env.values["PYTHONHASHSEED"] == "0" and env.values["OMP_NUM_THREADS"] == "1"
    assert "HF_TOKEN" not in env.values and env.withheld == ("HF_TOKEN",)
    assert not any(k.startswith("ENVCAP_") for k in env.values)


def test_secret_env_comes_from_the_caller_by_name_only() -> None:
    env = plan.environment(original(), secret_names=["HF_TOKEN"], caller_env={"HF_TOKEN": "hf_abc"})
    assert env.secrets == ("HF_TOKEN",) and env.withheld == ()
    assert "hf_abc" not in json.dumps(env.to_dict())
    with pytest.raises(RebuildError, match="WANDB_API_KEY is not set in your environment"):
        plan.environment(original(), secret_names=["WANDB_API_KEY"], caller_env={})
    with pytest.raises(RebuildError, match="not a variable name"):
        plan.environment(original(), secret_names=["A;rm -rf /"], caller_env={"A;rm -rf /": "x"})


def test_without_a_snapshot_of_the_environment_the_seed_switches_are_used() -> None:
    sections = {"python": SECTIONS["python"]}
    env = plan.environment(original(sections=sections), caller_env={})
    assert {k: v for k, v in env.values.items() if k != "PYTHONPATH"} == {"PYTHONHASHSEED": "9"}


def test_envcap_is_made_importable_only_for_scripts_that_use_its_api() -> None:
    cli_only = original(params=(Param(name="lr", value=0.1, source="user"),))
    assert "PYTHONPATH" not in plan.environment(cli_only, caller_env={}).values
    uses = plan.environment(original(), caller_env={})  # a default parameter: the API was used
    assert uses.values["PYTHONPATH"] == plan.CONTAINER_LIB and "PYTHONPATH" in uses.added
    # Already on the recorded path (the run was recorded that way): nothing changes.
    sections = json.loads(json.dumps(SECTIONS))
    sections["environment"]["variables"]["PYTHONPATH"] = f"/opt/x:{plan.CONTAINER_LIB}"
    same = plan.environment(original(sections=sections), caller_env={})
    assert same.values["PYTHONPATH"] == f"/opt/x:{plan.CONTAINER_LIB}" and not same.added


def test_parameters_and_seeds_are_the_runs() -> None:
    o = original()
    given, withheld = plan.user_params(o.record)
    assert given == {"lr": 0.1} and withheld == ["api_key"]
    assert plan.seed_env(o.record) == {"ENVCAP_SEED": "7", "ENVCAP_SEEDS": '{"shuffle": 123}'}


def test_a_command_with_a_redacted_secret_is_refused() -> None:
    o = original(argv=("python", "train.py", "--token", "[REDACTED]"))
    with pytest.raises(RebuildError, match="argument 3.*--secret-env"):
        plan.command(o.record)


@pytest.mark.parametrize("path,hides", [
    ("/home/ada/proj", False), ("/tmp/x", False), ("/", True), ("/usr", True), ("/usr/local/src", True),
    ("/opt", True), ("/opt/venv/lib", True), ("/var", True), ("/var/tmp/p", False), ("relative", True),
])
def test_mounts_never_hide_the_image(path: str, hides: bool) -> None:
    assert plan.hides_image(path, ["/opt/venv", "/usr"]) is hides


def test_code_is_mounted_where_it_was_unless_that_hides_the_image() -> None:
    paths = plan.code_paths(original())
    assert (paths.target, paths.workdir, paths.moved) == ("/home/ada/proj", "/home/ada/proj/src", False)
    moved = original(git={"in_repository": True, "root": "/opt", "commit": "a" * 40})
    paths = plan.code_paths(moved)
    assert (paths.target, paths.workdir, paths.moved) == ("/workspace", "/workspace/src", True)
    assert plan.container_path(moved, paths, "/opt/data/x.csv") == "/workspace/data/x.csv"


def test_data_is_checked_where_it_will_be_read(tmp_path: Path) -> None:
    from envcap.runs.data import dataset_entry, fingerprint

    data = tmp_path / "train.csv"
    data.write_text("1,2\n")
    entry = dataset_entry(str(data), fingerprint(data))
    o = original(data=(entry,))
    paths = plan.code_paths(o)
    [check] = plan.check_data(o, paths, (), HashCache())
    assert not check.drifted and check.target == str(data)
    copy = tmp_path / "elsewhere.csv"
    copy.write_text("1,2\n3,4\n")
    [moved] = plan.check_data(o, paths, (f"train.csv={copy}",), HashCache())
    assert moved.drifted and moved.source == str(copy) and moved.target == str(data)
    with pytest.raises(RebuildError, match="no dataset named test.csv.*train.csv"):
        plan.check_data(o, paths, (f"test.csv={copy}",), HashCache())
    with pytest.raises(RebuildError, match="NAME=PATH"):
        plan.check_data(o, paths, ("train.csv",), HashCache())
    data.unlink()
    with pytest.raises(RebuildError, match="does not exist on this machine.*--data train.csv=PATH"):
        plan.check_data(o, paths, (), HashCache())


def test_outputs_inside_and_outside_the_code(tmp_path: Path) -> None:
    outputs = ({"path": "model.bin", "abspath": "/home/ada/proj/src/model.bin", "fingerprint": "sha256:x"},
               {"path": "/scratch/out/preds.npy", "abspath": "/scratch/out/preds.npy", "fingerprint": "sha256:y"},
               {"path": "/usr/share/x", "abspath": "/usr/share/x", "fingerprint": "sha256:z"})
    o = original(outputs=outputs)
    inside, outside, hidden = plan.plan_outputs(o, plan.code_paths(o), "/ws", str(tmp_path))
    assert inside.host == "/ws/src/model.bin" and inside.mount is None
    assert outside.mount == (str(tmp_path / "output-1"), "/scratch/out")
    assert outside.host == str(tmp_path / "output-1" / "preds.npy")
    assert hidden.host is None and "not compared" in (hidden.note or "")


def test_options_are_checked() -> None:
    with pytest.raises(RebuildError, match="--engine"):
        plan.RebuildOptions(engine="lxc")
    with pytest.raises(RebuildError, match="--rtol"):
        plan.RebuildOptions(rtol=-1)
    with pytest.raises(RebuildError, match="--atol"):
        plan.RebuildOptions(atol=float("nan"))
