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
