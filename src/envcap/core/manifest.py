"""The manifest: an immutable, content-addressed description of one machine.

Layout (see docs/manifest.md)::

    {
      "schema_version": "1.0.0",
      "id": "sha256:…",          # software + platform sections
      "env_id": "sha256:…",      # software sections only
      "platform_id": "sha256:…", # platform sections only
      "layers": {"software": [...section names], "platform": [...]},
      "sections": {"os": {...}, "python": {...}, "gpu": {...}, ...},
      "observed": {...},         # hostname, time, durations, per-host ids: never hashed
      "unknowns": [{"probe": "...", "error": "..."}],
      "labels": {"cluster": "a"}
    }

Each id is ``sha256:`` + the hex digest of the RFC 8785 bytes of a small object that
names the schema's major version and holds the sections of its layer. Everything
outside ``sections`` (and the layer assignment) is outside every hash, so two
identical nodes get the same ids whatever their hostnames and clocks say.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, TypeVar, overload

from . import identity, records
from .canonical import canonical_bytes, compose_object, digest
from .errors import ManifestError, SchemaVersionError

R = TypeVar("R", bound=records.SectionRecord)

SCHEMA_VERSION = "1.2.0"
SCHEMA_MAJOR = 1
SCHEMA_TAG = f"envcap.manifest/{SCHEMA_MAJOR}"
# From 1.1 env_id hashes the identity form of the software sections (see .identity); the
# objects hashed into id and env_id name the revision of the rule, so that a manifest id
# still names one env_id whichever envcap wrote it. platform_id's input did not change.


def identity_tag(revision: int) -> str:
    """The schema tag hashed into ``id`` and ``env_id`` under identity rule ``revision``."""
    return SCHEMA_TAG if revision == 0 else f"envcap.manifest/{SCHEMA_MAJOR}.{revision}"
LAYERS = ("software", "platform")
TOP_LEVEL = ("schema_version", "id", "env_id", "platform_id", "layers", "sections", "observed", "unknowns", "labels")


class Ids(NamedTuple):
    id: str
    env_id: str
    platform_id: str
    body: bytes  # canonical bytes of the object hashed into ``id``


def compute_ids(
    sections: Mapping[str, Any],
    layers: Mapping[str, Any],
    canonical: Mapping[str, bytes] | None = None,
    *,
    version: str = SCHEMA_VERSION,
    plain: bool = False,
) -> Ids:
    """The three ids of a set of sections, serializing each section once.

    ``canonical`` may hold sections' canonical bytes already computed by the caller.
    ``version`` is the manifest's schema version: from 1.1, ``env_id`` hashes the
    identity form of the software sections (:mod:`.identity`), each minor version by
    its own rule. ``plain``: the sections hold no float and no integer of 16 or more
    digits (see :func:`canonical_bytes`).
    """
    known = canonical or {}
    canon = {name: known.get(name) or canonical_bytes(value, plain=plain) for name, value in sections.items()}
    revision = identity.rule(version)
    tag = canonical_bytes(identity_tag(revision))
    software = sorted(layers.get("software", []))
    ident = dict(canon)
    if revision:
        forms = identity.identity_sections({n: sections[n] for n in software if n in sections}, revision)
        ident.update({n: canonical_bytes(forms[n], plain=plain) for n in forms if forms[n] is not sections[n]})

    def body(names: list[str], layer: str | None, source: Mapping[str, bytes], schema: bytes) -> bytes:
        parts = {"schema": schema, "sections": compose_object({n: source[n] for n in names})}
        if layer is None:
            parts["layers"] = canonical_bytes({k: sorted(v) for k, v in layers.items()})
        else:
            parts["layer"] = canonical_bytes(layer)
        return compose_object(parts)

    full = body(sorted(canon), None, canon, tag)
    return Ids(
        id=digest(full),
        env_id=digest(body(software, "software", ident, tag)),
        platform_id=digest(body(sorted(layers.get("platform", [])), "platform", canon,
                                canonical_bytes(SCHEMA_TAG))),
        body=full,
    )


class Unknown(NamedTuple):
    probe: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"probe": self.probe, "error": self.error}


class Manifest:
    """One snapshot. Build with :func:`Manifest.create` or :func:`Manifest.from_dict`.

    Immutable, compared field by field (the kept bytes and caches aside), hashed by its
    id. A plain class with slots rather than a dataclass: ``dataclasses`` imports
    ``inspect``, which alone cost the snapshot, whose only such class this is, about a
    tenth of its time.
    """

    # The fields compared and shown, then the kept bytes and caches.
    _FIELDS = ("id", "env_id", "platform_id", "sections", "layers", "observed", "unknowns", "labels",
               "schema_version")
    __slots__ = (*_FIELDS, "_body", "_records", "_current_env_id")

    id: str
    env_id: str
    platform_id: str
    sections: Mapping[str, Any]
    layers: Mapping[str, tuple[str, ...]]
    observed: Mapping[str, Any]
    unknowns: tuple[Unknown, ...]
    labels: Mapping[str, str]
    schema_version: str
    # The canonical bytes hashed into ``id``, kept from when the ids were computed so that
    # storing the manifest does not serialize every section again.
    _body: bytes | None
    # Typed records of sections, made on first use (the snapshot path never asks for one).
    _records: dict[str, Any] | None
    # The env_id under the newest identity rule, for a manifest of an older one.
    _current_env_id: str | None

    def __init__(self, *, id: str, env_id: str, platform_id: str,
                 sections: Mapping[str, Any], layers: Mapping[str, tuple[str, ...]],
                 observed: Mapping[str, Any] | None = None, unknowns: tuple[Unknown, ...] = (),
                 labels: Mapping[str, str] | None = None, schema_version: str = SCHEMA_VERSION,
                 _body: bytes | None = None, _records: dict[str, Any] | None = None,
                 _current_env_id: str | None = None) -> None:
        init = object.__setattr__
        for name, value in (("id", id), ("env_id", env_id), ("platform_id", platform_id), ("sections", sections),
                            ("layers", layers), ("observed", {} if observed is None else observed),
                            ("unknowns", unknowns), ("labels", {} if labels is None else labels),
                            ("schema_version", schema_version), ("_body", _body), ("_records", _records),
                            ("_current_env_id", _current_env_id)):
            init(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a manifest is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a manifest is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Manifest({', '.join(f'{f}={getattr(self, f)!r}' for f in self._FIELDS)})"

    # copy.copy, as for a frozen dataclass with slots.
    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    @classmethod
    def create(
        cls,
        sections: dict[str, Any],
        layers: Mapping[str, list[str]],
        *,
        observed: dict[str, Any] | None = None,
        unknowns: list[Unknown] | None = None,
        labels: dict[str, str] | None = None,
        canonical: Mapping[str, bytes] | None = None,
    ) -> Manifest:
        ids = compute_ids(sections, layers, canonical)
        return cls(
            id=ids.id,
            env_id=ids.env_id,
            platform_id=ids.platform_id,
            sections=MappingProxyType(dict(sections)),
            layers=MappingProxyType({k: tuple(sorted(v)) for k, v in layers.items()}),
            observed=MappingProxyType(dict(observed or {})),
            unknowns=tuple(unknowns or ()),
            labels=MappingProxyType(dict(labels or {})),
            _body=ids.body,
        )

    def section(self, name: str) -> Any:
        return self.sections.get(name)

    @overload
    def record(self, kind: type[R]) -> R | None: ...

    @overload
    def record(self, kind: str) -> Any: ...

    def record(self, kind: type[R] | str) -> R | Any:
        """The typed record of a section, made on first use; ``None`` when the manifest has
        no such section. ``kind`` is the record class (``m.record(PythonSection)``, typed
        for mypy) or the section's name (``m.record("python")``, as registered in
        :mod:`.records`). A section of the wrong shape raises :class:`ManifestError`."""
        name = kind if isinstance(kind, str) else kind.SECTION
        cache = self._records
        if cache is None:
            cache = {}
            object.__setattr__(self, "_records", cache)
        if name not in cache:
            data = self.sections.get(name)
            if isinstance(kind, str):
                cache[name] = records.load(name, data)
            else:
                cache[name] = None if data is None else kind.from_dict(data)
        return cache[name]

    # The package worlds' records by name. Their classes live above the core
    # (envcap.ecosystems), so these are typed Any here; m.record(PythonSection) is typed.

    @property
    def python(self) -> Any:
        """The python section's ``PythonSection`` record, or ``None``."""
        return self.record("python")

    @property
    def system(self) -> Any:
        """The system section's ``SystemSection`` record, or ``None``."""
        return self.record("system")

    @property
    def conda(self) -> Any:
        """The conda section's ``CondaSection`` record, or ``None``."""
        return self.record("conda")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "id": self.id,
            "env_id": self.env_id,
            "platform_id": self.platform_id,
            "layers": {k: list(v) for k, v in self.layers.items()},
            "sections": dict(self.sections),
            "observed": dict(self.observed),
            "unknowns": [u.to_dict() for u in self.unknowns],
            "labels": dict(self.labels),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False)

    def current_env_id(self) -> str:
        """This manifest's ``env_id`` under the newest identity rule: what compares
        environments recorded by envcaps of other schema minor versions (a change of
        rule is no change of environment). The recorded ``env_id`` when this manifest
        already follows the newest rule."""
        if identity.rule(self.schema_version) == identity.rule(SCHEMA_VERSION):
            return self.env_id
        if self._current_env_id is None:
            object.__setattr__(self, "_current_env_id", compute_ids(self.sections, self.layers).env_id)
        return str(self._current_env_id)

    def body_bytes(self) -> bytes:
        """The canonical bytes whose digest is ``id``."""
        if self._body is not None:
            return self._body
        return compute_ids(self.sections, self.layers, version=self.schema_version).body

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest", plain: bool = False) -> Manifest:
        """Validate and load a manifest; refuse anything whose content is not its id.

        ``plain``: ``data`` holds no float and no integer of 16 or more digits, as
        :func:`.structure.parse` reports of what it read (it spares hashing a scan).
        """
        sections, layers, unknowns, labels = _envelope(data, source)
        # Bounds and the schema's shape, before anything hashes, stores or reads a value.
        from . import structure

        structure.check(data, source)
        try:
            ids = compute_ids(sections, layers, version=data["schema_version"], plain=plain)
        except ValueError as exc:
            raise ManifestError(f"{source}: sections hold a value JSON cannot canonicalize: {exc}") from exc
        for key in ("id", "env_id", "platform_id"):
            if data[key] != getattr(ids, key):
                raise ManifestError(
                    f"{source}: content does not match its {key} (recorded {data[key]}, "
                    f"content hashes to {getattr(ids, key)}); it was changed after it was written"
                )
        return cls._loaded(data, sections, layers, unknowns, labels, ids=ids)

    @classmethod
    def from_stored(cls, data: Any, body: bytes, schema: Any, *, source: str = "manifest") -> Manifest:
        """A manifest a store verified when it put it, rebuilt from its two objects:
        ``body``, the object named by the manifest id (its bytes already re-hashed to
        that id by the read, so they are this id's canonical bytes), and ``data``, the
        manifest as a document (``sections`` and ``layers`` parsed from ``body``, the ids,
        observations and labels from the snapshot record, also re-hashed on read);
        ``schema`` is the tag ``body`` holds beside them.

        The top level is checked as :meth:`from_dict` checks it, and ``body`` must name
        the identity rule of the recorded schema version; what is not repeated is the
        walk over every value and the hashing of the sections for ``env_id`` and
        ``platform_id``: the store did both before it wrote the objects and their index
        rows, and nothing but the store writes there (``envcap verify`` re-hashes it all,
        ``envcap store reindex`` reloads every manifest through :meth:`from_dict`)."""
        sections, layers, unknowns, labels = _envelope(data, source)
        tag = identity_tag(identity.rule(data["schema_version"]))
        if schema != tag:
            raise ManifestError(f"{source}: the manifest object does not name the identity rule of "
                                f"schema {data['schema_version']}")
        for key in ("id", "env_id", "platform_id"):
            if not isinstance(data[key], str) or not data[key].startswith("sha256:"):
                raise ManifestError(f"{source}: {key} is not an id")
        return cls._loaded(data, sections, layers, unknowns, labels,
                           ids=Ids(data["id"], data["env_id"], data["platform_id"], body))

    @classmethod
    def _loaded(cls, data: dict[str, Any], sections: dict[str, Any], layers: dict[str, Any], unknowns: list[Unknown],
                labels: dict[str, Any], *, ids: Ids) -> Manifest:
        """A manifest read from a document whose top level :func:`_envelope` checked,
        with the ids (and the canonical bytes of ``id``) it was found to have."""
        return cls(
            id=ids.id,
            env_id=ids.env_id,
            platform_id=ids.platform_id,
            sections=MappingProxyType(sections),
            layers=MappingProxyType({k: tuple(sorted(v)) for k, v in layers.items()}),
            observed=MappingProxyType(data["observed"]),
            unknowns=tuple(unknowns),
            labels=MappingProxyType(labels),
            schema_version=data["schema_version"],
            _body=ids.body,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        from .structure import parse

        data, plain = parse(text, source)
        return cls.from_dict(data, source=source, plain=plain)


def _envelope(data: Any, source: str) -> tuple[dict[str, Any], dict[str, Any], list[Unknown], dict[str, Any]]:
    """The checks of a manifest's top level (everything but the sections' content):
    its sections, layers, unknowns and labels."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest is a JSON object, not {type(data).__name__}")
    check_schema_version(data.get("schema_version"), source)
    missing = [k for k in TOP_LEVEL if k not in data]
    if missing:
        raise ManifestError(f"{source}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    sections = _expect(data, "sections", dict, source)
    layers = _expect(data, "layers", dict, source)
    for layer, names in layers.items():
        if layer not in LAYERS or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ManifestError(f"{source}: layers.{layer} must be one of {LAYERS} listing section names")
    assigned = [n for names in layers.values() for n in names]
    if sorted(assigned) != sorted(sections) or len(set(assigned)) != len(assigned):
        raise ManifestError(f"{source}: layers must name every section exactly once")
    unknowns = []
    for i, item in enumerate(_expect(data, "unknowns", list, source)):
        if not (isinstance(item, dict) and isinstance(item.get("probe"), str) and isinstance(item.get("error"), str)):
            raise ManifestError(f"{source}: unknowns[{i}] must have string fields probe and error")
        unknowns.append(Unknown(item["probe"], item["error"]))
    labels = _expect(data, "labels", dict, source)
    if not all(isinstance(v, str) for v in labels.values()):
        raise ManifestError(f"{source}: labels must map names to strings")
    _expect(data, "observed", dict, source)
    return sections, layers, unknowns, labels


def check_schema_version(version: Any, source: str) -> None:
    # ASCII digits only: str.isdigit() also takes "²" and "١", which int() then refuses or reads.
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,2}", version):
        raise ManifestError(f"{source}: no schema_version; this does not look like an envcap manifest")
    major = int(version.split(".")[0])
    if major != SCHEMA_MAJOR:
        raise SchemaVersionError(
            f"{source}: schema version {version} is not one this envcap reads (major {SCHEMA_MAJOR}); "
            "use an envcap release that writes that version"
        )


def _expect(data: dict[str, Any], key: str, kind: type, source: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ManifestError(f"{source}: {key} must be a JSON {'object' if kind is dict else 'array'}")
    return value
