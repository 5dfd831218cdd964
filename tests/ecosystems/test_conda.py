"""The conda probe against the conda-meta records it reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from envcap.core.errors import ProbeError
from envcap.ecosystems.conda import probe as conda
from envcap.probes.context import Context

TREE = Path(__file__).resolve().parents[1] / "testdata" / "conda-linux64" / "fstree"
PREFIX = TREE / "opt/conda"
TOKEN = "ac-9f2e41b7-58d3-4c0a-b6e1-3d7f09a2c845"
FIELDS = ("name", "version", "build", "channel", "url", "sha256", "md5", "subdir")


def records(prefix: Path) -> list[dict[str, Any]]:
    """What conda-meta says, read here without the probe."""
    out = [json.loads(p.read_text()) for p in (prefix / "conda-meta").glob("*.json")]
    return sorted(out, key=lambda r: r["name"])


def section_of(ctx: Context) -> dict[str, Any]:
    section = conda.collect(ctx).section
    assert section is not None
    return section


def assert_matches_records(packages: list[dict[str, Any]], prefix: Path) -> None:
    expected = records(prefix)
    assert [p["name"] for p in packages] == [r["name"] for r in expected]
    for got, want in zip(packages, expected):
        assert set(got) == set(FIELDS)
        for field in ("name", "version", "build", "sha256", "md5", "subdir"):
            assert got[field] == want[field]
        if TOKEN not in want["url"]:
            assert (got["channel"], got["url"]) == (want["channel"], want["url"])


def test_tree_finds_the_base_environment_in_opt_conda() -> None:
    section = section_of(Context(TREE))
    assert section["prefix"] == "/opt/conda"
    assert len(section["packages"]) == 3
    assert_matches_records(section["packages"], PREFIX)


def test_channel_token_is_redacted() -> None:
    assert TOKEN in (PREFIX / "conda-meta/acme-kernels-0.3.1-cuda12_0.json").read_text()
    section = section_of(Context(TREE))
    assert TOKEN not in json.dumps(section)
    acme = next(p for p in section["packages"] if p["name"] == "acme-kernels")
    assert acme["url"] == (
        "https://conda.anaconda.org/t/[REDACTED]/acme-private/linux-64/acme-kernels-0.3.1-cuda12_0.tar.bz2"
    )
    assert acme["channel"] == "https://conda.anaconda.org/t/[REDACTED]/acme-private/linux-64"


def test_active_environment_from_conda_prefix() -> None:
    section = section_of(Context("/", env={"CONDA_PREFIX": str(PREFIX)}))
    assert section["prefix"] == str(PREFIX)
    assert_matches_records(section["packages"], PREFIX)


def test_conda_prefix_argument_wins_over_the_active_one(tmp_path: Path) -> None:
    ctx = Context("/", env={"CONDA_PREFIX": str(tmp_path)}, conda_prefix=str(PREFIX))
    assert section_of(ctx)["prefix"] == str(PREFIX)


def test_an_active_prefix_without_conda_meta_is_not_guessed_past(tmp_path: Path) -> None:
    assert conda.collect(Context("/", env={"CONDA_PREFIX": str(tmp_path)})).section is None


def test_python_prefix_under_root(tmp_path: Path) -> None:
    # An environment in no common place is found through the Python it holds.
    shutil.copytree(PREFIX, tmp_path / "srv/envs/train", symlinks=True)
    assert conda.collect(Context(tmp_path)).section is None
    ctx = Context(tmp_path, python="/srv/envs/train/bin/python")
    section = section_of(ctx)
    assert section["prefix"] == "/srv/envs/train"
    assert_matches_records(section["packages"], tmp_path / "srv/envs/train")


def test_no_conda_is_quietly_absent(tmp_path: Path) -> None:
    assert conda.collect(Context(tmp_path)).section is None


def test_corrupt_record_names_file_and_line(tmp_path: Path) -> None:
    meta = tmp_path / "opt/miniforge3/conda-meta"
    shutil.copytree(PREFIX / "conda-meta", meta)
    (meta / "zlib-1.3.1-h4ab18f5_1.json").write_text('{\n  "name": "zlib",\n  "version": 1.3\n')
    with pytest.raises(
        ProbeError, match=r"/opt/miniforge3/conda-meta/zlib-1.3.1-h4ab18f5_1.json:4: not valid JSON"
    ):
        conda.collect(Context(tmp_path))


def test_record_with_a_non_string_field_is_an_error() -> None:
    with pytest.raises(ProbeError, match=r"x.json: field 'version' is float"):
        conda.parse_record('{"name": "zlib", "version": 1.3}', "x.json")


def test_probe_registration() -> None:
    assert conda.PROBE.name == "conda" and conda.PROBE.section == "conda"
    assert conda.PROBE.reads_files and conda.PROBE.tags == {"conda", "packages"}
