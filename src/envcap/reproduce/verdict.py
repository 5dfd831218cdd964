"""Did it reproduce? Exit status, metrics, metric histories and output files compared.

A rebuild reproduces its run when the command exits the same way, every metric has the
same final value and the same history (step by step), and every output file hashes the
same. Metrics compare exactly by default: the same JSON number, bit for bit for floats.
With ``--rtol``/``--atol`` two finite numbers match when ``|a - b| <= atol + rtol * |a|``
(``a`` the original's), as ``numpy.isclose`` has it. A metric on one side only is a
difference.

A metric can have a rule of its own (:class:`MetricRule`): declared when it was logged
(``log_metric(..., reproducible=False)`` or ``rtol=REL``, kept in ``metrics.jsonl``), or
given to the rebuild (``--ignore NAME``, ``--tol NAME=REL``, which win). A metric not
expected to reproduce is compared and listed apart; the verdict stands on the rest.

The environment captured in the container is compared with the run's too, and listed
(software, then platform), but it does not decide the verdict: a run can reproduce in
an environment that differs, and that is worth knowing as well.

The report is one typed record (:mod:`.report`); its JSON and the terminal table are both
drawn from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..store.base import StoreBackend
    from .report import RebuildReport

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"


@dataclass(frozen=True, slots=True)
class Compared:
    match: bool
    how: str  # "identical", "within tolerance", "differs", "missing in the rebuild", "only in the rebuild"
    abs_diff: float | None = None
    rel_diff: float | None = None


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare_values(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0) -> Compared:
    """The original's value ``a`` against the rebuild's ``b``."""
    if _number(a) and _number(b):
        diff = abs(float(a) - float(b)) if math.isfinite(a) and math.isfinite(b) else None
        rel = diff / abs(float(a)) if diff is not None and a != 0 else None
        if a == b:  # 3 and 3.0 are one number; JSON need not keep them apart
            return Compared(True, "identical", 0.0, 0.0)
        if diff is not None and (rtol or atol) and diff <= atol + rtol * abs(float(a)):
            return Compared(True, "within tolerance", diff, rel)
        return Compared(False, "differs", diff, rel)
    if a == b and type(a) is type(b):
        return Compared(True, "identical")
    return Compared(False, "differs")


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How one metric is compared, when not as every other: ``expected`` False lists it
    apart (not expected to reproduce); ``rtol`` is its own relative tolerance."""

    expected: bool = True
    rtol: float | None = None
    by: str = "declared at log time"  # or "--ignore", "--tol"

    def to_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "rtol": self.rtol, "by": self.by}


def metric_rules(original_log: Sequence[Mapping[str, Any]] | None, *, ignore: Iterable[str] = (),
                 tol: Mapping[str, float] | None = None) -> dict[str, MetricRule]:
    """Each metric's rule: what the run declared when it logged it (its last point that
    declares one), with ``--ignore`` and ``--tol`` laid over it."""
    rules: dict[str, MetricRule] = {}
    for point in original_log or ():
        name = point.get("name")
        if not isinstance(name, str):
            continue
        if point.get("reproducible") is False:
            rules[name] = MetricRule(expected=False)
        elif _number(point.get("rtol")) and math.isfinite(point["rtol"]) and point["rtol"] >= 0:
            rules[name] = MetricRule(rtol=float(point["rtol"]))
    for name, rel in (tol or {}).items():
        rules[name] = MetricRule(rtol=rel, by="--tol")
    for name in ignore:
        rules[name] = MetricRule(expected=False, by="--ignore")
    return rules


