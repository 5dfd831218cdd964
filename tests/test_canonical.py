"""Canonical bytes and ids: RFC 8785, whatever order or whitespace the input had."""

from __future__ import annotations

import json
import random

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from envcap.core.canonical import canonical_bytes, compose_object, content_id, digest
from envcap.core.manifest import compute_ids

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), json_values, max_size=6), st.randoms(), st.integers(0, 4))
@settings(max_examples=200)
def test_key_order_and_whitespace_never_change_an_id(obj: dict, rnd: random.Random, indent: int) -> None:
    items = list(obj.items())
    rnd.shuffle(items)
    reordered = json.loads(json.dumps(dict(items), indent=indent or None))
    assert content_id(reordered) == content_id(obj)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_composed_objects_are_canonical(obj: dict) -> None:
    parts = {k: canonical_bytes(v) for k, v in obj.items()}
    assert compose_object(parts) == rfc8785.dumps(obj)


def test_known_vector() -> None:
    # RFC 8785 section 3.2.2's sorting example, reduced to string keys and values.
    data = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}
    expected = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
                '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')
    assert canonical_bytes(data) == expected.encode("utf-8")
    assert compose_object({k: canonical_bytes(v) for k, v in data.items()}) == expected.encode("utf-8")


def test_id_is_sha256_of_canonical_bytes() -> None:
    import hashlib

    assert digest(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_layer_ids_cover_only_their_layer() -> None:
    layers = {"software": ["python"], "platform": ["gpu"]}
    base = compute_ids({"python": {"v": "3.12"}, "gpu": {"n": 1}}, layers)
    sw = compute_ids({"python": {"v": "3.13"}, "gpu": {"n": 1}}, layers)
    hw = compute_ids({"python": {"v": "3.12"}, "gpu": {"n": 2}}, layers)
    assert sw.env_id != base.env_id and sw.platform_id == base.platform_id and sw.id != base.id
    assert hw.platform_id != base.platform_id and hw.env_id == base.env_id and hw.id != base.id


def test_integers_beyond_the_json_safe_range_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="cannot be canonicalized"):
        canonical_bytes({"n": 2**53})


any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


@given(any_json)
@settings(max_examples=500)
def test_fast_path_agrees_with_the_reference_implementation(obj) -> None:
    # Floats, non-ASCII keys and strings that look like numbers all included.
    assert canonical_bytes(obj) == rfc8785.dumps(obj)


def test_number_lookalikes_inside_strings_stay_on_the_fast_path() -> None:
    obj = {"v": "1.5e3", "n": 15, "s": "\u0007\n\"\\"}
    assert canonical_bytes(obj) == rfc8785.dumps(obj)


any_numbers = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


@given(st.dictionaries(st.text(max_size=8), any_numbers, max_size=6))
@settings(max_examples=300)
def test_what_parse_calls_plain_serializes_as_rfc8785_without_the_scan(obj: dict) -> None:
    from envcap.core.structure import parse

    data, plain = parse(json.dumps(obj), "x")
    assert canonical_bytes(data, plain=plain) == canonical_bytes(data) == rfc8785.dumps(data)


def test_parse_sees_floats_and_long_integers_even_inside_strings_only_as_text() -> None:
    from envcap.core.structure import parse

    assert parse('{"v": "1.5e3", "n": "12345678901234567"}', "x")[1] is True  # inside strings: text
    assert parse('{"v": 1.5}', "x")[1] is False
    assert parse('{"v": [1e3]}', "x")[1] is False
    assert parse('{"n": 1234567890123456}', "x")[1] is False  # 16 digits: JCS writes it as a double
    assert parse('{"n": -123456789012345}', "x")[1] is True


def test_a_manifest_with_floats_still_verifies_through_the_plain_path(tmp_path) -> None:
    from envcap.core.manifest import Manifest

    sections = {"cpu": {"mhz": 2450.000, "ratio": 1e-7, "big": 1234567890123456, "name": "é"},
                "python": {"version": "3.11", "packages": [{"name": "a", "version": "1.0"}]}}
    m = Manifest.create(sections, {"software": ["python"], "platform": ["cpu"]})
    again = Manifest.from_json(m.to_json())
    assert (again.id, again.env_id, again.platform_id) == (m.id, m.env_id, m.platform_id)
    forged = m.to_json().replace('"mhz": 2450.0', '"mhz": 2450.5')
    try:
        Manifest.from_json(forged)
    except Exception as exc:  # noqa: BLE001 - the error family is what is checked
        assert "does not match" in str(exc)
    else:
        raise AssertionError("a changed float was not caught")
