"""Two identical environments share an env_id; so does an environment rebuilt from its lock.

Real virtual environments filled by pip, captured through ``--python``; the lock is
made by ``envcap lock`` and installed by pip in hash-checking mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Venv, make_project, run_envcap

from envcap.capture.collect import snapshot
from envcap.core.manifest import Manifest, compute_ids

BASE_ENV = {"HOME": "/root", "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}


def new_venv(path: Path) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return Venv(path)


def capture(venv: Venv, extra_env: dict[str, str] | None = None) -> Manifest:
    env = {**BASE_ENV, "VIRTUAL_ENV": str(venv.path), **(extra_env or {})}
    return snapshot(python=venv.python, env=env, select=["python", "environment", "os", "libc"])


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Venv]:
    base = tmp_path_factory.mktemp("twins")
    a, b = new_venv(base / "a"), new_venv(base / "elsewhere" / "deeper" / "b")
    for venv in (a, b):
        venv.pip("install", "-q", "six==1.16.0")
    return a, b


def test_two_identical_venvs_at_other_paths_share_an_env_id(twins: tuple[Venv, Venv]) -> None:
    a, b = twins
    ma, mb = capture(a), capture(b)
    # The facts stay: each manifest says where its interpreter lives...
    assert ma.sections["python"]["prefix"] != mb.sections["python"]["prefix"]
    assert ma.sections["environment"]["variables"]["VIRTUAL_ENV"] == str(a.path)
    assert ma.id != mb.id
    # ...and the environment is the same one.
    assert ma.env_id == mb.env_id
    assert ma.platform_id == mb.platform_id


def test_a_directory_added_to_path_does_not_change_the_env_id(twins: tuple[Venv, Venv]) -> None:
    a, _ = twins
    plain = capture(a)
    more = capture(a, {"PATH": f"{a.path}/bin:/opt/tools/bin:{BASE_ENV['PATH']}"})
    assert more.sections["environment"]["variables"]["PATH"].startswith(str(a.path))
    assert plain.env_id == more.env_id


def test_what_is_installed_still_changes_the_env_id(twins: tuple[Venv, Venv], tmp_path: Path) -> None:
    a, _ = twins
    before = capture(a)
    other = new_venv(tmp_path / "other")
    other.pip("install", "-q", "six==1.15.0")
    assert capture(other).env_id != before.env_id
    # A variable that changes what software does is part of the environment.
    assert capture(a, {"OMP_NUM_THREADS": "3"}).env_id != before.env_id


def test_a_manifest_of_schema_1_0_keeps_the_ids_it_was_written_with(twins: tuple[Venv, Venv]) -> None:
    a, b = twins
    old = []
    for venv in (a, b):
        data = capture(venv).to_dict()
        ids = compute_ids(data["sections"], data["layers"], version="1.0.0")
        data.update(schema_version="1.0.0", id=ids.id, env_id=ids.env_id, platform_id=ids.platform_id)
        old.append(Manifest.from_dict(json.loads(json.dumps(data))))
    # Read and verified by the rule it was written with: every section hashed as it is.
    assert old[0].env_id != old[1].env_id
    assert old[0].platform_id == capture(a).platform_id
    assert old[0].id != capture(a).id  # so that an id names one env_id, whichever envcap wrote it


@pytest.mark.slow
def test_an_env_rebuilt_from_its_lock_has_the_same_env_id(tmp_path: Path, isolated: Path) -> None:
    original = new_venv(tmp_path / "original")
    original.pip("install", "-q", "python-dateutil==2.9.0.post0", "six==1.16.0")
    # A local wheel too: the lock pins it by its hash for a --find-links folder.
    src = make_project(tmp_path / "src", "envcap-test-wheel", "1.2.3")
    original.pip("wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheels"), str(src))
    original.pip("install", "-q", str(next((tmp_path / "wheels").glob("*.whl"))))
    before = capture(original)
    kinds = {p["name"]: p["origin"]["kind"] for p in before.sections["python"]["packages"]}
    assert [p["requested"] for p in before.sections["python"]["packages"] if p["name"] == "six"] == [True]
    assert kinds["envcap-test-wheel"] == "file" and kinds["six"] == "index"
    manifest_file = tmp_path / "env.json"
    manifest_file.write_text(before.to_json())
    run_envcap("import", str(manifest_file), check=True)
    lock_dir = tmp_path / "lock"
    proc = run_envcap("lock", before.env_id, "-o", str(lock_dir))
    assert proc.returncode == 0, f"envcap lock (it asks PyPI's simple API for hashes):\n{proc.stderr}"
    rebuilt = new_venv(tmp_path / "rebuilt")
    rebuilt.pip("install", "-q", "--no-deps", "--require-hashes", "--find-links", str(tmp_path / "wheels"),
                "-r", str(lock_dir / "requirements.txt"))
    after = capture(rebuilt)
    after_kinds = {p["name"]: p["origin"]["kind"] for p in after.sections["python"]["packages"]}
    # What pip records: every package is "requested" now; the local wheel is installed
    # from its file URL in the lock, so pip records it as a file again, as the original did.
    assert after_kinds["envcap-test-wheel"] == "file"
    assert [p["requested"] for p in after.sections["python"]["packages"] if p["name"] == "six"] == [True]
    assert sorted((p["name"], p["version"]) for p in after.sections["python"]["packages"]) == \
        sorted((p["name"], p["version"]) for p in before.sections["python"]["packages"])
    assert after.env_id == before.env_id
    assert os.path.exists(lock_dir / "requirements.txt")


def test_names_of_one_interpreter_are_one_environment(twins: tuple[Venv, Venv], tmp_path: Path) -> None:
    # `envcap snapshot` of venv/bin/python3, `envcap run -- python train.py` of venv/bin/python.
    a, _ = twins
    names = sorted(p.name for p in (a.path / "bin").iterdir() if p.name.startswith("python"))
    assert {"python", "python3"} <= set(names)
    files = []
    for name in names:
        m = snapshot(python=str(a.path / "bin" / name), env={**BASE_ENV, "VIRTUAL_ENV": str(a.path)},
                     select=["python", "environment", "os", "libc"])
        assert m.sections["python"]["executable"].endswith("/" + name)  # the fact stays
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(m.to_json())
    ids = {Manifest.from_json(f.read_text()).env_id for f in files}
    assert len(ids) == 1
    out = run_envcap("diff", str(files[0]), str(files[1])).stdout
    assert "software: same environment" in out and "software: differs" not in out


def _as_schema(m: Manifest, version: str) -> Manifest:
    data = m.to_dict()
    ids = compute_ids(data["sections"], data["layers"], version=version)
    data.update(schema_version=version, id=ids.id, env_id=ids.env_id, platform_id=ids.platform_id)
    return Manifest.from_dict(json.loads(json.dumps(data)))


def test_a_change_of_identity_rule_is_no_change_of_environment(twins: tuple[Venv, Venv], tmp_path: Path) -> None:
    # The same machine captured by an envcap writing schema 1.1 and by this one (1.2).
    a, b = twins
    new = capture(a)
    old = _as_schema(new, "1.1.0")
    assert old.env_id != new.env_id  # each keeps the id of its own rule...
    assert old.current_env_id() == new.env_id  # ...and compares by the newest one
    (tmp_path / "old.json").write_text(old.to_json())
    (tmp_path / "new.json").write_text(new.to_json())
    diff = run_envcap("diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert "software: same" in diff.stdout and "software: differs" not in diff.stdout, diff.stdout
    assert "another identity rule" in diff.stdout
    fleet = json.loads(run_envcap("fleet", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json",
                                  "--all-snapshots").stdout)
    assert [g["nodes"] for g in fleet["layers"]["software"]] == [2]
    # Another environment is still another one across rules.
    other = _as_schema(capture(a, {"OMP_NUM_THREADS": "3"}), "1.1.0")
    (tmp_path / "other.json").write_text(other.to_json())
    diff = run_envcap("diff", str(tmp_path / "other.json"), str(tmp_path / "new.json"))
    assert "software: differs" in diff.stdout and "OMP_NUM_THREADS" in diff.stdout
