"""Semantic diff of two manifests: what differs, by layer and section.

A manifest's sections are plain JSON, so any section can be compared generically, path by
path. Three shapes get better treatment than a path-by-path walk:

- a *package list* (a list of records that each carry a ``name`` and a ``version``, as
  the python, system and conda sections hold) is compared by package, keyed by name
  (and architecture where records have one), so an upgrade reads as one change with
  both records, not as a shifted list;
- a list of records sharing a unique ``name``, ``path`` or ``id`` is keyed by it;
- a list of plain values (CPU flags) is compared as a set of values when only its
  members changed, so one new flag is one change.

Which section belongs to which layer comes from the manifests' own ``layers``, never
from a list here. Changes that are likely to change numerical results (BLAS, CUDA
libraries, the GPU driver, the numerical frameworks, compiler flags) are marked from
one table, :data:`NUMERICS`. Only what is hashed into the ids is compared: two
manifests are identical exactly when their ids are equal, whatever their hostnames,
clocks and labels say.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from ..core import identity
from ..core.manifest import LAYERS, SCHEMA_VERSION, Manifest, Unknown

# Reading order of the sections envcap knows (the order: OS and kernel, libc,
# driver and CUDA, Python, packages, compilers, environment). It only orders output:
# a section not named here follows, by name.
SECTION_ORDER = (
    "os", "kernel", "libc", "gpu", "cuda", "python", "system", "conda",
    "compilers", "environment", "cpu", "memory", "container",
)

# Package fields that say how a package was installed rather than what it is: a change
# in these alone cannot change what a program computes.
INSTALL_ONLY_FIELDS = frozenset({"installer", "requested"})


# NamedTuples, not dataclasses: the dataclasses module imports inspect, which cost a diff
# of two manifest files (a command of about a tenth of a second) a tenth of its time.
class Rule(NamedTuple):
    """One entry of the numerically sensitive stack.

    ``packages`` matches package names (whole name, any case) in every package list of
    every section; ``section`` with ``path`` matches values at those paths of that
    section (``path`` None: anything in the section).
    """

    reason: str
    packages: str | None = None
    section: str | None = None
    path: str | None = None


# What is likely to change numerical results when it changes. Kept in this one table so
# that it can be read and extended in one place.
NUMERICS: tuple[Rule, ...] = (
    Rule("BLAS/LAPACK", packages=(
        r"(lib)?(open|c|flexi)?blas[-_.\d]*.*|(lib)?lapacke?([-_.\d].*)?|(lib)?mkl([-_.\d].*)?"
        r"|intel-openmp|(lib)?blis\d*([-_.].*)?|scipy-openblas.*|(lib)?atlas\d*([-_.].*)?|libflame.*"
    )),
    Rule("CUDA library", packages=(
        r"nvidia-(?!ml-py$).*|libnvidia-.*|cudatoolkit.*|cuda-.*|cudnn.*|(lib)?nccl.*|cupy.*"
        r"|(lib)?cu(dart|blas|dnn|fft|rand|solver|sparse|sparselt|tensor|file|pti)([-_.\d].*)?"
        r"|(lib)?nv(jitlink|rtc|toolkit)([-_.\d].*)?"
    )),
    Rule("numerical library", packages=(
        r"torch|pytorch|libtorch.*|torchvision|torchaudio|triton|pytorch-triton.*"
        r"|numpy|python3-numpy|scipy|python3-scipy|jax|jaxlib|jax-cuda\d+-.*"
        r"|tensorflow.*|tf-nightly.*|onnxruntime.*|xformers|flash-attn"
    )),
    Rule("CUDA", section="cuda"),
    Rule("GPU driver", section="gpu", path=r"(cuda_)?driver_version"),
    Rule("GPU model", section="gpu", path=r"devices.*"),
    Rule("compiler flags", section="compilers", path=r"flags.*"),
    Rule("numerics setting", section="environment", path=(
        r"variables\.(OMP_.*|MKL_.*|OPENBLAS_.*|BLIS_.*|CUBLAS_.*|(CUDNN|NCCL)_(?!VERSION$).*|NVIDIA_TF32_OVERRIDE"
        r"|TF_(ENABLE_ONEDNN_OPTS|DETERMINISTIC_OPS|CUDNN_.*|XLA_FLAGS)|XLA_FLAGS|JAX_.*"
        r"|TORCH_(ALLOW_TF32_.*|CUDNN_.*|BLAS_.*))"
    )),
)

_PACKAGE_RULES = tuple((r.reason, re.compile(r.packages, re.IGNORECASE)) for r in NUMERICS if r.packages)
_PATH_RULES = tuple(
    (r.reason, r.section, re.compile(r.path) if r.path is not None else None) for r in NUMERICS if r.section
)


class Change(NamedTuple):
    """One difference between manifest A and manifest B.

    ``path`` is where in the section (``""``: the whole section, present on one side
    only). For a package, ``package`` is its key and ``before``/``after`` are its whole
    records, ``fields`` the record fields that differ. ``sensitive`` says why the change
    is likely to change numerical results, or is None.
    """

    layer: str
    section: str
    path: str
    kind: str  # "added", "removed", "changed", or "moved" (to another layer)
    before: Any = None
    after: Any = None
    package: str | None = None
    fields: tuple[str, ...] = ()
    sensitive: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "section": self.section,
            "path": self.path,
            "kind": self.kind,
            "package": self.package,
            "before": self.before,
            "after": self.after,
            "fields": list(self.fields),
            "sensitive": self.sensitive,
        }


class Side(NamedTuple):
    """Which manifest one side of a diff is, and what was observed when it was taken."""

    ref: str
    id: str
    env_id: str
    platform_id: str
    hostname: str | None
    time: str | None
    unknowns: tuple[Unknown, ...]
    schema_version: str = SCHEMA_VERSION
    current_env_id: str = ""  # env_id under the newest identity rule

    @classmethod
    def of(cls, m: Manifest, ref: str) -> Side:
        return cls(ref=ref, id=m.id, env_id=m.env_id, platform_id=m.platform_id,
                   hostname=m.observed.get("hostname"), time=m.observed.get("time"), unknowns=m.unknowns,
                   schema_version=m.schema_version, current_env_id=m.current_env_id())

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "id": self.id, "env_id": self.env_id, "platform_id": self.platform_id,
                "schema_version": self.schema_version, "current_env_id": self.current_env_id,
                "hostname": self.hostname, "time": self.time, "unknowns": [u.to_dict() for u in self.unknowns]}


class Diff(NamedTuple):
    a: Side
    b: Side
    changes: tuple[Change, ...]

    @property
    def identical(self) -> bool:
        return self.a.id == self.b.id

    @property
    def sensitive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.sensitive)

    @property
    def other_rules(self) -> bool:
        """Whether A and B were hashed by different identity rules (schema minors)."""
        return identity.rule(self.a.schema_version) != identity.rule(self.b.schema_version)

    def layer_ids(self) -> dict[str, tuple[str, str]]:
        # Under one rule the recorded ids compare; across rules, the ids under the newest.
        software = (self.a.current_env_id, self.b.current_env_id) if self.other_rules else (self.a.env_id, self.b.env_id)
        return {"software": software, "platform": (self.a.platform_id, self.b.platform_id)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "layers": {k: {"same": x == y, "a": x, "b": y} for k, (x, y) in self.layer_ids().items()},
            "changes": [c.to_dict() for c in self.changes],
            "summary": {
                "changes": len(self.changes),
                "sensitive": len(self.sensitive),
                "sections": dict(Counter(c.section for c in self.changes)),
            },
        }


# -- computing a diff ----------------------------------------------------------------------


def diff_manifests(a: Manifest, b: Manifest, *, a_ref: str = "A", b_ref: str = "B",
                   layers: Iterable[str] | None = None) -> Diff:
    """Every difference between A and B (in ``layers`` only, when given)."""
    return Diff(a=Side.of(a, a_ref), b=Side.of(b, b_ref), changes=changes_between(a, b, layers=layers))


def changes_between(a: Manifest, b: Manifest, *, layers: Iterable[str] | None = None) -> tuple[Change, ...]:
    """The differences between two manifests, in reading order.

    A layer whose ids are equal is skipped without looking at its sections: the ids are
    hashes of exactly those sections.
    """
    wanted = set(LAYERS if layers is None else layers)
    # env_id hashes the identity form of the software sections (schema 1.1): equal ids
    # can hide facts that differ (a venv's path), which are still shown.
    same_software = a.current_env_id() == b.current_env_id() and all(a.sections.get(n) == b.sections.get(n)
                                                 for n in (*a.layers.get("software", ()), *b.layers.get("software", ())))
    same = {"software": same_software, "platform": a.platform_id == b.platform_id}
    layer_a = {s: layer for layer, names in a.layers.items() for s in names}
    layer_b = {s: layer for layer, names in b.layers.items() for s in names}
    changes: list[Change] = []
    for name in sorted(set(layer_a) | set(layer_b), key=section_rank):
        la, lb = layer_a.get(name), layer_b.get(name)
        layer = lb or la or "software"
        if la is not None and lb is not None and la != lb:
            if la in wanted or lb in wanted:
                changes.append(Change(layer=lb, section=name, path="", kind="moved", before=la, after=lb))
            continue
        if layer not in wanted or same.get(layer, False):
            continue
        changes.extend(_section_changes(layer, name, a.sections.get(name), b.sections.get(name),
                                        name in layer_a, name in layer_b))
    return tuple(sorted(changes, key=lambda c: (LAYERS.index(c.layer) if c.layer in LAYERS else 9,
                                                section_rank(c.section))))


def section_rank(name: str) -> tuple[int, str]:
    return (SECTION_ORDER.index(name) if name in SECTION_ORDER else len(SECTION_ORDER), name)


def _section_changes(layer: str, name: str, a: Any, b: Any, in_a: bool, in_b: bool) -> Iterator[Change]:
    if not in_a or not in_b:
        value = b if in_b else a
        yield Change(layer=layer, section=name, path="", kind="added" if in_b else "removed",
                     before=None if in_b else a, after=b if in_b else None,
                     sensitive=_section_sensitivity(name, value))
        return
    for path, kind, before, after, package, fields in _walk(a, b, []):
        rendered = render_path(path)
        if package is not None:
            record = after if after is not None else before
            install_only = kind == "changed" and set(fields) <= INSTALL_ONLY_FIELDS
            reason = None if install_only else package_sensitivity(str(record.get("name", "")))
        else:
            reason = path_sensitivity(name, rendered)
        yield Change(layer=layer, section=name, path=rendered, kind=kind, before=before, after=after,
                     package=package, fields=fields, sensitive=reason)


Segment = str | int
Found = tuple[list[Segment], str, Any, Any, "str | None", tuple[str, ...]]


def _walk(a: Any, b: Any, path: list[Segment]) -> Iterator[Found]:
    """(path, kind, before, after, package key, package fields) for each difference."""
    if type(a) is type(b) and a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a:
                yield path + [key], "added", None, b[key], None, ()
            elif key not in b:
                yield path + [key], "removed", a[key], None, None, ()
            else:
                yield from _walk(a[key], b[key], path + [key])
        return
    if isinstance(a, list) and isinstance(b, list):
        yield from _walk_list(a, b, path)
        return
    yield path, "changed", a, b, None, ()


def _walk_list(a: list[Any], b: list[Any], path: list[Segment]) -> Iterator[Found]:
    if is_package_list(a) and is_package_list(b):
        yield from _package_changes(a, b, path)
        return
    field = _identity_field(a, b)
    if field is not None:
        ka = {item[field]: item for item in a}
        kb = {item[field]: item for item in b}
        for key in sorted(set(ka) | set(kb)):
            if key not in ka:
                yield path + [f"[{key}]"], "added", None, kb[key], None, ()
            elif key not in kb:
                yield path + [f"[{key}]"], "removed", ka[key], None, None, ()
            else:
                yield from _walk(ka[key], kb[key], path + [f"[{key}]"])
        return
    if all(_is_scalar(x) for x in a) and all(_is_scalar(x) for x in b):
        ca, cb = Counter(map(_scalar_key, a)), Counter(map(_scalar_key, b))
        if ca == cb:  # the same members in another order: order is the change
            yield path, "changed", a, b, None, ()
            return
        for kind, extra in (("removed", ca - cb), ("added", cb - ca)):
            for (_, value), count in sorted(extra.items(), key=lambda kv: str(kv[0][1])):
                for _ in range(count):
                    yield path, kind, value if kind == "removed" else None, value if kind == "added" else None, None, ()
        return
    for i in range(max(len(a), len(b))):
        if i >= len(a):
            yield path + [i], "added", None, b[i], None, ()
        elif i >= len(b):
            yield path + [i], "removed", a[i], None, None, ()
        else:
            yield from _walk(a[i], b[i], path + [i])


def _package_changes(a: list[dict[str, Any]], b: list[dict[str, Any]], path: list[Segment]) -> Iterator[Found]:
    ka = {package_key(p): p for p in a}
    kb = {package_key(p): p for p in b}
    for key in sorted(set(ka) | set(kb)):
        pa, pb = ka.get(key), kb.get(key)
        if pa == pb and pa is not None and pb is not None and type(pa) is type(pb):
            continue
        at = path + [f"[{key}]"]
        if pa is None:
            yield at, "added", None, pb, key, ()
        elif pb is None:
            yield at, "removed", pa, None, key, ()
        else:
            fields = tuple(sorted(f for f in set(pa) | set(pb) if pa.get(f, _MISSING) != pb.get(f, _MISSING)))
            yield at, "changed", pa, pb, key, fields


_MISSING = object()


def is_package_list(value: Any) -> bool:
    """Whether VALUE is a list of package records with unique keys."""
    if not isinstance(value, list) or not value:
        return isinstance(value, list)
    if not all(isinstance(p, dict) and isinstance(p.get("name"), str) and "version" in p for p in value):
        return False
    return len({package_key(p) for p in value}) == len(value)


def package_key(record: Mapping[str, Any]) -> str:
    """A package's identity in its list: its name, and its architecture when it has one."""
    arch = record.get("arch")
    return f"{record['name']}:{arch}" if isinstance(arch, str) and arch else str(record["name"])


