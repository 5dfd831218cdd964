"""`envcap export` and `envcap import` of a bundle: a round trip into an empty store, with
every hash re-verified; damaged bundles are refused whole."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from runs_helpers import (
    assert_clean_failure,
    envcap,
    make_repo,
    run_id_of,
    run_rows,
    show,
)

from envcap.store import runs as runs_store
from envcap.runs.git import restore
from envcap.store.embedded import Store


def exported(tmp_path: Path) -> tuple[str, Path, Path]:
    repo = make_repo(tmp_path / "proj", {"train.py": "print('hi')\n", "cfg.json": '{"lr": 0.1}'})
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "scratch.txt").write_text("untracked\n")
    (repo / "metrics.py").write_text(
        "import json, os\nopen(os.environ['ENVCAP_RUN_DIR'] + '/metrics.jsonl', 'w').write("
        "json.dumps({'name': 'acc', 'value': 0.5}) + '\\n')\n")
    proc = envcap("run", "--params-file", "cfg.json", "--seed", "3", "--data", "cfg.json", "--note", "n1",
                  "--", sys.executable, "metrics.py", cwd=repo, check=True)
    run_id = run_id_of(proc)
    envcap("note", run_id, "n2", check=True)
    bundle = tmp_path / "bundle.zip"
    out = envcap("export", run_id, "-o", str(bundle), check=True)
    assert run_id in out.stdout
    return run_id, bundle, repo


def test_round_trip_into_an_empty_store(tmp_path: Path, monkeypatch) -> None:
    run_id, bundle, repo = exported(tmp_path)
    original = show(run_id)
    names = set(zipfile.ZipFile(bundle).namelist())
    assert {"README.md", "envcap-bundle.json", "run.json", "environment/manifest.json", "code/diff.patch",
            "code/untracked/scratch.txt", "params/cfg.json", "metrics.jsonl", "params.json", "seeds.json",
            "data.json", "notes.json"} <= names
    readme = zipfile.ZipFile(bundle).read("README.md").decode()
    assert run_id in readme and "git apply" in readme and original["git"]["commit"] in readme
    other = {"ENVCAP_HOME": str(tmp_path / "other-store")}
    out = envcap("import", str(bundle), env=other, check=True)
    assert f"run {run_id}" in out.stdout
    copied = show(run_id, env=other)
    assert copied == original
    assert envcap("verify", env=other, check=True).returncode == 0
    # Importing again changes nothing (and adds no second copy of the notes).
    envcap("import", str(bundle), env=other, check=True)
    assert show(run_id, env=other) == original
    # The code can be rebuilt from the imported store alone.
    monkeypatch.setenv("ENVCAP_HOME", other["ENVCAP_HOME"])
    with Store() as store:
        record = runs_store.load(store, run_id)
        assert restore(dict(record.git), store, str(repo), str(tmp_path / "rebuilt")) == []
    assert (tmp_path / "rebuilt" / "train.py").read_text() == "print('changed')\n"
    assert (tmp_path / "rebuilt" / "scratch.txt").read_text() == "untracked\n"


def test_export_is_deterministic(tmp_path: Path) -> None:
    run_id, bundle, _ = exported(tmp_path)
    again = tmp_path / "again.zip"
    envcap("export", run_id, "-o", str(again), check=True)
    assert again.read_bytes() == bundle.read_bytes()


def rewrite(bundle: Path, out: Path, change: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change.get(name, src.read(name)))
    return out


def test_damaged_bundles_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    _, bundle, _ = exported(tmp_path)
    empty = tmp_path / "empty-store"
    env = {"ENVCAP_HOME": str(empty)}
    data = bundle.read_bytes()
    cases = {
        "does not match its hash": rewrite(bundle, tmp_path / "b1.zip", {"code/diff.patch": b"forged\n"}),
        "not a readable bundle": tmp_path / "truncated.zip",
        "not an envcap bundle": tmp_path / "plain.zip",
        "is not listed": tmp_path / "extra.zip",
    }
    cases["not a readable bundle"].write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(cases["not an envcap bundle"], "w") as zf:
        zf.writestr("hello.txt", "hi")
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(cases["is not listed"], "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("smuggled.sh", "rm -rf /")
    for fragment, path in cases.items():
        proc = envcap("import", str(path), env=env)
        assert_clean_failure(proc, fragment)
        assert not empty.exists(), fragment


def test_a_forged_record_and_index_are_still_refused(tmp_path: Path) -> None:
    """Editing run.json and its hash in the index leaves the record's id wrong."""
    _, bundle, _ = exported(tmp_path)
    with zipfile.ZipFile(bundle) as zf:
        index = json.loads(zf.read("envcap-bundle.json"))
        record = json.loads(zf.read("run.json"))
    record["exit_code"] = 0
    record["metrics"] = {"acc": 0.99}
    forged = json.dumps(record).encode()
    from envcap.core.canonical import digest

    index["files"]["run.json"] = digest(forged)
    out = rewrite(bundle, tmp_path / "forged.zip", {"run.json": forged, "envcap-bundle.json": json.dumps(index).encode()})
    proc = envcap("import", str(out), env={"ENVCAP_HOME": str(tmp_path / "s")})
    assert_clean_failure(proc, "run.json is not the record")
    assert run_rows(tmp_path / "s") == []