@dataclass(frozen=True, slots=True)
class MetricRow:
    name: str
    original: Any
    reproduced: Any
    result: Compared
    history: str | None = None  # where the metric's history first differs, if it does
    rule: MetricRule | None = None  # its own rule, when it has one

    @property
    def match(self) -> bool:
        return self.result.match and self.history is None

    @property
    def expected(self) -> bool:
        """Whether the verdict stands on this metric (it is not listed apart)."""
        return self.rule is None or self.rule.expected

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "original": self.original, "reproduced": self.reproduced, "match": self.match,
                "how": "history differs" if self.result.match and self.history else self.result.how,
                "abs_diff": self.result.abs_diff, "rel_diff": self.result.rel_diff, "history": self.history,
                "rule": None if self.rule is None else self.rule.to_dict()}


_MISSING = object()


def compare_metrics(original: Mapping[str, Any], rebuilt: Mapping[str, Any], *, rtol: float = 0.0,
                    atol: float = 0.0, original_log: Sequence[Mapping[str, Any]] | None = None,
                    rebuilt_log: Sequence[Mapping[str, Any]] | None = None,
                    rules: Mapping[str, MetricRule] | None = None) -> list[MetricRow]:
    rules = rules or {}
    rtols = {name: r.rtol for name, r in rules.items() if r.rtol is not None}
    rows = []
    histories = compare_histories(original_log, rebuilt_log, rtol=rtol, atol=atol, rtols=rtols) \
        if original_log is not None and rebuilt_log is not None else {}
    for name in sorted(set(original) | set(rebuilt)):
        a, b = original.get(name, _MISSING), rebuilt.get(name, _MISSING)
        rule = rules.get(name)
        if b is _MISSING:
            rows.append(MetricRow(name, a, None, Compared(False, "missing in the rebuild"), rule=rule))
        elif a is _MISSING:
            rows.append(MetricRow(name, None, b, Compared(False, "only in the rebuild"), rule=rule))
        else:
            rows.append(MetricRow(name, a, b, compare_values(a, b, rtol=rtols.get(name, rtol), atol=atol),
                                  histories.get(name), rule))
    return rows


def compare_histories(original: Sequence[Mapping[str, Any]], rebuilt: Sequence[Mapping[str, Any]], *,
                      rtol: float = 0.0, atol: float = 0.0, rtols: Mapping[str, float] | None = None,
                      ) -> dict[str, str]:
    """Per metric, where its logged points first differ (the times they were logged do not count)."""
    def series(points: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[Any, Any]]]:
        out: dict[str, list[tuple[Any, Any]]] = {}
        for p in points:
            out.setdefault(str(p.get("name")), []).append((p.get("step"), p.get("value")))
        return out

    a, b = series(original), series(rebuilt)
    found: dict[str, str] = {}
    for name in sorted(set(a) & set(b)):
        for i, (pa, pb) in enumerate(zip(a[name], b[name])):
            own = (rtols or {}).get(name, rtol)
            if pa[0] != pb[0] or not compare_values(pa[1], pb[1], rtol=own, atol=atol).match:
                where = f"step {pa[0]}" if pa[0] is not None else f"point {i + 1}"
                found[name] = f"first differs at {where}: {_text(pa[1])} → {_text(pb[1])}"
                break
        else:
            if len(a[name]) != len(b[name]):
                found[name] = f"{len(a[name])} point(s) logged, {len(b[name])} in the rebuild"
    return found


def read_log(store: StoreBackend, metrics_log: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """A run's stored metric points (None when it kept none)."""
    if not metrics_log or not metrics_log.get("object"):
        return None
    data = store.get_object(metrics_log["object"])
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class OutputRow:
    path: str
    original: str | None
    reproduced: str | None
    note: str | None = None

    @property
    def match(self) -> bool:
        return self.original is not None and self.original == self.reproduced

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "original": self.original, "reproduced": self.reproduced, "match": self.match,
                "note": self.note}


