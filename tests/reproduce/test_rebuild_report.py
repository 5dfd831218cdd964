"""The rebuild's report: one frozen record whose JSON keeps the keys (and their order)
that ``envcap rebuild --json`` has always printed, whatever the action."""

from __future__ import annotations

import dataclasses
import json

import pytest

from envcap.engines.spec import ContainerSpec
from envcap.reproduce.plan import CodePaths, DataCheck, EnvPlan, ImageChoice
from envcap.reproduce.preflight import Preflight
from envcap.reproduce.report import (
    Candidate,
    CodePlan,
    CodeResult,
    Commands,
    EnvComparison,
    ExitComparison,
    RebuildReport,
    Verdict,
)
from envcap.reproduce.verdict import compare_metrics, compare_outputs
from envcap.reproduce.workspace import Workspace

HEAD = ["action", "original", "rebuild", "env_id"]
PLANNED = [*HEAD, "data", "gpu", "command", "workdir", "environment_plan", "image"]
SHA = "sha256:" + "c" * 64


def planned(action: str, **parts: object) -> RebuildReport:
    data = DataCheck(name="train.csv", recorded_path="/d/train.csv", source="/d/train.csv", target="/d/train.csv",
                     recorded=SHA, now=SHA, source_given=False, by_api=False)
    return RebuildReport(action=action, original="01AAAAAAAAAAAAAAAAAAAAAAAA", env_id=SHA, data=(data,),
                         gpu=Preflight(False, False, None, None, None), command=("python", "train.py"), workdir="/w",
                         environment_plan=EnvPlan({"PATH": "/usr/bin"}, (), ()),
                         image=ImageChoice(reference=f"r@{SHA}", how="in the store", status="complete", digest=SHA,
                                           differences=()), **parts)  # type: ignore[arg-type]


def workspace() -> Workspace:
    return Workspace(path="/ws", source="/repo", commit="a" * 40, diff_applied=True, untracked=1, missing=())


def test_every_action_keeps_its_keys_in_order() -> None:
    built = RebuildReport(action="build-only", original="01A", env_id=SHA, timings={"image": 1.0, "total": 1.0},
                          image=ImageChoice(reference=f"r@{SHA}", how="built", status="complete", digest=SHA,
                                            differences=(), pulled=True))
    assert list(built.to_dict()) == [*HEAD, "image", "timings"] and built.exit_code == 0
    refused = RebuildReport(action="run", original="01A", env_id=SHA, data=planned("run").data, timings={},
                            verdict=Verdict(reproduced=False, reasons=("data train.csv changed",)))
    assert list(refused.to_dict()) == [*HEAD, "data", "verdict", "reproduced", "reasons", "timings"]
    assert refused.exit_code == 1 and refused.to_dict()["verdict"] == "not reproduced"
    code = CodePlan(commit="a" * 40, diff_bytes=10, untracked=0, candidates=(Candidate("/repo", "--repo", "x"),),
                    paths=CodePaths("/w", "/w", False))
    dry = planned("dry-run", code=code, caveats=(), timings={"total": 0.1})
    assert list(dry.to_dict()) == [*PLANNED, "code", "caveats", "timings"]
    assert list(dry.to_dict()["code"]) == ["commit", "diff_bytes", "untracked", "candidates", "target", "workdir",
                                           "moved"]
    spec = ContainerSpec(image=f"r@{SHA}", argv=("python",), workdir="/w")
    printed = planned("print", code=workspace(), commands=Commands("docker run ...", "apptainer exec ..."), spec=spec)
    assert list(printed.to_dict()) == [*PLANNED, "code", "commands", "spec"]
    verdict = Verdict(reproduced=True, reasons=(),
                      exit=ExitComparison(original_code=0, original_signal=None, reproduced_code=0,
                                          reproduced_signal=None, match=True),
                      metrics=tuple(compare_metrics({"loss": 0.5}, {"loss": 0.5})),
                      outputs=tuple(compare_outputs([{"path": "m", "fingerprint": SHA}],
                                                    [{"path": "m", "fingerprint": SHA}], [None])),
                      environment=EnvComparison(original=SHA, captured=False, error="no manifest"))
    ran = planned("run", rebuild="01B", code=CodeResult(workspace(), ()), verdict=verdict, caveats=(), problems=(),
                  timings={"total": 2.0})
    out = ran.to_dict()
    assert list(out) == [*PLANNED, "code", "verdict", "reproduced", "reasons", "exit", "metrics", "metrics_apart",
                         "outputs", "environment", "platform_reasons", "caveats", "problems", "timings"]
    assert out["code"]["same"] and out["environment"] == {"original": SHA, "captured": False, "same": None,
                                                          "error": "no manifest"}
    assert list(out["image"]) == ["reference", "how", "status", "digest", "differences"]
    json.dumps(out)  # plain JSON all the way down


def test_an_image_to_be_built_says_its_base_and_no_digest() -> None:
    image = ImageChoice(reference=None, how="would be built and pushed to r", base=None)
    assert image.to_dict() == {"reference": None, "how": "would be built and pushed to r", "status": None,
                               "base": None}
    found = ImageChoice(reference=f"r@{SHA}", how="in the registry", status="unchecked", digest=SHA)
    assert list(found.to_dict()) == ["reference", "how", "status", "digest"]


def test_the_report_is_frozen() -> None:
    report = planned("dry-run")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.action = "run"  # type: ignore[misc]
