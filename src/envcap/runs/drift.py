"""Drift: key runs whose latest revalidation differs from the recording or from the one before.

A revalidation is a reproduction of a key run that ``envcap revalidate`` made (its record's
``reproduction`` names the round). For each key run, the latest revalidation with a
verdict is compared with the recording (its verdict says whether it reproduced) and with
the revalidation before it (the verdict, and each metric's value). The causes come from the
rebuild's reasons (an exit status, a metric beyond its tolerance, an output) and from what
the rebuild found different in the environment and the platform.

Read-only and store-only, so that both ``envcap drift`` and ``envcap ui`` show the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store import revalidations
from ..store import runs as runs_store
from ..store.base import StoreBackend

REPRODUCED = "reproduced"


@dataclass(frozen=True, slots=True)
class Revalidation:
    rebuild: str
    round: str
    verdict: str
    platform_id: str | None
    env_id: str | None
    node: str | None
    reasons: tuple[str, ...]
    environment: tuple[str, ...]
    platform: tuple[str, ...]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"rebuild": self.rebuild, "round": self.round, "verdict": self.verdict,
                "platform_id": self.platform_id, "env_id": self.env_id, "node": self.node,
                "reasons": list(self.reasons), "environment": list(self.environment),
                "platform": list(self.platform), "metrics": dict(self.metrics)}


@dataclass(frozen=True, slots=True)
class KeyRun:
    run: str
    command: str
    revalidations: tuple[Revalidation, ...]
    drift: bool
    status: str  # "never revalidated", "reproduces", "drifted", "changed since the last revalidation", "recovered"
    causes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def latest(self) -> Revalidation | None:
        return self.revalidations[-1] if self.revalidations else None

    def to_dict(self) -> dict[str, Any]:
        latest = self.latest
        previous = self.revalidations[-2] if len(self.revalidations) > 1 else None
        return {"run": self.run, "command": self.command, "drift": self.drift, "status": self.status,
                "causes": list(self.causes), "latest": latest.to_dict() if latest else None,
                "previous": previous.to_dict() if previous else None,
                "revalidations": len(self.revalidations)}


def _revalidation(run_id: str, record: Any) -> Revalidation | None:
    rep = record.reproduction or {}
    if not rep.get("revalidation") or not rep.get("verdict"):
        return None  # a rebuild of another kind, or one that reached no verdict (cancelled, timed out)
    return Revalidation(
        rebuild=run_id, round=str(rep["revalidation"]), verdict=str(rep["verdict"]),
        platform_id=rep.get("platform_id"), env_id=rep.get("env_id"), node=rep.get("node"),
        reasons=tuple(str(r) for r in rep.get("reasons") or ()),
        environment=tuple(str(r) for r in rep.get("environment") or ()),
        platform=tuple(str(r) for r in rep.get("platform") or ()),
        metrics=dict(rep.get("metrics") or record.metrics or {}))


def key_runs(store: StoreBackend) -> list[KeyRun]:
    """Every key run with its revalidations (oldest first) and whether it drifted."""
    ids = revalidations.key_ids(store)
    out = []
    for run_id, record, _, copies, problem in runs_store.load_many(store, ids):
        command = record.command if record is not None else f"(unreadable: {problem})"
        rebuild_ids = [c["run"] for c in copies]
        found = []
        for rid, rec, _, _, _ in runs_store.load_many(store, rebuild_ids):
            rv = _revalidation(rid, rec) if rec is not None else None
            if rv is not None:
                found.append(rv)
        out.append(_judge(run_id, command, tuple(found)))
    return out


def _judge(run_id: str, command: str, found: tuple[Revalidation, ...]) -> KeyRun:
    if not found:
        return KeyRun(run_id, command, found, False, "never revalidated")
    latest = found[-1]
    previous = found[-2] if len(found) > 1 else None
    causes: list[str] = []
    if latest.verdict != REPRODUCED:
        causes += [f"{r}" for r in latest.reasons]
    if previous is not None:
        changed = [f"metric {k} changed since the revalidation before ({previous.rebuild}): "
                   f"{previous.metrics.get(k)!r} → {latest.metrics.get(k)!r}"
                   for k in sorted(set(previous.metrics) | set(latest.metrics))
                   if previous.metrics.get(k) != latest.metrics.get(k)]
        if previous.verdict != latest.verdict:
            causes.insert(0, f"verdict changed since the revalidation before ({previous.rebuild}): "
                             f"{previous.verdict} → {latest.verdict}")
        if latest.verdict != REPRODUCED or previous.verdict == REPRODUCED:
            causes += [c for c in changed if c not in causes]
    if causes:
        # Version changes first: an origin that changed alone is seldom why.
        lines = sorted(latest.environment, key=lambda line: "→" not in line.split(" (", 1)[0])
        causes += [f"environment: {line}" for line in lines]
        causes += [f"platform: {line}" for line in latest.platform]
        if previous is not None and previous.platform_id != latest.platform_id:
            causes.append(f"platform: the node changed ({_short(previous.platform_id)} → "
                          f"{_short(latest.platform_id)})")
    if latest.verdict != REPRODUCED:
        status = "drifted"
    elif previous is not None and previous.verdict != REPRODUCED:
        return KeyRun(run_id, command, found, False, "recovered", tuple(causes))
    elif causes:
        status = "changed since the last revalidation"
    else:
        return KeyRun(run_id, command, found, False, "reproduces")
    return KeyRun(run_id, command, found, True, status, tuple(causes))


def _short(value: str | None) -> str:
    return (value or "unknown").removeprefix("sha256:")[:12]


def drifted(store: StoreBackend) -> list[KeyRun]:
    return [k for k in key_runs(store) if k.drift]
