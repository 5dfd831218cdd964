"""The JSON Schema in the repository describes exactly what envcap writes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import H200_TREE, TESTDATA, run_envcap

import envcap
from envcap.core.manifest import SCHEMA_VERSION
from envcap.capture.registry import all_probes

SCHEMA_FILE = Path(envcap.__file__).parent / "schema" / "manifest-1.2.schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


def test_schema_is_a_valid_schema_of_the_current_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert SCHEMA_VERSION in SCHEMA["$id"]


def test_every_probe_section_is_in_the_schema_and_nothing_else() -> None:
    described = set(SCHEMA["properties"]["sections"]["properties"])
    assert described == {p.section for p in all_probes()}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--root", str(H200_TREE)],
        ["--root", str(TESTDATA / "rpm-fedora39" / "fstree")],
        ["--root", str(TESTDATA / "apk-alpine319" / "fstree")],
        ["--root", str(TESTDATA / "dpkg-distroless" / "fstree")],
        ["--root", str(TESTDATA / "conda-linux64" / "fstree")],
        ["--root", str(TESTDATA / "containers" / "podman" / "fstree")],
    ],
    ids=["live", "h200", "rpm", "apk", "distroless", "conda", "podman"],
)
def test_what_envcap_writes_validates_strictly(args: list[str]) -> None:
    # Every object in the schema forbids properties it does not name, so a field added
    # to a probe without a schema change fails here.
    doc = json.loads(run_envcap("snapshot", "--json", "--no-store", *args, check=True).stdout)
    validate(doc)
    assert doc["sections"], "the capture found nothing to validate"


def test_the_schema_rejects_a_float_and_an_unknown_section() -> None:
    doc = json.loads(run_envcap("snapshot", "--json", "--no-store", "--select", "memory", check=True).stdout)
    doc["sections"]["memory"]["total_gib"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)
    doc["sections"]["memory"]["total_gib"] = 1
    doc["sections"]["surprise"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)
