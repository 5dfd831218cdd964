"""One structural validation for every manifest that enters envcap.

A manifest arrives as bytes from another machine: a file, a bundle, a fleet input, a
store object. Before anything uses or stores it, :func:`check` holds it to

- bounds: nesting at most :data:`MAX_DEPTH` deep, integers within 64 bits, floats
  finite, only JSON's types (so that hashing, printing and comparing it can neither
  recurse without end nor fail on a number);
- the shipped JSON Schema (``envcap/schema/manifest-1.schema.json``), interpreted here
  by a small validator of the keywords that schema uses (``type``, ``properties``,
  ``required``, ``additionalProperties``, ``items``, ``enum``, ``const``, ``pattern``):
  the ``jsonschema`` package would put a dozen modules on the path of every command
  that reads a manifest. Reading is *structural*: every value the schema describes
  must have its type, enum and pattern, while properties the schema does not name,
  and properties it requires inside a section, are let through, so that a manifest of
  a later 1.x minor version, or a partial capture, still reads. ``strict=True`` is the
  schema in full (what envcap writes; the tests check it against ``jsonschema``);
- the few observed fields that commands read (``hostname``, ``time``, ``root``).

:func:`loads` parses JSON text with the same bounds, so deep nesting or a number too
large to convert is a :class:`ManifestError`, never a RecursionError or a ValueError.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from .errors import ManifestError

MAX_DEPTH = 64
_INT_LIMIT = 1 << 63
_MAX_INT_DIGITS = 20
_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema")
_SCHEMA_NAME = re.compile(r"manifest-1(?:\.([0-9]+))?\.schema\.json")
_schemas: dict[int, dict[str, Any]] = {}
_minors: dict[int, str] | None = None
_patterns: dict[str, re.Pattern[str]] = {}
OBSERVED_TEXT = ("hostname", "time", "root")


class _Refused(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits (at most {_MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 64:
        raise _Refused(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def decoder() -> json.JSONDecoder:
    """A JSON decoder with the bounds of :func:`loads` (its errors are ValueError or RecursionError)."""
    return json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def loads(text: str | bytes, source: str) -> Any:
    """Parse JSON text, refusing what a manifest can never hold, as a :class:`ManifestError`."""
    return parse(text, source)[0]


def parse(text: str | bytes, source: str) -> tuple[Any, bool]:
    """:func:`loads`, and whether the text held no float and no integer of 16 or more
    digits (``plain``: its canonical bytes are then json's own, see
    :func:`envcap.core.canonical.canonical_bytes`)."""
    seen: list[str] = []

    def parse_int(token: str) -> int:
        if len(token) > 15 and len(token.lstrip("-")) > 15:
            seen.append(token)
        return _parse_int(token)

    def parse_float(token: str) -> float:
        seen.append(token)
        return _parse_float(token)

    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=_parse_constant)
        return data, not seen
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{source}: not valid JSON (truncated or corrupt?): {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except _Refused as exc:
        raise ManifestError(f"{source}: {exc}") from exc
    except RecursionError as exc:
        raise ManifestError(f"{source}: nested too deeply to be a manifest") from exc


def check(data: dict[str, Any], source: str, *, strict: bool = False) -> None:
    """Refuse ``data`` (a parsed manifest) unless it is within bounds and of the schema's shape."""
    check_bounds(data, source)
    root = schema(data.get("schema_version"))
    if not _ok(data, root, True, strict):
        # The fast pass only says whether; this one says where and why.
        _validate(data, root, "", source, strict)
    observed = data.get("observed")
    if isinstance(observed, dict):
        for key in OBSERVED_TEXT:
            if observed.get(key) is not None and not isinstance(observed[key], str):
                raise ManifestError(f"{source}: observed.{key} must be a string, not {_kind(observed[key])}")


