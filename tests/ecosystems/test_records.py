"""The typed section records: exact round trips, typed reads, clear refusals, and the
Manifest accessors that make them on first use (never on the snapshot's path)."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import H200_TREE

from envcap import snapshot
from envcap.compare.fleet import describe_software
from envcap.core.canonical import canonical_bytes
from envcap.core.errors import ManifestError
from envcap.core.manifest import Manifest
from envcap.ecosystems import ECOSYSTEMS, describe, record_type
from envcap.ecosystems.conda.record import CondaSection
from envcap.ecosystems.python.record import PythonSection
from envcap.ecosystems.system.record import SystemSection

PYTHON: dict[str, Any] = {
    "version": "3.11.2", "implementation": "CPython", "executable": "/opt/venv/bin/python",
    "prefix": "/opt/venv", "base_prefix": "/usr", "build": {"CC": "gcc"},
    "paths": ["/usr/lib/python3/dist-packages", "/opt/venv/lib/python3.11/site-packages"],
    "packages": [
        {"name": "numpy", "version": "2.1.0", "installer": "pip", "requested": True, "origin": {"kind": "index"}},
        {"name": "torch", "version": "2.5.0+cu124", "installer": "pip", "requested": False,
         "origin": {"kind": "vcs", "vcs": None, "url": "https://example.org/t.git", "commit": None,
                    "requested_revision": None}},
        {"name": "mine", "version": "0.1", "installer": "pip", "requested": None,
         "origin": {"kind": "directory", "url": "file:///src/mine", "git": None}},
    ],
}


def manifest(**sections: Any) -> Manifest:
    return Manifest.create(sections, {"software": list(sections), "platform": []})


def test_absent_keys_stay_absent_and_unknown_keys_are_kept() -> None:
    section = copy.deepcopy(PYTHON)
    del section["executable"]
    section["added_later"] = {"x": [1, 2]}
    section["packages"][0]["origin"]["extra_key"] = "kept"
    del section["packages"][1]["installer"]
    record = PythonSection.from_dict(section)
    assert record.executable is None and "executable" in record.omitted
    assert record.extra == {"added_later": {"x": [1, 2]}}
    assert canonical_bytes(record.to_dict()) == canonical_bytes(section)
    assert "executable" not in record.to_dict()


def test_null_and_absent_are_told_apart() -> None:
    # A vcs origin writes vcs: null; an index origin writes no vcs key at all.
    record = PythonSection.from_dict(PYTHON)
    vcs, index = record.packages[1].origin, record.packages[0].origin
    assert vcs is not None and index is not None
    assert vcs.to_dict()["vcs"] is None and "vcs" not in index.to_dict()
    assert record.packages[2].origin is not None and record.packages[2].origin.to_dict() == PYTHON["packages"][2]["origin"]


@pytest.mark.parametrize(("path", "value", "field"), [
    (["packages", 1, "version"], 3, "sections.python.packages[1].version must be a string, not a number"),
    (["packages", 0, "requested"], "yes", "sections.python.packages[0].requested must be true, false or null"),
    (["packages", 2], "mine==0.1", "sections.python.packages[2] must be an object, not a string"),
    (["packages", 0, "origin", "git"], [], "sections.python.packages[0].origin.git must be an object"),
    (["paths"], None, "sections.python.paths must be an array, not null"),
    (["build", "CC"], 1, "sections.python.build.CC must be a string"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(path: list[Any], value: Any, field: str) -> None:
    section = copy.deepcopy(PYTHON)
    target: Any = section
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError) as err:
        PythonSection.from_dict(section)
    assert field in str(err.value)
    # Through a manifest, the same error: the ids were fine, the section's shape is not.
    with pytest.raises(ManifestError, match=r"sections\.python"):
        _ = manifest(python=section).python


def test_records_are_frozen() -> None:
    record = PythonSection.from_dict(PYTHON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.version = "3.12"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.packages[0].name = "x"  # type: ignore[misc]


def test_accessors_give_the_typed_record_once_or_none() -> None:
    m = manifest(python=PYTHON, system={"manager": "apk", "packages": [{"name": "musl", "version": "1.2.4-r2",
                                                                         "arch": "x86_64"}]})
    assert isinstance(m.python, PythonSection) and m.python is m.python
    assert m.record(PythonSection) is m.python is m.record("python")  # one record, by class or by name
    assert m.record(CondaSection) is None
    assert isinstance(m.system, SystemSection) and m.system.packages[0].name == "musl"
    assert m.conda is None
    assert m.record("conda") is None
    with pytest.raises(LookupError):
        m.record("gpu")


def test_a_loaded_manifest_has_accessors_without_importing_the_ecosystems_first() -> None:
    # The ecosystems register their records when envcap is imported, so core alone works.
    doc = manifest(conda={"prefix": "/opt/conda", "packages": []}).to_json()
    code = ("import sys; from envcap.core.manifest import Manifest; "
            "m = Manifest.from_json(sys.stdin.read()); print(type(m.conda).__name__, m.conda.prefix)")
    out = subprocess.run([sys.executable, "-c", code], input=doc, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["CondaSection", "/opt/conda"]


def test_the_snapshot_path_imports_no_record() -> None:
    # Records cost milliseconds to import: a snapshot and its summary make none.
    code = ("import sys; from envcap import snapshot; from envcap.capture.summary import summary_lines; "
            f"summary_lines(snapshot(root={str(H200_TREE)!r})); "
            "print(sorted(n for n in sys.modules if n.startswith('envcap.ecosystems')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.replace("'", '"'))
    assert "envcap.ecosystems.python.probe" in loaded
    assert not [n for n in loaded if n.endswith((".record", ".build"))], loaded


@pytest.mark.parametrize("eco", ECOSYSTEMS)
def test_a_record_describes_itself_as_its_ecosystem_describes_the_section(eco: str) -> None:
    m = snapshot(root=str(H200_TREE.parents[1] / "conda-linux64" / "fstree")) if eco == "conda" \
        else snapshot(root=str(H200_TREE))
    record = m.record(eco)
    assert record is not None
    assert record.describe() == describe(eco, m.sections[eco])
    assert str(len(m.sections[eco]["packages"])) in record.describe()


def test_fleet_asks_the_records_for_their_brief() -> None:
    m = manifest(python=PYTHON, conda={"prefix": "/opt/conda", "packages": [
        {"name": "python", "version": "3.11.9", "build": "h", "channel": None, "url": None, "sha256": None,
         "md5": None, "subdir": "linux-64"}]})
    assert m.python is not None and m.conda is not None
    assert m.python.brief() == ["Python 3.11.2 (3 packages)", "torch 2.5.0+cu124", "numpy 2.1.0"]
    assert m.conda.brief() == ["conda (1 packages)"]
    assert describe_software(m) == "Python 3.11.2 (3 packages), torch 2.5.0+cu124, numpy 2.1.0, conda (1 packages)"


def test_python_flavour_and_system_site() -> None:
    record = PythonSection.from_dict(PYTHON)
    assert record.flavour(None) == "system"
    assert record.flavour("/opt/venv") == "conda"
    assert PythonSection.from_dict({**PYTHON, "base_prefix": "/usr/local"}).flavour(None) == "official"
    assert record.uses_system_site("/opt/venv", "/usr")
    assert not PythonSection.from_dict({**PYTHON, "paths": PYTHON["paths"][1:]}).uses_system_site("/opt/venv", "/usr")


def test_dpkg_machine_architecture_from_the_packages() -> None:
    packages = [{"name": n, "version": "1", "arch": a} for n, a in
                (("a", "arm64"), ("b", "arm64"), ("c", "all"), ("d", "armhf"))]
    assert SystemSection.from_dict({"manager": "dpkg", "packages": packages}).machine_arch() == "aarch64"
    assert SystemSection.from_dict({"manager": "rpm", "packages": packages}).machine_arch() is None


def test_record_types_are_registered_for_every_ecosystem() -> None:
    assert [record_type(e) for e in ECOSYSTEMS] == [SystemSection, CondaSection, PythonSection]
    assert all(record_type(e).SECTION == e for e in ECOSYSTEMS)