def compare_outputs(recorded: Sequence[Mapping[str, Any]], rebuilt: Sequence[Mapping[str, Any] | None],
                    notes: Sequence[str | None]) -> list[OutputRow]:
    """Outputs in the run's order; ``rebuilt[i]`` is the rebuild's entry for the run's ``recorded[i]``."""
    rows = []
    for entry, new, note in zip(recorded, rebuilt, notes):
        before = None if entry.get("missing") else entry.get("fingerprint")
        after = None if new is None or new.get("missing") else new.get("fingerprint")
        if note is None and after is None:
            note = "not written by the rebuild"
        elif note is None and before is None:
            note = "the run did not write it"
        rows.append(OutputRow(str(entry.get("path")), before, after, note))
    return rows


def decide(exit_same: bool, exit_text: str, metrics: Sequence[MetricRow], outputs: Sequence[OutputRow],
           refused: str | None = None) -> tuple[bool, list[str]]:
    """The verdict and, when it is not reproduced, every reason, most telling first."""
    if refused:
        return False, [refused]
    reasons = []
    if not exit_same:
        reasons.append(exit_text)
    for m in metrics:
        if not m.expected:
            continue  # listed apart: not expected to reproduce
        if not m.result.match:
            if m.result.how == "differs":
                reasons.append(f"metric {m.name} differs: {_text(m.original)} → {_text(m.reproduced)}")
            else:
                reasons.append(f"metric {m.name}: {m.result.how}")
        elif m.history:
            reasons.append(f"metric {m.name}: its history {m.history}")
    for o in outputs:
        if not o.match and o.original is not None:
            reasons.append(f"output {o.path} differs: {_short(o.original)} → {_short(o.reproduced)}"
                           if o.reproduced else f"output {o.path}: {o.note}")
    return not reasons, reasons


def platform_reasons(run_manifest: Any, rebuild_manifest: Any, run_numerics: Mapping[str, Any] | None,
                     rebuild_numerics: Mapping[str, Any] | None) -> list[str]:
    """The differences between the recording's machine and the rebuild's that can change a
    result's last bits, each with the setting that would match where one exists: the BLAS
    kernel, versions and threads the runs' own processes used and the settings that chose
    them (``OPENBLAS_CORETYPE``, ``MKL_CBWR``, ``OMP_NUM_THREADS``), then CPU instruction
    sets, GPU model, driver, CUDA and cuDNN. They explain a verdict; they do not decide it.
    """
    from .platform import machine, numeric_runtime

    return numeric_runtime(run_numerics, rebuild_numerics) + machine(run_manifest, rebuild_manifest)


