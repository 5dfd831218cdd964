"""``envcap rebuild`` through the real entry point, for what needs no container: refusals,
``--dry-run``, and a reproduction linked both ways (record, query, show, bundles, diff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from rebuild_support import envcap

from envcap.store import images as image_store
from envcap.store import runs as runs_store
from envcap.core.run import FINISHED, RunRecord, new_run_id
from envcap.store.embedded import Store

SCRIPT = """\
import json, os
with open(os.path.join(os.environ["ENVCAP_RUN_DIR"], "metrics.jsonl"), "a") as fh:
    fh.write(json.dumps({"name": "loss", "value": 0.25}) + "\\n")
"""


@pytest.fixture
def recorded(tmp_path: Path, isolated: Path) -> dict[str, Any]:
    """A run recorded on this machine with the real `envcap run`, and its store."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text(SCRIPT)
    git(proj, "init", "-q", "-b", "main")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "one")
    data = tmp_path / "train.csv"
    data.write_text("1,2\n")
    proc = envcap("run", "--seed", "3", "--data", str(data), "--", sys.executable, "train.py", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    run_id = next(line.split()[2] for line in proc.stderr.splitlines()
                  if line.startswith("envcap: run ") and "recorded" not in line)
    return {"id": run_id, "proj": proj, "data": data, "home": isolated}


def _env_id(home: Path, run_id: str) -> str:
    with Store(home) as store:
        return str(runs_store.load(store, run_id).env_id)


def test_no_image_and_no_registry_is_a_clear_error(recorded: dict[str, Any]) -> None:
    proc = envcap("rebuild", recorded["id"], "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert "has no image in this store" in proc.stderr and "--registry" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_shows_the_plan_and_changes_nothing(recorded: dict[str, Any]) -> None:
    home = recorded["home"]
    with Store(home) as store:
        image_store.record(store, image_store.ImageRecord(
            env_id=_env_id(home, recorded["id"]), repository="127.0.0.1:5000/envs", tag="t",
            digest="sha256:" + "c" * 64, status="complete", engine="docker", base=""))
    before = sorted(p.name for p in home.iterdir())
    proc = envcap("rebuild", recorded["id"][:8].lower(), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["image"]["reference"] == "127.0.0.1:5000/envs@sha256:" + "c" * 64
    assert plan["command"] == [sys.executable, "train.py"]
    assert plan["data"][0]["same"] and plan["data"][0]["source"] == str(recorded["data"])
    found = {c["where"]: c["state"] for c in plan["code"]["candidates"]}
    assert found[str(recorded["proj"])] == "has the commit"
    assert plan["workdir"] == str(recorded["proj"])
    assert sorted(p.name for p in home.iterdir()) == before and not (home / "rebuilds").exists()
    text = envcap("rebuild", recorded["id"], "--dry-run")
    assert text.returncode == 0 and "command:" in text.stdout and "train.py" in text.stdout


def test_changed_data_is_refused_before_anything_runs(recorded: dict[str, Any]) -> None:
    recorded["data"].write_text("1,2\n3,4\n")
    proc = envcap("rebuild", recorded["id"], "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "not reproduced" and report["rebuild"] is None
    assert "data train.csv changed" in report["reasons"][0] and "Nothing was run" in report["reasons"][0]
    assert not report["data"][0]["same"]
    with Store(recorded["home"]) as store:
        assert runs_store.all_ids(store) == [recorded["id"]]


def test_options_that_cannot_go_together(recorded: dict[str, Any]) -> None:
    proc = envcap("rebuild", recorded["id"], "--print", "--dry-run")
    assert proc.returncode == 2 and "cannot be combined" in proc.stderr
    assert envcap("rebuild", "01ZZZZZZZZ").returncode == 2
    proc = envcap("rebuild", recorded["id"], "--secret-env", "NOT_SET_ANYWHERE_X", "--dry-run")
    assert proc.returncode == 2 and "NOT_SET_ANYWHERE_X is not set" in proc.stderr


def _reproduction(original: RunRecord, verdict: str) -> RunRecord:
    return original.evolve(id=new_run_id(), mode="rebuild",
                           reproduction={"of": original.id, "verdict": verdict, "reasons": []})


def test_a_reproduction_is_linked_both_ways(recorded: dict[str, Any], tmp_path: Path) -> None:
    home = recorded["home"]
    with Store(home) as store:
        original = runs_store.load(store, recorded["id"])
        assert "reproduction" not in original.to_dict()  # records of other runs keep their bytes
        again = _reproduction(original, "reproduced")
        runs_store.put_record(store, again)
    shown = json.loads(envcap("show", recorded["id"], "--json").stdout)
    assert shown["reproduced_by"] == [{"run": again.id, "verdict": "reproduced"}]
    text = envcap("show", again.id).stdout
    assert f"reproduces  run {recorded['id']}: reproduced" in text
    listed = json.loads(envcap("runs", "--json", "--where", f"reproduction.of={recorded['id']}").stdout)
    assert [r["id"] for r in listed] == [again.id]
    # Both ids name an environment for envcap diff.
    assert envcap("diff", recorded["id"], again.id).returncode == 0
    # A bundle carries the link into another store.
    bundle = tmp_path / "again.zip"
    assert envcap("export", again.id, "-o", str(bundle)).returncode == 0
    other = tmp_path / "other-home"
    assert envcap("import", str(bundle), env={"ENVCAP_HOME": str(other)}).returncode == 0
    with Store(other) as store:
        assert runs_store.reproductions(store, recorded["id"]) == [{"run": again.id, "verdict": "reproduced"}]
        loaded = runs_store.load(store, again.id)
    assert loaded.reproduction is not None and loaded.reproduction["of"] == recorded["id"]


def test_a_reproduction_field_must_name_a_run() -> None:
    from envcap.core.errors import StoreError

    record = RunRecord(id=new_run_id(), state=FINISHED, mode="rebuild", argv=("x",), command="x", cwd=".",
                       host=None, started_at="t", reproduction={"of": "nope"})
    with pytest.raises(StoreError, match="reproduction.of"):
        RunRecord.from_dict(record.to_dict())
