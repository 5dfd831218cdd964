"""Hyperparameters in one schema: name, canonical JSON value, provenance.

Parameters come from ``--param k=v``, ``--params-file`` (YAML, JSON or TOML) and the
Python API. Nested mappings are flattened to dotted names (``optimizer.lr``), so every
source lands in the same flat list. A value is any JSON value; numbers that JSON cannot
hold (NaN, infinities) are kept as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``, and dates as ISO 8601 strings.

The ``params_id`` is the id of the canonical list of (name, value) pairs sorted by name:
two runs have the same ``params_id`` exactly when they ran with the same values,
wherever the values came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.canonical import canonical_bytes, content_id, digest
from ..core.errors import UsageError
from ..core.redact import REDACTED, Redactor
from ..core.run import Param

SOURCES = ("default", "user", "derived")
_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


def params_id(params: Iterable[Param]) -> str:
    return content_id(sorted([p.name, p.value] for p in params))


def parse_assignment(item: str) -> tuple[str, Any]:
    """``k=v`` from the command line: the value is read as JSON when it is JSON, else text.

    ``lr=0.01`` is the number 0.01, ``layers=[64,64]`` a list, ``name=resnet`` the text
    "resnet", ``flag=true`` a boolean; quote a number to keep it text (``tag='"007"'``).
    """
    name, sep, raw = item.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--param {item!r} must look like name=value")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        value = raw
    return name, normalize(value, name)


def _refuse_constant(token: str) -> Any:
    raise ValueError(token)


def normalize(value: Any, where: str) -> Any:
    """A value as it is recorded: plain JSON, non-finite floats and dates as strings."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): normalize(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    for attr in ("item", "tolist"):  # numpy and torch scalars, without importing either
        method = getattr(value, attr, None)
        if callable(method):
            try:
                return normalize(method(), where)
            except (TypeError, ValueError):
                break
    raise UsageError(f"parameter {where}: a {type(value).__name__} cannot be recorded as a JSON value")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class ParamsFile:
    """A parameter file as read: its values and what is needed to check it later."""

    path: Path
    format: str
    content: bytes
    values: dict[str, Any]

    @property
    def digest(self) -> str:
        return digest(self.content)


def read_params_file(path: str | os.PathLike[str]) -> ParamsFile:
    """Read a YAML, JSON or TOML parameter file (its format named by its extension)."""
    p = Path(path)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"--params-file {p}: say its format with the extension .yaml, .yml, .json or .toml")
    try:
        content = p.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"--params-file {p}: no such file") from exc
    except OSError as exc:
        raise UsageError(f"--params-file {p}: cannot read it: {exc.strerror}") from exc
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--params-file {p}: not UTF-8 text (byte {exc.start})") from exc
    data = _parse(p, fmt, text)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UsageError(f"--params-file {p}: the top level must be a mapping of names to values, "
                         f"not a {type(data).__name__}")
    values = {name: normalize(value, name) for name, value in flatten(data).items()}
    return ParamsFile(path=p, format=fmt, content=content, values=values)


def _parse(path: Path, fmt: str, text: str) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--params-file {path}: not valid JSON: {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}") from exc
    if fmt == "toml":
        try:
            import tomllib  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--params-file {path}: not valid TOML: {exc}") from exc
    try:
        import yaml  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise UsageError(f"--params-file {path}: reading YAML needs PyYAML, which is not installed "
                         "(pip install pyyaml), or give the parameters as JSON or TOML") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"--params-file {path}: not valid YAML: {problem}{at}") from exc


def _shown(value: Any) -> str:
    return canonical_bytes(value).decode("utf-8")


class ParamSet:
    """Parameters being gathered for one run; later sources override earlier ones.

    A ``default`` never overrides a value the user gave: a script's defaults yield to
    ``--param`` and parameter files.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._items: dict[str, Param] = {}
        self._raw: dict[str, Any] = {}

    def set(self, name: str, value: Any, source: str, *, used: bool = False) -> str | None:
        """Set one parameter; return a sentence when it contradicts what was given.

        ``used`` marks the value the script reports it ran with (``run.log_args``): it
        wins over everything, a default included, since it is what happened. A value the
        user gave that the script did not use is kept beside it as ``given``.
        """
        if source not in SOURCES:
            raise UsageError(f"parameter {name}: source must be one of {', '.join(SOURCES)}, not {source!r}")
        if not isinstance(name, str) or not name:
            raise UsageError(f"a parameter name must be non-empty text, not {name!r}")
        current = self._items.get(name)
        if current is not None and source == "default" and current.source != "default" and not used:
            return None
        plain = normalize(value, name)
        if used and source == "default" and current is not None and current.source != "default" \
                and self._raw.get(name) == plain:
            return None  # The user asked for the value the script used: it stays theirs.
        given = None
        if used and current is not None and current.source == "user" and self._raw.get(name) != plain:
            given = current.given or {"value": current.value, "source": current.source}
        elif current is not None and current.given is not None and not used:
            given = current.given
        self._raw[name] = plain
        redacted = self.redact(name, plain)
        self._items[name] = Param(name=name, value=redacted, source=source, given=given)
        if given is None or not used:
            return None
        return (f"parameter {name}: the script reports it used {_shown(redacted)} ({source}), not the "
                f"{_shown(given['value'])} it was given; recorded as used, the given value under 'given'")

    def update(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            self.set(name, value, source)

    def redact(self, name: str, value: Any) -> Any:
        """A secret-named parameter (``api_key``, ``token``) is recorded as [REDACTED]."""
        if self._redactor.is_secret_name(name.replace(".", "_").replace("-", "_")):
            return REDACTED
        if isinstance(value, str):
            return self._redactor.text(value)
        if isinstance(value, (dict, list)):
            text = canonical_bytes(value).decode("utf-8")
            if self._redactor.may_contain_secret(text):
                return self._redactor.deep(value)
        return value

    def params(self) -> tuple[Param, ...]:
        return tuple(sorted(self._items.values(), key=lambda p: p.name))

    def values(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.params()}

    def raw_values(self) -> dict[str, Any]:
        """The values as given, secrets included: for the run's own process, never stored."""
        return dict(sorted(self._raw.items()))

    def has_secret_names(self, names: Iterable[str]) -> bool:
        return any(self._redactor.is_secret_name(n.replace(".", "_").replace("-", "_")) for n in names)
