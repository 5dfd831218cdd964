"""The verdict: exact by default, tolerant when asked, every difference named."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from envcap.reproduce.report import EnvComparison, ExitComparison, RebuildReport, Verdict
from envcap.reproduce.verdict import (
    NOT_REPRODUCED,
    REPRODUCED,
    compare_histories,
    compare_metrics,
    compare_outputs,
    compare_values,
    decide,
    render,
)


def test_exact_means_bit_for_bit() -> None:
    assert compare_values(0.1 + 0.2, 0.1 + 0.2).how == "identical"
    assert not compare_values(0.1 + 0.2, 0.3).match
    assert compare_values(3, 3.0).match  # one number, however JSON wrote it
    assert compare_values("NaN", "NaN").match and not compare_values("NaN", 1.0).match
    assert not compare_values(True, 1).match


def test_tolerances_are_numpy_isclose() -> None:
    r = compare_values(1.0, 1.0 + 1e-9, rtol=1e-6)
    assert r.match and r.how == "within tolerance" and r.abs_diff == pytest.approx(1e-9)
    assert not compare_values(1.0, 1.1, rtol=1e-6).match
    assert compare_values(0.0, 1e-12, atol=1e-9).match
    assert not compare_values("Infinity", 1e308, rtol=1.0).match


def test_metrics_on_one_side_only_differ() -> None:
    rows = {r.name: r for r in compare_metrics({"loss": 0.5, "acc": 0.9}, {"loss": 0.5, "f1": 0.1})}
    assert rows["loss"].match and not rows["acc"].match and not rows["f1"].match
    assert rows["acc"].result.how == "missing in the rebuild" and rows["f1"].result.how == "only in the rebuild"


def test_a_history_that_differs_is_found_even_when_the_last_value_agrees() -> None:
    a = [{"name": "loss", "step": 0, "value": 1.0, "time": 1}, {"name": "loss", "step": 1, "value": 0.5, "time": 2}]
    b = [{"name": "loss", "step": 0, "value": 1.5, "time": 9}, {"name": "loss", "step": 1, "value": 0.5, "time": 9}]
    assert compare_histories(a, a[:]) == {}
    assert compare_histories(a, b) == {"loss": "first differs at step 0: 1.0 → 1.5"}
    [row] = compare_metrics({"loss": 0.5}, {"loss": 0.5}, original_log=a, rebuilt_log=b)
    assert not row.match and row.to_dict()["how"] == "history differs"


def test_the_verdict_names_what_differs() -> None:
    metrics = compare_metrics({"loss": 0.25, "acc": 0.5}, {"loss": 0.26, "acc": 0.5})
    outputs = compare_outputs([{"path": "model.bin", "fingerprint": "sha256:" + "a" * 64}],
                              [{"path": "/ws/model.bin", "fingerprint": "sha256:" + "b" * 64}], [None])
    ok, reasons = decide(True, "", metrics, outputs)
    assert not ok
    assert reasons[0] == "metric loss differs: 0.25 → 0.26"
    assert reasons[1].startswith("output model.bin differs: sha256:aaaa")
    ok, reasons = decide(False, "exit status 1, not 0", compare_metrics({}, {}), [])
    assert not ok and reasons == ["exit status 1, not 0"]
    assert decide(True, "", compare_metrics({"x": 1}, {"x": 1}), []) == (True, [])


def test_table_and_json_say_the_same() -> None:
    verdict = Verdict(
        reproduced=False, reasons=("metric loss differs: 0.25 → 0.26",),
        exit=ExitComparison(original_code=0, original_signal=None, reproduced_code=0, reproduced_signal=None,
                            match=True),
        metrics=tuple(compare_metrics({"loss": 0.25}, {"loss": 0.26})),
        outputs=(), environment=EnvComparison(original="sha256:" + "1" * 64, captured=True, same=False,
                                              rebuild="sha256:" + "2" * 64, software=("python numpy 2.2.6 → 2.3.0",),
                                              platform=("gpu.devices[0].name: NVIDIA H200 → NVIDIA H100 80GB HBM3",),
                                              platform_same=False),
    )
    report = RebuildReport(action="run", original="01AAAAAAAAAAAAAAAAAAAAAAAA", env_id="sha256:" + "1" * 64,
                           rebuild="01BBBBBBBBBBBBBBBBBBBBBBBB", verdict=verdict, caveats=())
    assert report.to_dict()["verdict"] == NOT_REPRODUCED
    out = io.StringIO()
    render(report, out)
    text = out.getvalue()
    json.dumps(report.to_dict())
    assert "NOT REPRODUCED" in text and "metric loss differs: 0.25 → 0.26" in text
    assert "software differences" in text and "python numpy 2.2.6 → 2.3.0" in text
    assert "platform differences" in text and "NVIDIA H100 80GB HBM3" in text
    report = replace(report, verdict=replace(verdict, reproduced=True, reasons=()))
    assert report.to_dict()["verdict"] == REPRODUCED
    out = io.StringIO()
    render(report, out)
    assert "REPRODUCED" in out.getvalue() and "NOT REPRODUCED" not in out.getvalue()


# -- platform reasons: what can change bits, and the setting that would match ----------------

def _numerics(arch: str, threads: int, version: str = "0.3.29", **settings: str) -> dict:
    return {"libraries": [{"user_api": "blas", "internal_api": "openblas", "prefix": "libscipy_openblas",
                           "version": version, "architecture": arch, "threading_layer": "pthreads",
                           "num_threads": threads}],
            "settings": settings}


def _machine(flags: list[str], gpu: str | None = None, driver: str | None = None, cuda: str | None = None,
             cudnn: str | None = None) -> object:
    from envcap.core.manifest import Manifest

    sections: dict = {"cpu": {"model": "Xeon", "flags": flags}}
    layers: dict = {"software": [], "platform": ["cpu"]}
    if gpu:
        sections["gpu"] = {"vendor": "nvidia", "driver_version": driver, "devices": [{"name": gpu}], "count": 1}
        layers["platform"].append("gpu")
    if cuda:
        sections["cuda"] = {"version": cuda, "cudnn_version": cudnn}
        layers["software"].append("cuda")
    return Manifest.create(sections, layers)


def test_platform_reasons_name_the_kernel_threads_and_settings_with_what_would_match() -> None:
    from envcap.reproduce.verdict import platform_reasons

    same = _machine(["avx", "avx2", "fma", "sse2"])
    reasons = platform_reasons(same, same, _numerics("Sandybridge", 2, OPENBLAS_CORETYPE="Sandybridge"),
                               _numerics("Haswell", 8))
    assert reasons == [
        "BLAS kernel: openblas (libscipy_openblas) ran its Sandybridge kernel in the run, Haswell in the rebuild: "
        "OPENBLAS_CORETYPE=Sandybridge would match",
        "threads: openblas (libscipy_openblas) used 2 in the run, 8 in the rebuild: OPENBLAS_NUM_THREADS=2 would match",
        "setting OPENBLAS_CORETYPE: Sandybridge in the run, not set in the rebuild: "
        "OPENBLAS_CORETYPE=Sandybridge would match",
    ]
    # Without a setting of the run's own, the kernel's name is the setting.
    assert platform_reasons(same, same, _numerics("SkylakeX", 2), _numerics("Haswell", 2)) == [
        "BLAS kernel: openblas (libscipy_openblas) ran its SkylakeX kernel in the run, Haswell in the rebuild: "
        "OPENBLAS_CORETYPE=SkylakeX would match"]
    # The same machine and runtime: nothing to say. Unknown facts: nothing is made up.
    assert platform_reasons(same, same, _numerics("Haswell", 2), _numerics("Haswell", 2)) == []
    assert platform_reasons(same, None, None, _numerics("Haswell", 2)) == []


def test_platform_reasons_name_cpu_instruction_sets_gpu_driver_and_cuda() -> None:
    from envcap.reproduce.verdict import platform_reasons

    run = _machine(["avx", "avx2", "avx512f", "fma", "ht"], gpu="NVIDIA H200", driver="580.1", cuda="13.0",
                   cudnn="9.19.0")
    rebuild = _machine(["avx", "avx2", "fma", "sse4_2"], gpu="NVIDIA A100-SXM4-80GB", driver="570.2", cuda="13.0",
                       cudnn="9.10.0")
    assert platform_reasons(run, rebuild, None, None) == [
        "CPU instruction sets (libraries choose kernels by them): avx512f in the run only; sse4_2 in the rebuild only",
        "GPU: NVIDIA H200 in the run, NVIDIA A100-SXM4-80GB in the rebuild",
        "GPU driver: 580.1 in the run, 570.2 in the rebuild",
        "cuDNN: 9.19.0 in the run, 9.10.0 in the rebuild",
    ]
    mkl = {"libraries": [{"user_api": "blas", "internal_api": "mkl", "prefix": "libmkl_rt", "version": "2024.2",
                          "num_threads": 4}], "settings": {}}
    assert platform_reasons(run, run, mkl, mkl) == [
        "MKL picks its code path by CPU: MKL_CBWR=COMPATIBLE on both machines gives the same results across CPUs "
        "(slower)"]


def test_the_report_carries_the_platform_reasons_and_the_table_shows_them() -> None:
    verdict = Verdict(reproduced=True, reasons=(), platform=("GPU driver: 1 in the run, 2 in the rebuild",),
                      environment=EnvComparison(original="sha256:" + "0" * 64, captured=False, error="not asked"))
    report = RebuildReport(action="run", original="01J0000000000000000000000A", env_id="sha256:" + "0" * 64,
                           verdict=verdict)
    assert report.to_dict()["platform_reasons"] == ["GPU driver: 1 in the run, 2 in the rebuild"]
    out = io.StringIO()
    render(report, file=out)
    assert "REPRODUCED" in out.getvalue() and "though the platform differs: GPU driver: 1" in out.getvalue()


# -- a metric's own rule: declared at log time, or given to the rebuild ------------------------


def test_a_metric_declared_not_to_reproduce_is_listed_apart_and_the_verdict_stands_on_the_rest() -> None:
    from envcap.reproduce.verdict import metric_rules
    from envcap.runs import rundir

    log = [rundir.metric_line("loss", 0.25, 0), rundir.metric_line("train_time_s", 3.2, reproducible=False),
           rundir.metric_line("acc", 0.5, rtol=1e-3)]
    rules = metric_rules(log)
    assert not rules["train_time_s"].expected and rules["train_time_s"].by == "declared at log time"
    assert rules["acc"].rtol == 1e-3 and "loss" not in rules
    original = {"loss": 0.25, "train_time_s": 3.2, "acc": 0.5}
    rebuilt = {"loss": 0.25, "train_time_s": 2.9, "acc": 0.5004}
    metrics = compare_metrics(original, rebuilt, rules=rules)
    ok, reasons = decide(True, "", metrics, [])
    assert ok and reasons == []
    # Without the declarations, the same numbers do not reproduce (as on today's main).
    ok, reasons = decide(True, "", compare_metrics(original, rebuilt), [])
    assert not ok and {r.split(" differs")[0] for r in reasons} == {"metric acc", "metric train_time_s"}
    # A declared metric still counts when it differs beyond its own tolerance.
    ok, reasons = decide(True, "", compare_metrics(original, {**rebuilt, "acc": 0.6}, rules=rules), [])
    assert reasons == ["metric acc differs: 0.5 → 0.6"]
    # The report lists it apart, in JSON and in the table.
    verdict = Verdict(reproduced=True, reasons=(), metrics=tuple(metrics), outputs=())
    report = RebuildReport(action="run", original="01AAAAAAAAAAAAAAAAAAAAAAAA", env_id="sha256:" + "1" * 64,
                           verdict=verdict)
    data = report.to_dict()
    assert [m["name"] for m in data["metrics"]] == ["acc", "loss"]
    assert [m["name"] for m in data["metrics_apart"]] == ["train_time_s"]
    assert data["metrics_apart"][0]["how"] == "differs" and data["metrics_apart"][0]["rule"]["expected"] is False
    out = io.StringIO()
    render(report, out)
    text = out.getvalue()
    assert "not expected to reproduce" in text and "metric train_time_s: 3.2 → 2.9" in text
    assert "within tolerance (rtol 0.001, declared at log time)" in text


def test_the_command_line_rules_win_over_the_declared_ones() -> None:
    from envcap.reproduce.verdict import metric_rules
    from envcap.runs import rundir

    log = [rundir.metric_line("loss", 0.25, 0), rundir.metric_line("train_time_s", 3.2, reproducible=False)]
    rules = metric_rules(log, ignore=["loss"], tol={"train_time_s": 0.5})
    assert rules["loss"].by == "--ignore" and not rules["loss"].expected
    assert rules["train_time_s"].rtol == 0.5 and rules["train_time_s"].expected
    metrics = compare_metrics({"loss": 0.25, "train_time_s": 3.2}, {"loss": 0.3, "train_time_s": 2.9}, rules=rules)
    assert decide(True, "", metrics, []) == (True, [])
    # Histories compare with the metric's own tolerance too.
    a = [{"name": "t", "step": 0, "value": 1.0}, {"name": "t", "step": 1, "value": 2.0}]
    b = [{"name": "t", "step": 0, "value": 1.1}, {"name": "t", "step": 1, "value": 2.0}]
    assert "t" in compare_histories(a, b)
    assert compare_histories(a, b, rtols={"t": 0.2}) == {}


def test_declarations_are_checked_where_they_are_made() -> None:
    from envcap.runs import rundir

    with pytest.raises(TypeError, match="takes no tolerance"):
        rundir.metric_line("t", 1.0, reproducible=False, rtol=0.1)
    with pytest.raises(TypeError, match="rtol must be"):
        rundir.metric_line("t", 1.0, rtol=-1)
    with pytest.raises(TypeError, match="reproducible must be"):
        rundir.expectation("no")
