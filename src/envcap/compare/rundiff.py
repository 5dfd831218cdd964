"""What differs between two runs: code, parameters, seeds, data, metrics and environment.

Two runs are compared part by part, each part keyed so that one change reads as one
line: parameters by name, named seeds by name, datasets by name (then path), outputs by
path, metrics by name, untracked files by path. The environment is compared as two
manifests are (:mod:`.diff`), when both runs captured one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..core.run import RunRecord
from .diff import Diff, diff_manifests, render_text as render_manifest_diff

PARTS = ("command", "code", "params", "seeds", "data", "outputs", "metrics", "environment")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunChange:
    """One difference: in ``part``, at ``key``, from ``before`` (A) to ``after`` (B)."""

    part: str
    key: str
    kind: str  # "added", "removed" or "changed"
    before: Any = None
    after: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "key": self.key, "kind": self.kind, "before": self.before, "after": self.after}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDiff:
    a: RunRecord
    b: RunRecord
    changes: tuple[RunChange, ...]
    environment: Diff | None = None  # the manifests' diff, when both runs have one
    notes: tuple[str, ...] = ()  # what could not be compared

    @property
    def identical(self) -> bool:
        return not self.changes

    def parts(self) -> dict[str, list[RunChange]]:
        out: dict[str, list[RunChange]] = {p: [] for p in PARTS}
        for c in self.changes:
            out[c.part].append(c)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "a": _side(self.a),
            "b": _side(self.b),
            "parts": {p: {"same": not items, "changes": [c.to_dict() for c in items]}
                      for p, items in self.parts().items()},
            "environment": self.environment.to_dict() if self.environment is not None else None,
            "notes": list(self.notes),
        }


def _side(r: RunRecord) -> dict[str, Any]:
    return {"run": r.id, "status": r.status, "started_at": r.started_at, "env_id": r.env_id,
            "commit": r.git.get("commit")}


def diff_runs(a: RunRecord, b: RunRecord, *, manifests: tuple[Any, Any] | None = None) -> RunDiff:
    """Every difference between runs A and B; ``manifests`` their environments, if loaded."""
    changes: list[RunChange] = []
    notes: list[str] = []
    changes += _scalars("command", {"command": a.command, "cwd": a.cwd, "status": a.status, "exit_code": a.exit_code},
                        {"command": b.command, "cwd": b.cwd, "status": b.status, "exit_code": b.exit_code})
    changes += _code(a.git, b.git)
    changes += _keyed("params", {p.name: p.value for p in a.params}, {p.name: p.value for p in b.params})
    changes += _scalars("seeds", {"global": a.seeds.get("global")}, {"global": b.seeds.get("global")})
    changes += _keyed("seeds", _prefixed("named.", a.seeds.get("named")), _prefixed("named.", b.seeds.get("named")))
    changes += _keyed("data", _datasets(a.data), _datasets(b.data))
    changes += _keyed("outputs", _outputs(a.outputs), _outputs(b.outputs))
    changes += _keyed("metrics", dict(a.metrics), dict(b.metrics))
    environment = None
    if a.env_id is None or b.env_id is None:
        missing = " and ".join(r.id for r in (a, b) if r.env_id is None)
        notes.append(f"the environment is not compared: run {missing} captured none")
    elif manifests is not None:
        environment = diff_manifests(manifests[0], manifests[1], a_ref=a.id, b_ref=b.id)
        if not environment.identical:
            changes += [RunChange(part="environment", key=f"{c.section}{'.' + c.path if c.path else ''}",
                                  kind=c.kind, before=c.before, after=c.after) for c in environment.changes]
            if not environment.changes:
                changes.append(RunChange(part="environment", key="id", kind="changed",
                                         before=environment.a.id, after=environment.b.id))
    elif a.env_id != b.env_id:
        changes.append(RunChange(part="environment", key="env_id", kind="changed", before=a.env_id, after=b.env_id))
    return RunDiff(a=a, b=b, changes=tuple(changes), environment=environment, notes=tuple(notes))


def _scalars(part: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[RunChange]:
    return [RunChange(part=part, key=k, kind="changed", before=a.get(k), after=b.get(k))
            for k in a if not _same(a.get(k), b.get(k))]


def _keyed(part: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[RunChange]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(RunChange(part=part, key=key, kind="added", after=b[key]))
        elif key not in b:
            out.append(RunChange(part=part, key=key, kind="removed", before=a[key]))
        elif not _same(a[key], b[key]):
            out.append(RunChange(part=part, key=key, kind="changed", before=a[key], after=b[key]))
    return out


def _same(x: Any, y: Any) -> bool:
    # 1 and 1.0, True and 1 are different values in a record: compare as JSON does.
    return json.dumps(x, sort_keys=True) == json.dumps(y, sort_keys=True)


def _prefixed(prefix: str, values: Any) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in (values or {}).items()}


def _code(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[RunChange]:
    fields = {k: (a.get(k), b.get(k)) for k in ("commit", "branch", "dirty")}
    fields["diff"] = (_diff_id(a.get("diff")), _diff_id(b.get("diff")))
    out = [RunChange(part="code", key=k, kind="changed", before=x, after=y)
           for k, (x, y) in fields.items() if not _same(x, y)]
    out += _keyed("code", _prefixed("untracked.", {u.get("path"): u.get("sha256") for u in a.get("untracked") or ()}),
                  _prefixed("untracked.", {u.get("path"): u.get("sha256") for u in b.get("untracked") or ()}))
    return out


def _diff_id(diff: Any) -> str | None:
    """The uncommitted diff by its hash (None: no diff)."""
    if not isinstance(diff, Mapping) or not diff.get("size"):
        return None
    return str(diff.get("sha256") or diff.get("object"))


def _datasets(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in entries:
        key = str(d.get("name") or d.get("path"))
        if key in out:
            key = f"{key} ({d.get('path')})"
        out[key] = {"path": d.get("path"), "fingerprint": d.get("fingerprint"), "files": d.get("files")}
    return out


def _outputs(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(o.get("path")): ("missing" if o.get("missing") else o.get("fingerprint")) for o in entries}


# -- text ----------------------------------------------------------------------------------

_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def render_text(d: RunDiff) -> list[str]:
    from ..capture.summary import short

    lines = []
    for label, r in (("A", d.a), ("B", d.b)):
        commit = (r.git.get("commit") or "")[:12]
        lines.append(f"{label}  run {r.id}  {r.status}  {r.started_at}" + (f"  commit {commit}" if commit else ""))
    if d.identical:
        lines.append("\nidentical: same command, code, parameters, seeds, data, metrics and environment")
        lines.extend(f"note: {n}" for n in d.notes)
        return lines
    for part, items in d.parts().items():
        if part == "environment":
            continue
        if not items:
            lines.append(f"\n{part}: same")
            continue
        lines.append(f"\n{part}: differs")
        lines.extend(_line(c) for c in items)
    env = d.environment
    if env is not None and not env.identical:
        lines.append("\nenvironment: differs")
        lines.extend("  " + line for line in render_manifest_diff(env)[2:] if line.strip())
    elif env is not None or (d.a.env_id and d.a.env_id == d.b.env_id):
        lines.append(f"\nenvironment: same (env_id {short(d.a.env_id or '')})")
    else:
        lines.extend(f"\nenvironment: differs\n{_line(c)}" for c in d.parts()["environment"])
    lines.extend(f"note: {n}" for n in d.notes)
    n = len(d.changes)
    lines.append(f"\n{n} difference{'s' if n != 1 else ''}")
    return lines


def _line(c: RunChange) -> str:
    if c.kind == "changed":
        return f"  ~ {c.key}: {_text(c.before)} → {_text(c.after)}"
    value = c.after if c.kind == "added" else c.before
    side = "B" if c.kind == "added" else "A"
    return f"  {_SIGN[c.kind]} {c.key}: {_text(value)}  (only in {side})"


def _text(value: Any, width: int = 72) -> str:
    if isinstance(value, Mapping) and "fingerprint" in value:
        from ..capture.summary import short

        text = f"{value.get('path')} {short(str(value.get('fingerprint')))} ({value.get('files')} file(s))"
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"
