"""What a rebuild did or would do: one frozen record, and the JSON ``--json`` prints.

Each part is typed (the plan's records, the workspace, the verdict's rows); the JSON is
the report's :meth:`RebuildReport.to_dict`, whose keys come in one order whatever the
action, and a part the action did not reach is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from .verdict import NOT_REPRODUCED, REPRODUCED

if TYPE_CHECKING:
    from ..compare.diff import Change
    from ..engines.spec import ContainerSpec
    from .plan import CodePaths, DataCheck, EnvPlan, ImageChoice
    from .preflight import Preflight
    from .verdict import MetricRow, OutputRow
    from .workspace import Workspace


@dataclass(frozen=True, slots=True)
class Candidate:
    """A place the run's commit may be found (``--dry-run`` lists them)."""

    where: str  # a path or a URL
    what: str  # "--repo", "the current directory's repository", "remote origin", ...
    state: str  # "has the commit", "no such commit", "would be cloned"

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "what": self.what, "state": self.state}


@dataclass(frozen=True, slots=True, kw_only=True)
class CodePlan:
    """The code a dry run would rebuild, and where it would look for it."""

    commit: str | None
    diff_bytes: int | None
    untracked: int
    candidates: tuple[Candidate, ...]
    paths: CodePaths

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "diff_bytes": self.diff_bytes, "untracked": self.untracked,
                "candidates": [c.to_dict() for c in self.candidates], **self.paths.to_dict()}


@dataclass(frozen=True, slots=True)
class CodeResult:
    """The rebuilt workspace, and how its git state differs from the run's (empty: the same)."""

    workspace: Workspace
    differences: tuple[str, ...]

    @property
    def same(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {**self.workspace.to_dict(), "same": self.same, "differences": list(self.differences)}


@dataclass(frozen=True, slots=True)
class Commands:
    """The rebuild as command lines to run by hand (``--print``)."""

    docker: str
    apptainer: str

    def to_dict(self) -> dict[str, Any]:
        return {"docker": self.docker, "apptainer": self.apptainer}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitComparison:
    original_code: int | None
    original_signal: str | None
    reproduced_code: int | None
    reproduced_signal: str | None
    match: bool

    def to_dict(self) -> dict[str, Any]:
        return {"original": {"exit_code": self.original_code, "signal": self.original_signal},
                "reproduced": {"exit_code": self.reproduced_code, "signal": self.reproduced_signal},
                "match": self.match}


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvComparison:
    """The environment captured in the container against the run's (it does not decide the verdict)."""

    original: str  # the run's env_id
    captured: bool
    rebuild: str | None = None  # the container's env_id
    same: bool | None = None
    platform_same: bool | None = None
    original_platform: str | None = None
    rebuild_platform: str | None = None
    software: tuple[str, ...] = ()  # each difference in words
    platform: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    error: str | None = None  # why nothing was captured

    def to_dict(self) -> dict[str, Any]:
        if not self.captured:
            return {"original": self.original, "captured": False, "same": None, "error": self.error}
        return {"original": self.original, "captured": True, "rebuild": self.rebuild, "same": self.same,
                "platform_same": self.platform_same, "original_platform": self.original_platform,
                "rebuild_platform": self.rebuild_platform, "software": list(self.software),
                "platform": list(self.platform), "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether the run reproduced and, when it did not, every reason, most telling first.

    A rebuild refused before it ran (its data changed) has reasons only.
    """

    reproduced: bool
    reasons: tuple[str, ...]
    exit: ExitComparison | None = None
    metrics: tuple[MetricRow, ...] | None = None
    outputs: tuple[OutputRow, ...] | None = None
    environment: EnvComparison | None = None
    # What differs between the two machines that can change bits (verdict.platform_reasons).
    platform: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return REPRODUCED if self.reproduced else NOT_REPRODUCED


Code = Union["CodePlan", "Workspace", "CodeResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildReport:
    """What a rebuild did or would do; :attr:`exit_code` is the CLI's (not in the JSON)."""

    action: str  # "run", "build-only", "dry-run" or "print"
    original: str  # the run's id
    env_id: str
    rebuild: str | None = None  # the new run's id, once it exists
    data: tuple[DataCheck, ...] | None = None
    gpu: Preflight | None = None
    command: tuple[str, ...] | None = None
    workdir: str | None = None
    environment_plan: EnvPlan | None = None
    image: ImageChoice | None = None
    code: Code | None = None
    commands: Commands | None = None
    spec: ContainerSpec | None = None
    verdict: Verdict | None = None
    caveats: tuple[str, ...] | None = None
    problems: tuple[str, ...] | None = None
    timings: Mapping[str, float] | None = None

    @property
    def exit_code(self) -> int:
        """0, or 1 when a verdict was reached and it is not reproduced."""
        return 1 if self.verdict is not None and not self.verdict.reproduced else 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "original": self.original, "rebuild": self.rebuild,
                               "env_id": self.env_id}
        if self.data is not None:
            out["data"] = [c.to_dict() for c in self.data]
        if self.gpu is not None:
            out["gpu"] = self.gpu.to_dict()
        if self.command is not None:
            out["command"] = list(self.command)
        if self.workdir is not None:
            out["workdir"] = self.workdir
        for key, part in (("environment_plan", self.environment_plan), ("image", self.image), ("code", self.code),
                          ("commands", self.commands), ("spec", self.spec)):
            if part is not None:
                out[key] = part.to_dict()
        verdict = self.verdict
        if verdict is not None:
            out.update(verdict=verdict.text, reproduced=verdict.reproduced, reasons=list(verdict.reasons))
            if verdict.exit is not None:
                out["exit"] = verdict.exit.to_dict()
            if verdict.metrics is not None:
                # The metrics the verdict stands on, and apart, those not expected to reproduce.
                out["metrics"] = [m.to_dict() for m in verdict.metrics if m.expected]
                out["metrics_apart"] = [m.to_dict() for m in verdict.metrics if not m.expected]
            if verdict.outputs is not None:
                out["outputs"] = [o.to_dict() for o in verdict.outputs]
            if verdict.environment is not None:  # a run that ran: compared in full
                out["environment"] = verdict.environment.to_dict()
                out["platform_reasons"] = list(verdict.platform)
        for key, items in (("caveats", self.caveats), ("problems", self.problems)):
            if items is not None:
                out[key] = list(items)
        if self.timings is not None:
            out["timings"] = dict(self.timings)
        return out
