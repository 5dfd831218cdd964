"""Hostile and mistaken input: a clear error, exit 2, no traceback, nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from runs_helpers import assert_clean_failure, envcap, run_id_of

BAD_FILES = {
    "bad.yaml": ("lr: [0.1\n", "not valid YAML"),
    "bad.json": ('{"lr": 0.1,}', "not valid JSON"),
    "bad.toml": ("lr = = 1\n", "not valid TOML"),
    "list.json": ("[1, 2]", "top level must be a mapping"),
    "params.ini": ("lr=1\n", ".yaml, .yml, .json or .toml"),
    "binary.json": (b"\xff\xfe{}", "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_params_file_stops_the_run_before_anything_happens(tmp_path: Path, isolated: Path, name: str) -> None:
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    marker = tmp_path / "ran"
    proc = envcap("run", "--params-file", str(path), "--", "touch", str(marker), cwd=tmp_path)
    assert_clean_failure(proc, name, message)
    assert not marker.exists()
    assert not isolated.exists() or not any(isolated.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--params-file", "missing.yaml"], "no such file"),
    (["--data", "nowhere/"], "--data nowhere/: no such file or directory"),
    (["--param", "novalue"], "must look like name=value"),
    (["--seed", "seven"], "must be an integer"),
    (["--seed", "-1"], "between 0 and"),
    (["--label", "bad key=1"], "label"),
    (["--python", "/no/such/python"], "--python /no/such/python"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path: Path, isolated: Path, args: list[str],
                                                            message: str) -> None:
    proc = envcap("run", *args, "--", "true", cwd=tmp_path)
    assert_clean_failure(proc, message)
    assert not isolated.exists() or not any(isolated.iterdir())


def test_a_command_that_does_not_exist(tmp_path: Path, isolated: Path) -> None:
    assert_clean_failure(envcap("run", "--", "no-such-command-envcap", cwd=tmp_path), "command not found")
    assert_clean_failure(envcap("run", cwd=tmp_path), "give the command")
    assert not isolated.exists() or not any(isolated.iterdir())


def test_yaml_without_pyyaml_says_what_to_install(tmp_path: Path, isolated: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "yaml.py").write_text("raise ModuleNotFoundError(\"No module named 'yaml'\", name='yaml')\n")
    (tmp_path / "p.yaml").write_text("lr: 0.1\n")
    proc = envcap("run", "--params-file", "p.yaml", "--", "true", cwd=tmp_path, env={"PYTHONPATH": str(fake)})
    assert_clean_failure(proc, "needs PyYAML", "pip install pyyaml")


def test_unknown_runs_are_clean_errors(tmp_path: Path) -> None:
    run_id_of(envcap("run", "--", "true", cwd=tmp_path, check=True))
    for args in (["show", "01ZZZZZZZZZZ"], ["note", "01ZZZZZZZZ", "x"], ["audit", "01ZZZZZZZZ"],
                 ["export", "01ZZZZZZZZ", "-o", str(tmp_path / "x.zip")], ["note", "!!", "x"]):
        proc = envcap(*args)
        assert_clean_failure(proc, "run")
    assert not (tmp_path / "x.zip").exists()


def test_an_ambiguous_prefix_asks_for_more(tmp_path: Path) -> None:
    ids = [run_id_of(envcap("run", "--", "true", cwd=tmp_path, check=True)) for _ in range(2)]
    common = 0
    while ids[0][common] == ids[1][common]:
        common += 1
    if common >= 4:
        assert_clean_failure(envcap("note", ids[0][:common], "x"), "give more characters")


def test_a_malformed_where_is_a_clean_error(tmp_path: Path) -> None:
    envcap("run", "--", sys.executable, "-c", "pass", cwd=tmp_path, check=True)
    assert_clean_failure(envcap("runs", "--where", "params.lr"), "FIELD OP VALUE")


def test_import_of_a_missing_bundle(tmp_path: Path, isolated: Path) -> None:
    assert_clean_failure(envcap("import", str(tmp_path / "none.zip")), "no such file")
    assert not isolated.exists() or not any(isolated.iterdir())
