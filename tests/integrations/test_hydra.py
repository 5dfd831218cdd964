"""Hydra: a real @hydra.main app run through `envcap run` with overrides."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hydra")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import envcap, run_id_of, show

APP = textwrap.dedent("""\
    import hydra
    import envcap.integrations.hydra as eh

    @hydra.main(config_path="conf", config_name="config", version_base=None)
    def main(cfg):
        eh.log_config(cfg)
        print("lr", cfg.optim.lr)

    if __name__ == "__main__":
        main()
""")
PLAIN_APP = textwrap.dedent("""\
    import hydra

    @hydra.main(config_path="conf", config_name="config", version_base=None)
    def main(cfg):
        pass

    if __name__ == "__main__":
        main()
""")
CONFIG = textwrap.dedent("""\
    defaults:
      - db: sqlite
      - _self_
    optim:
      lr: 0.01
      momentum: 0.9
      warmup_lr: ${optim.lr}
    epochs: 10
    name: run_${epochs}
    layers: [64, 64]
    api_token: abc123-not-to-be-stored
""")
SQLITE = "driver: sqlite\nhost: localhost\n"
POSTGRES = "driver: postgres\nhost: db.internal\nport: 5432\n"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "conf" / "db").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG)
    (tmp_path / "conf" / "db" / "sqlite.yaml").write_text(SQLITE)
    (tmp_path / "conf" / "db" / "postgres.yaml").write_text(POSTGRES)
    (tmp_path / "train.py").write_text(APP)
    (tmp_path / "plain.py").write_text(PLAIN_APP)
    return tmp_path


def _params(view: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    return {p["name"]: (p["value"], p["source"]) for p in view["params"]}


def test_overrides_are_user_defaults_default_interpolations_derived(app: Path, isolated: Path) -> None:
    proc = envcap("run", "--", sys.executable, "train.py", "optim.lr=0.1", "db=postgres", "+extra=7",
                  cwd=app)
    assert proc.returncode == 0, proc.stderr
    assert "lr 0.1" in proc.stdout
    view = show(run_id_of(proc))
    params = _params(view)
    assert params["optim.lr"] == (0.1, "user")
    assert params["extra"] == (7, "user")
    assert params["optim.momentum"] == (0.9, "default")
    assert params["epochs"] == (10, "default")
    assert params["layers"] == ([64, 64], "default")
    assert params["optim.warmup_lr"] == (0.1, "derived")       # ${optim.lr}, resolved after the override
    assert params["name"] == ("run_10", "derived")
    assert params["hydra.choices.db"] == ("postgres", "user")
    assert params["db.driver"] == ("postgres", "default")       # from the chosen file
    assert params["db.port"] == (5432, "default")
    assert params["api_token"] == ("[REDACTED]", "default")
    (config,) = view["configs"]
    assert config["name"] == "hydra" and config["format"] == "yaml"
    assert config["overrides"] == ["optim.lr=0.1", "db=postgres", "+extra=7"]
    from envcap.store.embedded import Store

    with Store(isolated, create=False) as store:
        text = store.get_object(config["object"]).decode()
    assert "warmup_lr: ${optim.lr}" in text and "lr: 0.1" in text and "driver: postgres" in text
    assert "abc123" not in text


def test_without_overrides_everything_is_a_default_or_derived(app: Path) -> None:
    proc = envcap("run", "--", sys.executable, "train.py", cwd=app)
    assert proc.returncode == 0, proc.stderr
    params = _params(show(run_id_of(proc)))
    assert {s for _, s in params.values()} == {"default", "derived"}
    assert params["hydra.choices.db"] == ("sqlite", "default")
    assert params["optim.warmup_lr"] == (0.01, "derived")


def test_the_callback_records_an_unchanged_script(app: Path) -> None:
    proc = envcap("run", "--", sys.executable, "plain.py", "epochs=3",
                  "+hydra.callbacks.envcap._target_=envcap.integrations.hydra.Callback", cwd=app)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    params = _params(view)
    assert params["epochs"] == (3, "user")
    assert params["name"] == ("run_3", "derived")
    assert params["optim.lr"] == (0.01, "default")
    assert not any(n.startswith(("hydra.callbacks", "hydra.run")) for n in params), params
    assert view["configs"][0]["name"] == "hydra"


def _sweep_runs(parent: str) -> list[dict[str, Any]]:
    import json

    listed = json.loads(envcap("runs", "--json", "--label", f"sweep={parent}", check=True).stdout)
    runs = listed if isinstance(listed, list) else listed["runs"]
    return [show(r["id"]) for r in runs]


@pytest.mark.parametrize("script, extra", [
    ("train.py", []),
    ("plain.py", ["+hydra.callbacks.envcap._target_=envcap.integrations.hydra.Callback"]),
], ids=["log_config", "callback"])
def test_a_multirun_records_each_job_as_a_run_of_one_sweep(app: Path, script: str, extra: list[str]) -> None:
    proc = envcap("run", "--", sys.executable, script, "-m", "optim.lr=0.1,0.2", *extra, cwd=app)
    assert proc.returncode == 0, proc.stderr
    assert "raised" not in proc.stderr and "AttributeError" not in proc.stderr, proc.stderr
    parent = show(run_id_of(proc))
    assert parent["labels"].get("sweep") == parent["id"] and parent["problems"] == []
    jobs = sorted((v for v in _sweep_runs(parent["id"]) if v["id"] != parent["id"]),
                  key=lambda v: v["labels"]["hydra.job.num"])
    assert [v["labels"]["hydra.job.num"] for v in jobs] == ["0", "1"]
    assert [_params(v)["optim.lr"] for v in jobs] == [(0.1, "user"), (0.2, "user")]
    assert [_params(v)["optim.warmup_lr"] for v in jobs] == [(0.1, "derived"), (0.2, "derived")]
    for v in jobs:
        assert v["status"] == "ok" and v["problems"] == [], v
        assert v["configs"][0]["name"] == "hydra" and v["env_id"] == parent["env_id"]