def _text(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return v if isinstance(v, str) else json.dumps(v)


def _short(v: Any) -> str:
    if isinstance(v, str) and v.startswith("sha256:"):
        return v[:19]
    return _text(v)


# -- the table ---------------------------------------------------------------------------------


def render(report: RebuildReport, file: TextIO | None = None) -> None:
    """The report as people read it: what ran where, a table of results, then the verdict."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False, soft_wrap=False, width=max(100, Console(file=file).width))
    original, rebuild = report.original, report.rebuild
    console.print(f"[bold]envcap rebuild[/bold] run {original}" + (f" → run {rebuild}" if rebuild else ""))
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for key, value in _facts(report):
        facts.add_row(key, value)
    console.print(facts)
    verdict = report.verdict
    if verdict and (verdict.exit or verdict.metrics or verdict.outputs):
        table = Table(header_style="bold", show_lines=False)
        for col in ("", "original", "reproduced", ""):
            table.add_column(col, overflow="fold")
        ex = verdict.exit
        if ex:
            table.add_row("exit status", _status(ex.original_code, ex.original_signal),
                          _status(ex.reproduced_code, ex.reproduced_signal), _mark(ex.match, None))
        for m in verdict.metrics or ():
            if m.expected:
                how = m.to_dict()["how"]
                if m.rule is not None and m.rule.rtol is not None and m.match:
                    how = f"{how} (rtol {m.rule.rtol:g}, {m.rule.by})"
                table.add_row(f"metric {m.name}", _cell(m.original), _cell(m.reproduced), _mark(m.match, how))
        for o in verdict.outputs or ():
            table.add_row(f"output {o.path}", _short(o.original) if o.original else "—",
                          _short(o.reproduced) if o.reproduced else "—", _mark(o.match, o.note))
        console.print(table)
    apart = [m for m in (verdict.metrics or ()) if not m.expected] if verdict else []
    if apart:
        console.print(f"[bold]not expected to reproduce[/bold] (the verdict does not stand on these), {len(apart)}:")
        for m in apart:
            assert m.rule is not None
            console.print(f"  metric {m.name}: {_cell(m.original)} → {_cell(m.reproduced)}  "
                          f"({m.to_dict()['how']}; {m.rule.by})", markup=False)
    env = verdict.environment if verdict else None
    if env is not None:
        for title, lines in (("software differences", env.software), ("platform differences", env.platform)):
            if lines:
                console.print(f"[bold]{title}[/bold] (original → rebuild), {len(lines)}:")
                for line in lines[:25]:
                    console.print(f"  {line}", markup=False)
                if len(lines) > 25:
                    console.print(f"  … and {len(lines) - 25} more (--json lists them all)")
    for caveat in report.caveats or ():
        console.print(f"note: {caveat}", markup=False)
    if verdict is not None and verdict.reproduced:
        console.print("[bold green]REPRODUCED[/bold green]")
        for line in verdict.platform:
            console.print(f"  though the platform differs: {line}", markup=False)
    else:
        console.print("[bold red]NOT REPRODUCED[/bold red]")
        for reason in verdict.reasons if verdict else ():
            console.print(f"  {reason}", markup=False)


def _facts(report: RebuildReport) -> list[tuple[str, str]]:
    from .report import CodeResult

    out = []
    image = report.image
    if image and image.reference:
        out.append(("image", f"{image.reference} ({image.how}, {image.status})"))
    code = report.code
    if isinstance(code, CodeResult) and code.workspace.commit:
        ws, commit = code.workspace, code.workspace.commit
        extra = []
        if ws.diff_applied:
            extra.append("diff applied")
        if ws.untracked:
            extra.append(f"{ws.untracked} untracked file(s)")
        out.append(("code", f"{commit[:12]}" + (f" + {', '.join(extra)}" if extra else "")
                    + (f"  in {ws.path}" if ws.path else "")))
    for d in report.data or ():
        state = "same" if not d.drifted else f"CHANGED (now {_short(d.now)})"
        out.append(("data", f"{d.name}  {_short(d.recorded)}  {state}"))
    env = report.verdict.environment if report.verdict else None
    if env is not None and env.captured:
        if env.same:
            out.append(("environment", f"same env_id {_short(env.original)}"))
        else:
            out.append(("environment", (f"env_id {_short(env.original)} → {_short(env.rebuild)}: "
                                        f"{len(env.software)} difference(s)")))
        out.append(("platform", "same" if env.platform_same else
                    f"differs: {len(env.platform)} difference(s) (this machine is not the run's)"))
    elif env is not None:
        out.append(("environment", f"not captured: {env.error}"))
    gpu = report.gpu
    if gpu and gpu.gpu_run:
        out.append(("gpu", ("GPUs given" if gpu.use_gpus else "no GPUs (--no-gpu)")
                    + (f", image CUDA {gpu.image_cuda}" if gpu.image_cuda else "")))
    timings = report.timings or {}
    if "total" in timings:
        script = timings.get("script")
        out.append(("time", f"{timings['total']:.2f} s" + (f" (the command {script:.2f} s)" if script else "")))
    return out


def _status(exit_code: int | None, signal: str | None) -> str:
    return f"killed by {signal}" if signal else str(exit_code)


def _cell(v: Any) -> str:
    return "—" if v is None else _text(v)


def _mark(ok: bool, how: str | None) -> str:
    if ok:
        return "[green]identical[/green]" if how in (None, "identical") else f"[green]{how}[/green]"
    return f"[red]{how or 'differs'}[/red]"
