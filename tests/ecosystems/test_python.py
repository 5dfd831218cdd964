"""The python probe against pip's own view of the same interpreter."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from conftest import H200, H200_TREE, Venv, git

from envcap.ecosystems.python import probe as python_probe
from envcap.ecosystems.python.dists import normalize, parse_metadata_headers
from envcap.probes.context import Context


def pip_list(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True).stdout
    return {normalize(p["name"]): p["version"] for p in json.loads(out)}


def collect(python: str) -> dict:
    finding = python_probe.collect(Context("/", python=python))
    assert finding.section is not None
    return finding.section


def test_packages_equal_pip_list_of_the_same_interpreter(venv: Venv) -> None:
    section = collect(venv.python)
    assert {p["name"]: p["version"] for p in section["packages"]} == pip_list(venv.python)
    assert len(section["packages"]) == len(pip_list(venv.python))


def test_own_interpreter_equals_pip_list() -> None:
    section = python_probe.collect(Context("/")).section
    assert section is not None
    assert {p["name"]: p["version"] for p in section["packages"]} == pip_list(sys.executable)


def test_interpreter_facts_come_from_the_interpreter(venv: Venv) -> None:
    section = collect(venv.python)
    facts = json.loads(subprocess.run(
        [venv.python, "-c", "import sys, platform, json; print(json.dumps([platform.python_version(), "
         "platform.python_implementation(), sys.executable, sys.prefix]))"],
        check=True, capture_output=True, text=True).stdout)
    assert [section["version"], section["implementation"], section["executable"], section["prefix"]] == facts
    assert section["build"]["SOABI"]  # from sysconfig


def test_origins_are_what_pip_recorded(venv: Venv) -> None:
    packages = {p["name"]: p for p in collect(venv.python)["packages"]}
    assert packages["six"]["origin"] == {"kind": "index"}
    assert packages["six"]["installer"] == "pip" and packages["six"]["requested"] is True

    wheel = packages["envcap-test-wheel"]["origin"]
    assert wheel["kind"] == "file"
    assert wheel["sha256"] == hashlib.sha256(venv.wheel.read_bytes()).hexdigest()  # type: ignore[attr-defined]

    vcs = packages["envcap-test-vcs"]["origin"]
    assert vcs["kind"] == "vcs" and vcs["vcs"] == "git"
    assert vcs["commit"] == git(venv.vcs_src, "rev-parse", "HEAD")  # type: ignore[attr-defined]

    editable = packages["envcap-test-editable"]["origin"]
    assert editable["kind"] == "editable"
    assert editable["git"]["commit"] == git(venv.editable_src, "rev-parse", "HEAD")  # type: ignore[attr-defined]
    assert editable["git"]["dirty"] is False


def test_editable_checkout_dirty_flag_follows_the_worktree(venv: Venv) -> None:
    src = venv.editable_src  # type: ignore[attr-defined]
    (src / "scratch.txt").write_text("uncommitted\n")
    try:
        editable = {p["name"]: p for p in collect(venv.python)["packages"]}["envcap-test-editable"]
        assert editable["origin"]["git"]["dirty"] is True
    finally:
        (src / "scratch.txt").unlink()


def test_fixture_tree_matches_that_machines_pip_list() -> None:
    section = python_probe.collect(Context(H200_TREE)).section
    assert section is not None
    expected = {normalize(p["name"]): p["version"] for p in json.loads((H200 / "pip-list.json").read_text())}
    assert {p["name"]: p["version"] for p in section["packages"]} == expected
    assert len(expected) == 197
    assert section["version"] == "3.12"
    assert section["prefix"] == "/opt/torch/.venv"


def test_metadata_headers_stop_at_the_body() -> None:
    text = "Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.0+cu130\n\nName: not-this\n"
    assert parse_metadata_headers(text) == ("Foo.Bar", "1.0+cu130")
    assert normalize("Foo.Bar__baz") == "foo-bar-baz"


def test_local_version_labels_are_kept_exactly(tmp_path) -> None:
    site = tmp_path / "usr/local/lib/python3.12/site-packages/torch-2.11.0+cu130.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0+cu130\n")
    (site / "INSTALLER").write_text("pip\n")
    section = python_probe.collect(Context(tmp_path)).section
    assert section is not None
    assert section["packages"] == [
        {"name": "torch", "version": "2.11.0+cu130", "installer": "pip", "requested": False, "origin": {"kind": "index"}}
    ]


def test_debian_layout_takes_the_version_from_the_stdlib_folder(tmp_path) -> None:
    dist = tmp_path / "usr/lib/python3/dist-packages/foo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Name: Foo\nVersion: 1.0\n")
    (tmp_path / "usr/lib/python3.11").mkdir()
    (tmp_path / "usr/lib/python3.11/os.py").write_text("")
    (tmp_path / "usr/bin").mkdir()
    (tmp_path / "usr/bin/python3").write_text("")
    section = python_probe.collect(Context(tmp_path)).section
    assert section is not None
    assert (section["version"], section["prefix"], section["executable"]) == ("3.11", "/usr", "/usr/bin/python3")
    assert [p["name"] for p in section["packages"]] == ["foo"]
