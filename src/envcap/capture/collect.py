"""Run the probes and assemble a manifest.

Probes run concurrently, each in a daemon thread with a time budget: most of their time
is spent waiting on files and child processes, and one probe that hangs must neither
hold up the others nor keep the process alive. A probe that fails or runs out of time
becomes an entry in ``unknowns``; the snapshot always completes.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

from ..core import config as config_mod
from ..core.errors import NotApplicable, UsageError
from ..core.manifest import Manifest, Unknown
from ..probes import Finding, Probe
from .registry import all_probes, choose
from ..probes.context import Context
from ..core.canonical import canonical_bytes
from ..core.redact import Redactor, default_redactor

_LABEL_KEY = re.compile(f"^{config_mod.LABEL_KEY}$")


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``k=v`` strings to a dict, refusing malformed keys."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key):
            raise UsageError(f"label {item!r} must look like key=value (key: letters, digits, . _ - /)")
        labels[key] = value
    return labels


def node_labels(cfg: config_mod.Config, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels a snapshot carries: the node's own (``[node.labels]`` in the
    configuration), under those given for this snapshot (``--label``), which win."""
    return {**dict(cfg.labels), **(given or {})}


def snapshot(
    *,
    root: str | os.PathLike[str] = "/",
    python: str | None = None,
    conda_prefix: str | None = None,
    select: Sequence[str] = (),
    skip: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    probes: Sequence[Probe] | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    files_only: bool = False,
    native: bool = False,
) -> Manifest:
    """Fingerprint a machine (or a file tree with ``root``) and return its manifest.

    ``files_only`` captures the machine as ``root`` would a tree: file-reading probes
    only, no programs, no environment (to compare an image with a --root capture).
    """
    started = time.monotonic()
    cfg = config_mod.load()
    if not os.path.isdir(root):
        raise UsageError(f"--root {root}: no such directory")
    if python is not None and str(root) == "/" and not os.path.exists(python):
        raise UsageError(f"--python {python}: no such file")
    redactor = default_redactor(cfg)
    ctx = Context(
        root,
        env=env,
        python=python,
        conda_prefix=conda_prefix,
        redactor=redactor,
        env_allow=cfg.env_allow,
        files_only=files_only,
    )
    chosen = choose(all_probes() if probes is None else probes, select, skip)
    budget = cfg.probe_timeout if timeout is None else timeout
    results = _run_all(ctx, chosen, budget)

    sections: dict[str, Any] = {}
    canonical: dict[str, bytes] = {}
    layers: dict[str, list[str]] = {"software": [], "platform": []}
    observed: dict[str, Any] = {}
    unknowns: list[Unknown] = []
    statuses: dict[str, dict[str, Any]] = {}
    for probe in chosen:
        status, value, elapsed = results[probe.name]
        statuses[probe.name] = {"status": status, "ms": elapsed}
        if status in ("failed", "timeout"):
            unknowns.append(Unknown(probe.name, str(value)))
        elif status == "ok" and isinstance(value, Finding):
            if value.section is not None:
                section, canonical[probe.section] = _redacted(redactor, value.section)
                sections[probe.section] = section
                layers[probe.layer].append(probe.section)
            if value.observed:
                observed[probe.section] = redactor.deep(value.observed)

    if native and ctx.live and not files_only and isinstance(sections.get("python"), dict):
        from .native import native_libs

        system = sections.get("system") or {}
        found = native_libs(sections["python"], dpkg=system.get("manager") == "dpkg")
        if found is not None:
            observed["native_libs"] = found

    from ..core.version import __version__

    observed.update(
        {
            "hostname": os.uname().nodename if ctx.live else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "root": str(ctx.root),
            "envcap_version": __version__,
            "probes": statuses,
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
    )
    return Manifest.create(
        sections,
        layers,
        observed=observed,
        unknowns=unknowns,
        labels={redactor.text(k): redactor.value(k, v) for k, v in node_labels(cfg, labels).items()},
        canonical=canonical,
    )


def _redacted(redactor: Redactor, section: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A section with secrets scrubbed (a safety net behind the probes' own redaction),
    and its canonical bytes, serialized once when nothing needed scrubbing."""
    data = canonical_bytes(section)
    if not redactor.may_contain_secret(data.decode("utf-8")):
        return section, data
    clean = redactor.deep(section)
    return clean, canonical_bytes(clean)


# Probes run on a few worker threads rather than one thread each: starting a thread
# costs about a millisecond on a small VM, more than most probes take. Probes that wait
# on programs or drivers are listed first in the registry, so they start at once.
WORKERS = 4


def _run_all(ctx: Context, probes: list[Probe], budget: float) -> dict[str, tuple[str, Any, int]]:
    results: dict[str, tuple[str, Any, int]] = {}
    queue: list[Probe] = []
    for probe in probes:
        if not ctx.live and not probe.reads_files:
            results[probe.name] = ("not-applicable", None, 0)
        else:
            queue.append(probe)
    started: set[str] = set()
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                probe = queue.pop(0)
                started.add(probe.name)
            _run_one(probe, ctx, results)

    threads = [
        threading.Thread(target=worker, name=f"envcap-probes-{i}", daemon=True)
        for i in range(min(WORKERS, len(queue)))
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        queue.clear()  # Whatever has not started by now never will.
        for probe in probes:
            if probe.name not in results:
                # A worker that is still busy is abandoned (it is a daemon); what it may
                # write into ``results`` later is never read.
                why = "timed out" if probe.name in started else "not started: other probes used up the time"
                results[probe.name] = ("timeout", f"{why} after {budget:g} s", int(budget * 1000))
        return dict(results)


def _run_one(probe: Probe, ctx: Context, results: dict[str, tuple[str, Any, int]]) -> None:
    start = time.monotonic()
    try:
        finding = probe.collect(ctx)
        outcome: tuple[str, Any] = ("ok", finding)
    except NotApplicable:
        outcome = ("not-applicable", None)
    except Exception as exc:  # noqa: BLE001 - any probe failure is an unknown, never fatal
        outcome = ("failed", f"{type(exc).__name__}: {exc}")
    elapsed = int((time.monotonic() - start) * 1000)
    results.setdefault(probe.name, (outcome[0], outcome[1], elapsed))
