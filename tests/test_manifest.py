"""Manifests refuse anything whose content is not what its ids say."""

from __future__ import annotations

import json

import pytest

from envcap.core.errors import ManifestError, SchemaVersionError
from envcap.core.manifest import Manifest, Unknown


def sample() -> Manifest:
    return Manifest.create(
        {"os": {"id": "debian", "version_id": "12"}, "kernel": {"release": "6.1.0"}},
        {"software": ["os"], "platform": ["kernel"]},
        observed={"hostname": "node-1", "time": "2026-11-26T00:00:00+00:00"},
        unknowns=[Unknown("gpu", "boom")],
        labels={"cluster": "a"},
    )


def test_round_trip() -> None:
    m = sample()
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert again.to_dict() == m.to_dict()


def test_observed_and_labels_are_outside_every_hash() -> None:
    a = sample()
    b = Manifest.create(dict(a.sections), {"software": ["os"], "platform": ["kernel"]},
                        observed={"hostname": "node-2", "time": "2027-01-01T00:00:00+00:00"}, labels={"cluster": "b"})
    assert (a.id, a.env_id, a.platform_id) == (b.id, b.env_id, b.platform_id)


@pytest.mark.parametrize("key", ["id", "env_id", "platform_id"])
def test_a_wrong_id_is_refused(key: str) -> None:
    data = sample().to_dict()
    data[key] = "sha256:" + "0" * 64
    with pytest.raises(ManifestError, match=f"does not match its {key}"):
        Manifest.from_dict(data)


def test_edited_content_is_refused() -> None:
    data = sample().to_dict()
    data["sections"]["os"]["version_id"] = "13"
    with pytest.raises(ManifestError, match="does not match its id"):
        Manifest.from_dict(data)


def test_moving_a_section_between_layers_is_refused() -> None:
    data = sample().to_dict()
    data["layers"] = {"software": ["os", "kernel"], "platform": []}
    with pytest.raises(ManifestError, match="does not match"):
        Manifest.from_dict(data)


def test_unknown_major_version_is_refused() -> None:
    data = sample().to_dict()
    data["schema_version"] = "2.0.0"
    with pytest.raises(SchemaVersionError, match="schema version 2.0.0"):
        Manifest.from_dict(data)


def test_newer_minor_version_is_read() -> None:
    data = sample().to_dict()
    data["schema_version"] = "1.7.0"
    assert Manifest.from_dict(data).schema_version == "1.7.0"


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_truncated_json_is_refused(cut: int) -> None:
    text = sample().to_json()
    with pytest.raises(ManifestError, match="not valid JSON|missing"):
        Manifest.from_json(text[:cut])


@pytest.mark.parametrize(
    "doc",
    [[], "x", {"schema_version": 1}, {"schema_version": "1.0.0"}, {"schema_version": "1.0.0", "sections": []}],
)
def test_structurally_wrong_documents_are_refused(doc: object) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(json.dumps(doc))


def test_not_utf8_is_refused() -> None:
    with pytest.raises(ManifestError, match="UTF-8"):
        Manifest.from_json(b"\xff\xfe{}")


def test_records_are_immutable() -> None:
    m = sample()
    with pytest.raises(AttributeError):
        m.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.sections["os"] = {}  # type: ignore[index]


def test_a_manifest_behaves_as_a_frozen_record() -> None:
    import copy

    m = sample()
    with pytest.raises(AttributeError):
        del m.env_id
    with pytest.raises(AttributeError):
        m.extra = 1  # type: ignore[attr-defined]
    twin = copy.copy(m)
    assert twin == m and twin is not m and hash(twin) == hash(m) and {m, twin} == {m}
    # Equal when every field is (observations and labels too), whatever was cached.
    other = Manifest.create(dict(m.sections), {"software": ["os"], "platform": ["kernel"]},
                            observed=dict(m.observed), unknowns=list(m.unknowns), labels={"cluster": "b"})
    assert other.id == m.id and other != m
    m.body_bytes(), m.current_env_id()
    assert m == Manifest.from_json(m.to_json()) and m != "not a manifest"
    assert repr(m).startswith(f"Manifest(id={m.id!r}, env_id=") and "_body" not in repr(m)
