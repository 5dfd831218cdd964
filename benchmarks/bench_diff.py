"""Diff speed: two real manifests with 1,000 Python packages each.

A is this machine's live snapshot (or --base FILE) with its Python package list made up to
exactly 1,000 entries (the real ones, then synthetic ones); B is A with planted changes:
20 upgrades, 5 packages added, 5 removed, 2 origin changes, an environment variable and a
compiler flag. Both are written as files, as ``envcap snapshot -o`` writes them.

Prints the medians of: the diff alone; loading both files (full validation) and diffing,
which is what ``envcap diff A B`` does; rendering; and the whole ``envcap diff`` process
(interpreter start-up included), by CPU time beside the same command through click,
``envcap --help`` and a bare interpreter (target: at most 100 ms).

    python benchmarks/bench_diff.py [--base FILE] [--rounds 30]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

PACKAGES = 1000
TARGET_MS = 50.0
# Runs the real CLI, as the console script does.
BOOT = "from envcap.cli import main; main(prog_name='envcap')"
# The click group itself, which every command line but a two-file diff goes through.
CLICK = "from envcap.cli.main import main; main(prog_name='envcap')"
PROCESS_TARGET_MS = 100.0


def pair(base: Any) -> tuple[Any, Any]:
    from envcap.core.manifest import Manifest

    sections = copy.deepcopy(dict(base.sections))
    layers = {k: list(v) for k, v in base.layers.items()}
    py = sections.setdefault("python", {"version": "3", "packages": []})
    if "python" not in layers["software"]:
        layers["software"].append("python")
    real = py["packages"][:PACKAGES]
    synthetic = [{"name": f"synthetic-pkg-{i:04d}", "version": f"1.{i}.0", "installer": "pip", "requested": False,
                  "origin": {"kind": "index"}} for i in range(PACKAGES - len(real))]
    py["packages"] = sorted(real + synthetic, key=lambda p: p["name"])
    a = Manifest.create(sections, layers, observed={"hostname": "a"})

    sections, layers = copy.deepcopy(sections), copy.deepcopy(layers)  # A keeps its own
    packages = sections["python"]["packages"]
    for i in range(0, 20 * 37, 37):
        packages[i] = dict(packages[i], version=packages[i]["version"] + ".post1")
    for i in (3, 300):
        packages[i] = dict(packages[i], origin={"kind": "vcs", "vcs": "git", "url": "https://example.invalid/x.git",
                                               "commit": "0" * 40, "requested_revision": None})
    del packages[500:505]
    packages += [{"name": f"added-{i}", "version": "0.1", "installer": "pip", "requested": True,
                  "origin": {"kind": "index"}} for i in range(5)]
    packages.sort(key=lambda p: p["name"])
    env = sections.setdefault("environment", {"variables": {}})
    env.setdefault("variables", {})["OMP_NUM_THREADS"] = "4"
    if "environment" not in layers["software"]:
        layers["software"].append("environment")
    sections.setdefault("compilers", {"tools": {}, "flags": {}}).setdefault("flags", {})["CFLAGS"] = "-O3 -ffast-math"
    if "compilers" not in layers["software"]:
        layers["software"].append("compilers")
    b = Manifest.create(sections, layers, observed={"hostname": "b"})
    return a, b


def median_ms(fn: Callable[[], Any], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", metavar="FILE", help="a manifest file to build from (default: a live snapshot)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    from envcap.capture.collect import snapshot
    from envcap.compare.diff import diff_manifests, render_text
    from envcap.store.embedded import load_manifest

    base = load_manifest(args.base) if args.base else snapshot()
    a, b = pair(base)
    with tempfile.TemporaryDirectory() as tmp:
        fa, fb = Path(tmp) / "a.json", Path(tmp) / "b.json"
        fa.write_text(a.to_json())
        fb.write_text(b.to_json())
        d = diff_manifests(a, b)
        counts = {s: len((a.sections.get(s) or {}).get("packages") or []) for s in ("python", "system", "conda")}
        print(f"A: {counts} packages, {fa.stat().st_size / 1024:.0f} KiB; B: {len(d.changes)} differences "
              f"({len(d.sensitive)} sensitive); {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        only = median_ms(lambda: diff_manifests(a, b), args.rounds)
        loaded = median_ms(lambda: diff_manifests(load_manifest(fa), load_manifest(fb)), args.rounds)
        text = median_ms(lambda: render_text(d), args.rounds)
        as_json = median_ms(lambda: json.dumps(d.to_dict(), indent=2, sort_keys=True), args.rounds)
        argv = [sys.executable, "-c", BOOT, "diff", "--json", str(fa), str(fb)]
        process = median_ms(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=False), max(5, args.rounds // 6))
        # The whole process beside the same command through click (what every other
        # command line takes), `envcap --help` and a bare interpreter: CPU time of each
        # child by wait4, interleaved so that all see the same load.
        peers = {
            "envcap diff --json A B": argv,
            "the same through click": [sys.executable, "-c", CLICK, "diff", "--json", str(fa), str(fb)],
            "envcap --help": [sys.executable, "-c", BOOT, "--help"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        cpu: dict[str, list[float]] = {k: [] for k in peers}
        wall: dict[str, list[float]] = {k: [] for k in peers}
        for _ in range(max(9, args.rounds // 2)):
            for name, command in peers.items():
                w, c = child_times(command)
                wall[name].append(w)
                cpu[name].append(c)
    print(f"  diff alone                          {only:7.2f} ms")
    print(f"  load + validate both files + diff   {loaded:7.2f} ms   (target <= {TARGET_MS:g} ms)")
    print(f"  render text / JSON                  {text:7.2f} / {as_json:.2f} ms")
    print(f"  whole `envcap diff --json` process  {process:7.2f} ms   (interpreter start-up and imports included)")
    print(f"  whole processes, interleaved (median CPU / wall; load average {os.getloadavg()[0]:.1f}):")
    for name in peers:
        print(f"    {name:<26} {statistics.median(cpu[name]) * 1000:6.1f} ms CPU  "
              f"{statistics.median(wall[name]) * 1000:6.1f} ms wall")
    whole = statistics.median(cpu["envcap diff --json A B"]) * 1000
    print(f"  envcap diff, whole process: {whole:.1f} ms CPU (target <= {PROCESS_TARGET_MS:g} ms)")
    return 0 if loaded <= TARGET_MS and whole <= PROCESS_TARGET_MS else 1


def child_times(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
