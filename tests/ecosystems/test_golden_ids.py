"""Typed records change no id: every fixture tree captures to the ids recorded before
the records existed, and each ecosystem section survives from_dict/to_dict byte for byte.

The ids are in tests/testdata/golden-ids.json. After a change that is meant to move ids
(new env_id inputs, say), regenerate it with ``python tests/golden_ids.py`` and review
the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from golden_ids import GOLDEN, ids, name, trees

from envcap import snapshot
from envcap.core.canonical import canonical_bytes
from envcap.ecosystems import ECOSYSTEMS, record_type

RECORDED = json.loads(GOLDEN.read_text(encoding="utf-8"))["trees"]
TREES = {name(t): t for t in trees()}


def test_every_fixture_tree_has_recorded_ids() -> None:
    # A new fixture tree needs its ids recorded (python tests/golden_ids.py).
    assert sorted(TREES) == sorted(RECORDED)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_ids_are_the_recorded_ones(tree: str) -> None:
    assert ids(TREES[tree]) == RECORDED[tree]


def assert_round_trips(sections: dict[str, Any]) -> int:
    checked = 0
    for eco in ECOSYSTEMS:
        if eco in sections:
            record = record_type(eco).from_dict(sections[eco])
            assert canonical_bytes(record.to_dict()) == canonical_bytes(sections[eco]), eco
            checked += 1
    return checked


@pytest.mark.parametrize("tree", sorted(TREES))
def test_ecosystem_sections_round_trip_byte_for_byte(tree: str) -> None:
    m = snapshot(root=str(TREES[tree]))
    checked = assert_round_trips(dict(m.sections))
    assert checked == len(set(ECOSYSTEMS) & set(RECORDED[tree]["sections"]))
    for eco in ECOSYSTEMS:
        record = m.record(eco)
        assert (record is None) == (eco not in m.sections)
        if record is not None:
            assert canonical_bytes(record.to_dict()) == canonical_bytes(m.sections[eco])


def test_the_fixture_trees_cover_every_ecosystem_and_manager() -> None:
    found = {eco for t in RECORDED.values() for eco in ECOSYSTEMS if eco in t["sections"]}
    assert found == set(ECOSYSTEMS)
    managers = {snapshot(root=str(TREES[t]), select=["system"]).system.manager
                for t in TREES if "system" in RECORDED[t]["sections"]}
    assert managers == {"dpkg", "rpm", "apk"}


def test_a_live_interpreter_section_round_trips(venv: Any) -> None:
    m = snapshot(python=venv.python, select=["python"])
    assert m.python is not None and m.python.build  # build variables, redacted
    kinds = {p.kind for p in m.python.packages}
    assert {"index", "file", "vcs", "editable"} <= kinds
    assert assert_round_trips(dict(m.sections)) == 1


def test_golden_file_names_its_regeneration_command() -> None:
    note = json.loads(Path(GOLDEN).read_text(encoding="utf-8"))["note"]
    assert "python tests/golden_ids.py" in note
