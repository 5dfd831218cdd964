"""Class 2: every malformed manifest gets a clear error, never a traceback.

Mutations of a real manifest (wrong types that still hash correctly, deep nesting,
numbers too large to parse or to canonicalize, non-ASCII digits, broken JSON) go through
``import``, ``show FILE``, ``diff A B`` and ``fleet`` (files and the store): each ends
with exit 0 or 1 (the mutation was harmless and is accepted) or exit 2 with an
``envcap: error:`` message, and never with an exception."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hardening_support import SETTINGS, Case
from hypothesis import given
from hypothesis import strategies as st

from envcap.capture.collect import snapshot
from envcap.cli.main import main
from envcap.core import structure
from envcap.core.errors import ManifestError
from envcap.core.manifest import Manifest, compute_ids

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
_BASE: dict[str, Any] = {}


def base_doc() -> dict[str, Any]:
    if not _BASE:
        m = snapshot(root=str(TESTDATA / "gpu-h200-ubuntu24" / "fstree"), labels={"cluster": "a"},
                     skip=("system",))
        _BASE["text"] = m.to_json()
    return json.loads(_BASE["text"])


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out += _nodes(v, (*path, i))
    return out


# Raw JSON text spliced in where a placeholder string stands: what json.dumps cannot write.
RAW = {
    "deep-array": "[" * 100_000 + "]" * 100_000,
    "deep-object": '{"a":' * 5000 + "1" + "}" * 5000,
    "nest-200": "[" * 200 + "]" * 200,
    "huge-int": "9" * 5000,
    "big-int": "1" + "0" * 30,
    "huge-float": "1e999",
    "neg-huge-float": "-1e999",
    "nan": "NaN",
    "infinity": "Infinity",
    "long-float": "0." + "1" * 400,
}
HOSTILE = st.one_of(
    st.sampled_from([f"@@RAW:{k}@@" for k in RAW]),
    st.sampled_from([None, True, 0, -1, 2**63, 1.5, "", "x", [], {}, [1, "a"], {"a": 1}, {"probe": 1},
                     "\u0661.0.0", "\u00b2.0.0", "1.0.0\n", "sha256:" + "0" * 64, [[]], {"": None}]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                 max_leaves=6),
)


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def render(doc: Any, rehash: bool) -> str:
    """The document as text, with its ids recomputed (when it can be) so that only the
    mutation is wrong, and placeholders replaced by their raw text."""
    if rehash and isinstance(doc, dict) and isinstance(doc.get("sections"), dict) \
            and isinstance(doc.get("layers"), dict):
        try:
            ids = compute_ids(doc["sections"], doc["layers"])
            doc.update(id=ids.id, env_id=ids.env_id, platform_id=ids.platform_id)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
            pass
    text = json.dumps(doc)
    for key, raw in RAW.items():
        text = text.replace(f'"@@RAW:{key}@@"', raw)
    return text


def _invoke(runner: CliRunner, *args: str) -> None:
    result = runner.invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"envcap {' '.join(args)} ended in a traceback:\n{trace[-3000:]}")
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    if result.exit_code == 2:
        assert "envcap: error: " in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


def _mutations(doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.sampled_from(_nodes(doc)), HOSTILE, st.booleans(), st.integers(0, 2))


@SETTINGS
@given(_mutations(base_doc()))
def test_mutated_manifests_give_an_error_or_are_read_never_a_traceback(tmp_path: Path, mutation: Any) -> None:
    path, value, rehash, breakage = mutation
    doc = _set(base_doc(), path, value)
    text = render(doc, rehash)
    if breakage == 1:
        text = text[: len(text) // 2]  # truncated
    good = tmp_path / "good.json"
    good.write_text(render(base_doc(), False))
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    runner = CliRunner()
    with Case("2. malformed manifests"):
        _invoke(runner, "import", str(bad))
        _invoke(runner, "show", str(bad))
        _invoke(runner, "diff", str(bad), str(good))
        _invoke(runner, "fleet", str(bad), str(good))
        _invoke(runner, "fleet")  # the store, with whatever the import accepted
        _invoke(runner, "ls")
        _invoke(runner, "verify")


def test_the_structural_check_agrees_with_jsonschema_on_the_full_schema() -> None:
    # strict=True is the shipped schema in full: jsonschema and envcap's interpreter must
    # accept and refuse the same documents. A change inside a section is checked against
    # that section's part of the schema (the rest of the document is unchanged and valid).
    full = structure.schema()
    doc = base_doc()
    values = [None, True, 1, 1.5, "x", [], {"x": 1}, "sha256:" + "0" * 64]
    tried = 0
    shapes = {tuple(0 if isinstance(k, int) else k for k in p): p for p in _nodes(doc)}
    for path in shapes.values():
        if path[:1] == ("observed",) and path[1:2] and path[1] in structure.OBSERVED_TEXT:
            continue  # beyond the schema, on purpose: commands read these as text
        section = path[1] if path[:1] == ("sections",) and len(path) > 2 else None
        node = full["properties"]["sections"]["properties"][section] if section else full
        validator = jsonschema.Draft202012Validator(node)
        for value in values:
            mutated = _set(base_doc(), path, copy.deepcopy(value))
            if not isinstance(mutated, dict):
                continue
            target = mutated["sections"][section] if section else mutated
            tried += 1
            try:
                if section:
                    structure._validate(target, node, f"sections.{section}", "m", True)
                else:
                    structure.check(target, "m", strict=True)
                ours = True
            except ManifestError:
                ours = False
            assert ours == validator.is_valid(target), (path, value)
            # The fast pass (whether, without paths) agrees with both.
            assert structure._ok(target, node, not section, True) == ours, (path, value)
    assert tried > 400


@pytest.mark.parametrize("raw", ["deep-array", "deep-object", "huge-int", "huge-float", "nan", "nest-200"])
def test_bounds_are_errors_not_exceptions(raw: str) -> None:
    text = '{"schema_version": "1.0.0", "x": ' + RAW[raw] + "}"
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


@pytest.mark.parametrize("version", ["\u00b2.0.0", "\u0661.0.0", "1.0.0\n", "01" * 20])
def test_schema_versions_are_ascii_digits(version: str) -> None:
    doc = base_doc()
    doc["schema_version"] = version
    with pytest.raises(ManifestError):
        Manifest.from_dict(doc)


def test_a_section_of_the_wrong_type_that_hashes_correctly_is_refused_on_import(tmp_path: Path) -> None:
    doc = base_doc()
    doc["sections"]["python"]["packages"] = "not a list"
    bad = tmp_path / "bad.json"
    bad.write_text(render(doc, True))
    result = CliRunner().invoke(main, ["import", str(bad)])
    assert result.exit_code == 2
    assert "sections.python.packages must be an array, not a string" in result.stderr


def test_observed_of_the_wrong_type_is_refused_and_fleet_still_runs(tmp_path: Path) -> None:
    doc = base_doc()
    doc["observed"]["hostname"] = ["a", "list"]
    bad = tmp_path / "bad.json"
    bad.write_text(render(doc, True))
    runner = CliRunner()
    result = runner.invoke(main, ["import", str(bad)])
    assert result.exit_code == 2 and "observed.hostname must be a string" in result.stderr
    assert runner.invoke(main, ["fleet"]).exception is None or sys.exc_info() == (None, None, None)
