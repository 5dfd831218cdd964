"""Snapshot speed and memory, side by side with `pip freeze` and a bare interpreter.

Makes a fresh venv and installs envcap into it the way a user would (`pip install .`,
which also compiles its bytecode), unless `--venv DIR` names one that has it. Then runs,
interleaved and on that venv's own python (not a shell shim): `envcap snapshot`
(the console script, default probes, stored in a scratch store), `python -m pip freeze`
and `python -c pass`; prints the medians, the ratios the snapshot issue sets targets
for, and the peak RSS of each command (from wait4, per child).

`--compare LABEL=PATH` (repeatable) puts another envcap beside this one in the same
interleaved rounds: PATH is a venv that has it, or a checkout (of an older commit, say)
to install into a fresh venv; its snapshot's median is printed as a ratio to this one's.

    python benchmarks/bench_snapshot.py [--venv DIR] [--rounds 15] [--compare before=CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def make_venv(path: str, repo: str | None = None) -> str:
    """A venv with envcap installed from a wheel, as from an index (a checkout installed
    as a directory would make the snapshot also ask git about that checkout)."""
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    python = os.path.join(path, "bin", "python")
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    pip = [python, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels = os.path.join(path, "wheels")
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, repo], check=True)
    subprocess.run([*pip, "install", *(os.path.join(wheels, w) for w in os.listdir(wheels))], check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", help="a venv with envcap installed (default: make one)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                        help="another envcap (a venv, or a checkout to install) measured in the same rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        venv = args.venv or make_venv(os.path.join(scratch, "venv"))
        python = os.path.join(venv, "bin", "python")
        env = {**os.environ, "ENVCAP_HOME": os.path.join(scratch, "store")}
        commands = {
            "envcap snapshot": [os.path.join(venv, "bin", "envcap"), "snapshot"],
            "pip freeze": [python, "-m", "pip", "freeze"],
            "python -c pass": [python, "-c", "pass"],
        }
        others = []
        for i, item in enumerate(args.compare):
            label, _, path = item.partition("=")
            if not os.path.isfile(os.path.join(path, "bin", "envcap")):
                path = make_venv(os.path.join(scratch, f"compare-{i}"), os.path.abspath(path))
            others.append(f"envcap snapshot ({label})")
            commands[others[-1]] = [os.path.join(path, "bin", "envcap"), "snapshot"]
        for argv in commands.values():  # warm the page cache once
            measure(argv, env)
        times: dict[str, list[float]] = {k: [] for k in commands}
        cpus: dict[str, list[float]] = {k: [] for k in commands}
        rss: dict[str, int] = dict.fromkeys(commands, 0)
        for _ in range(args.rounds):
            for name, argv in commands.items():
                t, r, c = measure(argv, env)
                times[name].append(t)
                cpus[name].append(c)
                rss[name] = max(rss[name], r)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    print(f"interpreter: {python}   rounds: {args.rounds}   load average {os.getloadavg()[0]:.1f}")
    for name in commands:
        print(f"  {name:<16} median {med[name] * 1000:7.1f} ms wall, {cpu[name] * 1000:7.1f} ms CPU   "
              f"peak RSS {rss[name] / 2**20:5.1f} MiB")
    snap = med["envcap snapshot"]
    for name in others:
        print(f"ratio {name} / envcap snapshot: {med[name] / snap:.2f}   "
              f"({name} / python -c pass: {med[name] / med['python -c pass']:.2f})")
    print(f"ratio snapshot / pip freeze:     {snap / med['pip freeze']:.2f} wall, "
          f"{cpu['envcap snapshot'] / cpu['pip freeze']:.2f} CPU  (target <= 0.30)")
    print(f"ratio snapshot / python -c pass: {snap / med['python -c pass']:.2f}  (target <= 6)")
    print(f"snapshot peak RSS: {rss['envcap snapshot'] / 2**20:.1f} MiB  (target <= 40)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