def _identity_field(a: list[Any], b: list[Any]) -> str | None:
    if not a and not b:
        return None
    for field in ("name", "path", "id"):
        ok = True
        for items in (a, b):
            keys = [x.get(field) if isinstance(x, dict) else None for x in items]
            if not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
                ok = False
                break
        if ok:
            return field
    return None


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def _scalar_key(x: Any) -> tuple[str, Any]:
    # True == 1 in Python, but not in JSON: keep the type in the key.
    return (type(x).__name__, x)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_path(path: Sequence[Segment]) -> str:
    """``devices[0].name``, ``tools["g++"].version``, ``packages[numpy]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif seg.startswith("[") and seg.endswith("]"):
            out += seg
        elif _IDENT.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{json.dumps(seg)}]"
    return out


# -- the numerically sensitive stack -------------------------------------------------------


def package_sensitivity(name: str) -> str | None:
    for reason, pattern in _PACKAGE_RULES:
        if pattern.fullmatch(name):
            return reason
    return None


def path_sensitivity(section: str, path: str) -> str | None:
    for reason, rule_section, pattern in _PATH_RULES:
        if rule_section == section and (pattern is None or pattern.fullmatch(path)):
            return reason
    return None


def _section_sensitivity(section: str, value: Any) -> str | None:
    """Why a section present on one side only is sensitive: a rule for a path it holds,
    or a sensitive package in one of its package lists."""
    paths = None
    for reason, rule_section, pattern in _PATH_RULES:
        if rule_section != section:
            continue
        if pattern is None:
            return reason
        if paths is None:
            paths = [render_path(p) for p in _leaf_paths(value, [])]
        if any(pattern.fullmatch(p) for p in paths):
            return reason
    if isinstance(value, dict):
        for item in value.values():
            if is_package_list(item):
                for record in item:
                    found = package_sensitivity(record["name"])
                    if found:
                        return found
    return None


def _leaf_paths(value: Any, path: list[Segment]) -> Iterator[list[Segment]]:
    """The paths of the values in VALUE that are neither objects nor arrays."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, path + [key])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaf_paths(item, path + [i])
    else:
        yield path