def _bounded(value: Any, depth: int) -> bool:
    """Whether :func:`check_bounds` passes, fast (the recursion stops at MAX_DEPTH)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        return all(type(k) is str and _bounded(v, depth + 1) for k, v in value.items())
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        return all(_bounded(v, depth + 1) for v in value)
    if kind is int:
        return bool(-_INT_LIMIT <= value < _INT_LIMIT)
    if kind is float:
        return math.isfinite(value)
    return False


def check_bounds(value: Any, source: str) -> None:
    """Nesting, number sizes and types, walked without recursion."""
    if _bounded(value, 0):
        return
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ManifestError(f"{source}: {where or 'the document'} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ManifestError(f"{source}: {where or 'an object'} has a key that is not a string")
                stack.append((child, _join(where, key), depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not -_INT_LIMIT <= item < _INT_LIMIT:
                raise ManifestError(f"{source}: {where} holds an integer outside 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ManifestError(f"{source}: {where} holds a number that is not finite")
        else:
            raise ManifestError(f"{source}: {where} holds a {type(item).__name__}, which is not a JSON value")


def schema(version: Any = None) -> dict[str, Any]:
    """The shipped schema for a manifest of ``version``: that minor version's, or for a
    later minor than envcap knows, the newest it ships (None: the newest)."""
    global _minors
    if _minors is None:
        _minors = {int(m.group(1) or 0): name for name in os.listdir(_SCHEMA_DIR)
                   if (m := _SCHEMA_NAME.fullmatch(name))}
    minors = _minors
    wanted = max(minors)
    if isinstance(version, str) and re.fullmatch(r"1\.[0-9]{1,9}(?:\.[0-9]{1,9})?", version):
        minor = int(version.split(".")[1])
        wanted = max((m for m in minors if m <= minor), default=min(minors))
    if wanted not in _schemas:
        with open(os.path.join(_SCHEMA_DIR, minors[wanted]), encoding="utf-8") as fh:
            _schemas[wanted] = json.load(fh)
    return _schemas[wanted]


_TYPES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false", "null": "null"}


def _is(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return kind == "number" and isinstance(value, (int, float))


def _kind(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, kind):
            return _TYPES[kind]
    return type(value).__name__


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


_PY_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "null": type(None)}


def _ok(value: Any, node: dict[str, Any], top: bool, strict: bool) -> bool:
    """Whether ``value`` passes :func:`_validate` (the same rules, without building paths
    and messages: a manifest holds thousands of values, and nearly every one is fine)."""
    kinds = node.get("type")
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = (kinds,)
        for k in kinds:
            py = _PY_TYPES.get(k)
            if (py is not None and type(value) is py) or (py is None and _is(value, k)):
                break
        else:
            return False
    if kinds is not None and len(node) == 1:
        return True  # most nodes: a type and nothing else
    if strict and "const" in node and value != node["const"]:
        return False
    if "enum" in node and value not in node["enum"]:
        return False
    if "pattern" in node and isinstance(value, str):
        pattern = _patterns.get(node["pattern"])
        if pattern is None:
            pattern = _patterns[node["pattern"]] = re.compile(node["pattern"])
        if not pattern.search(value):
            return False
    if type(value) is dict:
        props = node.get("properties", {})
        if (strict or top) and any(k not in value for k in node.get("required", ())):
            return False
        extra = node.get("additionalProperties", True)
        for key, child in value.items():
            sub = props.get(key)
            if sub is not None:
                if not _ok(child, sub, False, strict):
                    return False
            elif isinstance(extra, dict):
                if not _ok(child, extra, False, strict):
                    return False
            elif extra is False and strict:
                return False
    elif type(value) is list:
        items = node.get("items")
        if isinstance(items, dict):
            return all(_ok(child, items, False, strict) for child in value)
    return True


def _validate(value: Any, node: dict[str, Any], where: str, source: str, strict: bool) -> None:
    # Recursion here follows the schema, which is a few levels deep; the data's own
    # depth was bounded by check_bounds first.
    kinds = node.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            wanted = " or ".join(_TYPES[k] for k in kinds)
            raise ManifestError(f"{source}: {where or 'the manifest'} must be {wanted}, not {_kind(value)}")
    if "const" in node and strict and value != node["const"]:
        raise ManifestError(f"{source}: {where} must be {node['const']!r}")
    if "enum" in node and value not in node["enum"]:
        shown = ", ".join(repr(e) for e in node["enum"])
        raise ManifestError(f"{source}: {where} must be one of {shown}, not {_short(value)}")
    if "pattern" in node and isinstance(value, str):
        pattern = _patterns.get(node["pattern"])
        if pattern is None:
            pattern = _patterns[node["pattern"]] = re.compile(node["pattern"])
        if not pattern.search(value):
            raise ManifestError(f"{source}: {where} = {_short(value)} does not have the form {node['pattern']}")
    if isinstance(value, dict):
        props = node.get("properties", {})
        # Inside sections, a field the schema requires may be missing when reading (a
        # later minor version may drop one); at the top level every field is needed.
        if strict or not where:
            missing = [k for k in node.get("required", ()) if k not in value]
            if missing:
                raise ManifestError(f"{source}: {where or 'the manifest'} is missing {', '.join(missing)}")
        extra = node.get("additionalProperties", True)
        for key, child in value.items():
            if key in props:
                _validate(child, props[key], _join(where, key), source, strict)
            elif isinstance(extra, dict):
                _validate(child, extra, _join(where, key), source, strict)
            elif extra is False and strict:
                raise ManifestError(f"{source}: {_join(where, key)} is not a field of this schema")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, child in enumerate(value):
            _validate(child, node["items"], f"{where}[{i}]", source, strict)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
