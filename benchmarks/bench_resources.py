"""What sampling a run's resource usage costs: `envcap run` with sampling on and off.

A CPU-bound command (pure-Python arithmetic until it has used --seconds of CPU) is run,
interleaved for --rounds rounds, three ways: bare, under `envcap run` with sampling at
the default interval, and under `envcap run` with sampling off
(``ENVCAP_RESOURCE_INTERVAL=0``, which still records the kernel's totals). For each,
the wall time, and from ``wait4`` the CPU time and peak resident memory of the whole
invocation (envcap's process and the command's). Then:

- sampling's wall-time overhead: median(on) - median(off), as a share of the bare
  command's median (the issue's goal: at most 1% of a 30 s CPU-bound job);
- sampling's CPU cost: median CPU(on) - median CPU(off);
- sampling's memory: median peak RSS(on) - median peak RSS(off) of the envcap process
  (the goal: at most 20 MiB). ``wait4`` reports the largest process of the invocation,
  which is envcap's here (the command holds about 10 MiB).

    python benchmarks/bench_resources.py [--python PY] [--rounds 3] [--seconds 5]
    python benchmarks/bench_resources.py --seconds 30       # the issue's 30 s job

The default job is 5 s, to keep the run short; the overhead of sampling is a fixed cost
per sample, so its share is the same for a longer job at the same interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

_ENTRY = "from envcap.cli import main\nmain(prog_name='envcap')\n"
BURN = """\
import sys, time
end = float(sys.argv[1])
while time.process_time() < end:
    sum(range(20000))
"""


def measure(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one invocation, from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="an interpreter with envcap installed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds the command burns")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        with open(os.path.join(scratch, "burn.py"), "w") as fh:
            fh.write(BURN)
        base = {**os.environ, "ENVCAP_HOME": os.path.join(scratch, "store")}
        base.pop("ENVCAP_RUN_DIR", None)
        base.pop("ENVCAP_RESOURCE_INTERVAL", None)
        job = [args.python, "burn.py", str(args.seconds)]
        envcap = [args.python, "-c", _ENTRY, "run", "--"]
        cases = {
            "bare": (job, base),
            "envcap run, sampling": ([*envcap, *job], base),
            "envcap run, no sampling": ([*envcap, *job], {**base, "ENVCAP_RESOURCE_INTERVAL": "0"}),
        }
        measure([args.python, "-c", _ENTRY, "run", "--", args.python, "burn.py", "0"], base, scratch)  # warm up
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, (argv, env) in cases.items():
                results[name].append(measure(argv, env, scratch))
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in results.items()}
    print(f"interpreter: {args.python}; a {args.seconds:g} s CPU-bound job, {args.rounds} rounds, medians:")
    print(f"  {'':<26}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}")
    for name, (wall, cpu, rss) in med.items():
        print(f"  {name:<26}{wall:9.3f}{cpu:9.3f}{rss:10.1f}")
    on, off, bare = med["envcap run, sampling"], med["envcap run, no sampling"], med["bare"]
    wall_over = on[0] - off[0]
    print(f"  sampling, wall time: {wall_over * 1000:+.0f} ms = {wall_over / bare[0]:+.2%} of the bare job "
          "(goal <= 1%)")
    print(f"  sampling, CPU time:  {(on[1] - off[1]) * 1000:+.0f} ms = {(on[1] - off[1]) / bare[1]:+.2%}")
    print(f"  sampling, memory:    {on[2] - off[2]:+.1f} MiB (goal <= 20 MiB)")
    print(f"  envcap run (sampling) - bare, wall: {(on[0] - bare[0]) * 1000:+.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