# -- how far apart two manifests are (cheaply) ------------------------------------------


def features(m: Manifest, layer: str) -> frozenset[tuple[str, str, str]]:
    """The manifest's content in LAYER as a set of small facts: one per package and one
    per top-level field of each section. The size of the symmetric difference of two such
    sets is a cheap distance, used to pick which groups to diff against each other."""
    facts: set[tuple[str, str, str]] = set()
    text = _fact_text()
    for name in m.layers.get(layer, ()):
        section = m.sections.get(name)
        if not isinstance(section, dict):
            facts.add((name, "", text(section)))
            continue
        for key, value in section.items():
            if isinstance(value, list) and value and is_package_list(value):
                facts.update((name, f"{key}[{package_key(p)}]", text(p)) for p in value)
            else:
                facts.add((name, key, text(value)))
    return frozenset(facts)


def _fact_text() -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True)``, with the encoder made once rather than once
    a value (a fleet takes the text of every package of every group's manifest).
    A manifest's values are JSON values, so the encoder's check for cycles is not needed:
    a cycle would end in RecursionError either way."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C encoder
        return lambda value: json.dumps(value, sort_keys=True)
    defaults = json.JSONEncoder(sort_keys=True)
    encode = make(None, defaults.default, json.encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True)

    def text(value: Any) -> str:
        if isinstance(value, str):  # the C encoder takes containers and numbers; json.dumps takes all
            return json.encoder.encode_basestring_ascii(value)
        return "".join(encode(value, 0))

    return text


# -- text ------------------------------------------------------------------------------------


def describe(change: Change, a: str = "A", b: str = "B") -> str:
    """One line for a change: ``python numpy 1.26.4 → 2.0.0``, ``gpu.driver_version 550 → 580``."""
    where = change.section + (f".{change.path}" if change.path and not change.path.startswith("[") else change.path)
    if change.kind == "moved":
        return f"{change.section}: moved from the {change.before} layer to the {change.after} layer"
    if change.path == "":
        return f"{change.section}: section only in {b if change.kind == 'added' else a}"
    if change.package is not None:
        return f"{change.section} {_package_text(change)}"
    if change.kind == "changed":
        return f"{where}: {value_text(change.before)} → {value_text(change.after)}"
    if change.kind == "added":
        return f"{where}: added {value_text(change.after)}"
    return f"{where}: removed {value_text(change.before)}"


def section_summary(changes: Sequence[Change], a: str = "A", b: str = "B") -> list[str]:
    """One line per section: how many fields and packages differ, ``!`` where any is sensitive."""
    lines = []
    sections: dict[str, list[Change]] = {}
    for c in changes:
        sections.setdefault(c.section, []).append(c)
    for name, items in sections.items():
        mark = "! " if any(c.sensitive for c in items) else ""
        if len(items) == 1 and items[0].path == "":
            lines.append(mark + describe(items[0], a, b))
            continue
        packages = Counter(c.kind for c in items if c.package is not None)
        fields = sum(1 for c in items if c.package is None)
        parts = [f"{fields} field{'s' if fields != 1 else ''}"] if fields else []
        if packages:
            parts.append("packages " + ", ".join(f"{packages[k]} {k}" for k in ("added", "removed", "changed")
                                                  if packages[k]))
        lines.append(f"{mark}{name}: {'; '.join(parts)}")
    return lines


def _package_text(change: Change) -> str:
    if change.kind == "added":
        return f"+{change.package} {change.after.get('version')}{_origin_suffix(change.after)}"
    if change.kind == "removed":
        return f"-{change.package} {change.before.get('version')}{_origin_suffix(change.before)}"
    pa, pb = change.before, change.after
    text = f"{change.package} {pa.get('version')} → {pb.get('version')}" if "version" in change.fields \
        else f"{change.package} {pb.get('version')}"
    others = [f for f in change.fields if f != "version"]
    for f in others:
        if f == "origin":
            text += f" (origin {origin_text(pa.get('origin'))} → {origin_text(pb.get('origin'))})"
        else:
            text += f" ({f} {value_text(pa.get(f))} → {value_text(pb.get(f))})"
    return text


def _origin_suffix(record: Mapping[str, Any]) -> str:
    origin = record.get("origin")
    if isinstance(origin, dict) and origin.get("kind") not in (None, "index"):
        return f" ({origin_text(origin)})"
    return ""


def origin_text(origin: Any) -> str:
    if not isinstance(origin, dict):
        return value_text(origin)
    text = str(origin.get("kind"))
    if origin.get("url"):
        text += f" {origin['url']}"
    commit = origin.get("commit") or (origin.get("git") or {}).get("commit")
    if commit:
        text += f"@{str(commit)[:12]}"
    return text


def value_text(value: Any, width: int = 72) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text(d: Diff) -> list[str]:
    """The diff as lines of plain text, grouped by layer and section."""
    from ..capture.summary import short

    lines = []
    for label, side in (("A", d.a), ("B", d.b)):
        seen = " ".join(x for x in (side.hostname or "", side.time or "") if x)
        lines.append(f"{label}  {side.ref}  id {short(side.id)}" + (f"  ({seen})" if seen else ""))
    if d.identical:
        lines.append("\nidentical: same id, same environment and platform")
        return lines
    if d.other_rules:
        lines.append(f"\nA is schema {d.a.schema_version}, B {d.b.schema_version}: another identity rule, so "
                     "other recorded env_ids; compared by the newest rule's")
    by_layer: dict[str, list[Change]] = {}
    for c in d.changes:
        by_layer.setdefault(c.layer, []).append(c)
    for layer, (ida, idb) in d.layer_ids().items():
        key = "env_id" if layer == "software" else "platform_id"
        if ida == idb and not by_layer.get(layer):
            lines.append(f"\n{layer}: same ({key} {short(ida)})")
            continue
        if ida == idb:
            lines.append(f"\n{layer}: same environment ({key} {short(ida)}); facts outside its identity differ")
            lines.extend(_layer_lines(by_layer[layer], d))
            continue
        lines.append(f"\n{layer}: differs ({key} {short(ida)} → {short(idb)})")
        lines.extend(_layer_lines(by_layer.get(layer, []), d))
    lines.extend(_unknown_lines(d))
    n, s = len(d.changes), len(d.sensitive)
    lines.append(f"\n{n} difference{'s' if n != 1 else ''}; {s} likely to change numerical results (marked !)")
    return lines


def _layer_lines(changes: list[Change], d: Diff) -> list[str]:
    lines: list[str] = []
    sections: dict[str, list[Change]] = {}
    for c in changes:
        sections.setdefault(c.section, []).append(c)
    for name, items in sections.items():
        packages = Counter(c.kind for c in items if c.package is not None)
        counts = ", ".join(f"{packages[k]} {k}" for k in ("added", "removed", "changed") if packages[k])
        lines.append(f"  {name}" + (f"  (packages: {counts})" if counts else ""))
        for c in items:
            lines.extend(_change_lines(c))
    return lines


_SIGN = {"added": "+", "removed": "-", "changed": "~", "moved": ">"}


def _change_lines(c: Change) -> list[str]:
    mark = "!" if c.sensitive else " "
    note = f"   ! {c.sensitive}" if c.sensitive else ""
    if c.path == "" and c.kind in ("added", "removed"):
        value = c.after if c.kind == "added" else c.before
        side = "B" if c.kind == "added" else "A"
        out = [f"  {mark} {_SIGN[c.kind]} only in {side}{note}"]
        out.extend(f"        {line}" for line in _section_outline(value))
        return out
    if c.package is not None:
        text = _package_text(c)
        return [f"  {mark} {_SIGN[c.kind]} {text.lstrip('+-')}{note}"]
    if c.kind == "moved":
        return [f"  {mark} > moved from the {c.before} layer to the {c.after} layer"]
    if c.kind == "changed":
        return [f"  {mark} ~ {c.path or '(value)'}: {value_text(c.before)} → {value_text(c.after)}{note}"]
    value = c.after if c.kind == "added" else c.before
    return [f"  {mark} {_SIGN[c.kind]} {c.path}: {value_text(value)}{note}"]


def _section_outline(value: Any) -> list[str]:
    """The scalar fields of a section present on one side only, and the sizes of its lists."""
    if not isinstance(value, dict):
        return [value_text(value)]
    out = []
    for key, item in sorted(value.items()):
        if item is None or item == {} or item == []:
            continue
        if isinstance(item, list):
            out.append(f"{key}: {len(item)} entries" if len(value_text(item)) > 72 else f"{key}: {value_text(item)}")
        else:
            out.append(f"{key}: {value_text(item)}")
    return out


def _unknown_lines(d: Diff) -> list[str]:
    lines = []
    for label, side in (("A", d.a), ("B", d.b)):
        for u in side.unknowns:
            lines.append(f"note: on {label} the {u.probe} probe failed ({u.error}); what it reads is not compared")
    return [""] + lines if lines else []
