#!/usr/bin/env python3
"""Check envcap's GPU resource samples against nvidia-smi on a real NVIDIA machine, once.

Run from the repository root on the GPU machine (scripts/device_check.sh runs it)::

    python3 scripts/device_check_resources.py

It records one run through envcap's own runner (``envcap.runs.runner.execute``) of a
PyTorch workload on GPU 0: about 8 GiB allocated, matrix products for --busy seconds,
then --idle seconds holding the memory with the GPU idle. Meanwhile ``nvidia-smi
--query-gpu=... -lms 200`` samples the same device independently. It then compares,
for device 0:

- peak memory used: envcap's ``resources.gpu[0].peak_memory_mib`` against the largest
  ``memory.used`` nvidia-smi printed (within 3%: the plateau lasts seconds);
- peak utilisation: both at least 90% while busy;
- mean utilisation over the run: within 15 percentage points (the two sample at
  different instants of a busy/idle run);
- energy: envcap's (NVML's energy counter, or its power integrated) against nvidia-smi's
  ``power.draw`` integrated over the run's window (within 15%);
- the stored samples object: its GPU rows, interval and device uuid.

The last line is ``RESOURCES CHECK: N agree, M differ``; the exit status is 1 on any
disagreement or when nothing could be compared. Needs envcap (from ./src), psutil and
pynvml (nvidia-ml-py) in this interpreter, and an interpreter with torch and CUDA for the
workload (this one, /opt/torch/.venv/bin/python, python on PATH, or
ENVCAP_CHECK_TORCH_PYTHON); a missing piece is reported, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

WORKLOAD = """\
import sys, time, torch
busy, idle = float(sys.argv[1]), float(sys.argv[2])
hold = torch.empty(2 * 1024**3, dtype=torch.float32, device="cuda:0")   # 8 GiB
hold.fill_(1.0)
a = torch.randn(8192, 8192, device="cuda:0")
end = time.monotonic() + busy
while time.monotonic() < end:
    b = a @ a
    torch.cuda.synchronize()
time.sleep(idle)
print(float(hold[0]) + float(b[0, 0] * 0))
"""
SMI_FIELDS = "index,utilization.gpu,memory.used,power.draw"


def verdict(ok: bool | None) -> str:
    return "unchecked" if ok is None else ("agree" if ok else "differ")


def smi_rows(path: str) -> list[dict[str, float]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or parts[1] != "0":
            continue
        try:
            rows.append({"t": float(parts[0]), "util": float(parts[2]), "memory_mib": float(parts[3]),
                         "power_w": float(parts[4])})
        except ValueError:
            continue  # "[N/A]" readings
    return rows


def integrate(rows: list[dict[str, float]], start: float, end: float) -> float | None:
    inside = [r for r in rows if start <= r["t"] <= end]
    if len(inside) < 2:
        return None
    return sum((b["t"] - a["t"]) * (a["power_w"] + b["power_w"]) / 2 for a, b in zip(inside, inside[1:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=float, default=8.0)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args()
    report: dict[str, Any] = {"python": sys.version.split()[0]}
    checks: list[dict[str, Any]] = []
    missing = [m for m in ("psutil", "pynvml") if not _importable(m)]
    torch_python = _torch_python()
    report["workload_python"] = torch_python
    if missing or shutil.which("nvidia-smi") is None or torch_python is None:
        report["missing"] = missing + ([] if shutil.which("nvidia-smi") else ["nvidia-smi"]) + \
            ([] if torch_python else ["an interpreter with torch and CUDA (set ENVCAP_CHECK_TORCH_PYTHON)"])
        return finish(report, checks)
    from envcap.runs import resources
    from envcap.runs.runner import execute, plan_run
    from envcap.store.embedded import Store

    scratch = tempfile.mkdtemp(prefix="envcap-resources-check-")
    script = os.path.join(scratch, "load.py")
    Path(script).write_text(WORKLOAD)
    smi_out = os.path.join(scratch, "smi.csv")
    # nvidia-smi prints no clock of its own in this query; each line is stamped as it arrives.
    stamper = ("import sys, time\nfor line in sys.stdin:\n"
               "    sys.stdout.write(f'{time.monotonic()},{line}'); sys.stdout.flush()\n")
    with open(smi_out, "w") as out:
        smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits",
                                "-lms", "200"], stdout=subprocess.PIPE, text=True)
        stamp = subprocess.Popen([sys.executable, "-c", stamper], stdin=smi.stdout, stdout=out, text=True)
        time.sleep(1.0)
        os.environ["ENVCAP_HOME"] = os.path.join(scratch, "store")
        os.environ["ENVCAP_RESOURCE_INTERVAL"] = "0.2"
        plan = plan_run([torch_python, script, str(args.busy), str(args.idle)], cwd=scratch)
        started = time.monotonic()
        with Store(create=True) as store:
            record = execute(store, plan)
            ended = time.monotonic()
            res = dict(record.resources or {})
            samples = resources.load_samples(store.get_object(res["object"])) if res.get("object") else {}
        time.sleep(1.0)
        smi.terminate()
        smi.wait()
        stamp.wait()
    report["exit_code"] = record.exit_code
    report["problems"] = list(record.problems)
    report["resources"] = res
    rows = [r for r in smi_rows(smi_out) if started <= r["t"] <= ended]
    report["nvidia_smi_rows"] = len(rows)
    gpu0 = (res.get("gpu") or [{}])[0]
    if not rows or not gpu0:
        report["why_unchecked"] = "no nvidia-smi rows in the run's window, or no GPU in the record"
        return finish(report, checks)
    smi_peak = max(r["memory_mib"] for r in rows)
    ours_peak = gpu0.get("peak_memory_mib")
    checks.append({"field": "peak memory used MiB", "values": {"envcap": ours_peak, "nvidia-smi": smi_peak},
                   "verdict": verdict(None if ours_peak is None else abs(ours_peak - smi_peak) <= 0.03 * smi_peak)})
    smi_util_peak = max(r["util"] for r in rows)
    checks.append({"field": "peak utilisation >= 90%",
                   "values": {"envcap": gpu0.get("peak_util_pct"), "nvidia-smi": smi_util_peak},
                   "verdict": verdict(None if gpu0.get("peak_util_pct") is None
                                      else gpu0["peak_util_pct"] >= 90 and smi_util_peak >= 90)})
    smi_mean = sum(r["util"] for r in rows) / len(rows)
    ours_mean = gpu0.get("mean_util_pct")
    checks.append({"field": "mean utilisation (points)", "values": {"envcap": ours_mean, "nvidia-smi": smi_mean},
                   "verdict": verdict(None if ours_mean is None else abs(ours_mean - smi_mean) <= 15)})
    smi_energy = integrate(rows, started, ended)
    ours_energy = gpu0.get("energy_j")
    checks.append({"field": f"energy J (envcap from {gpu0.get('energy_from')})",
                   "values": {"envcap": ours_energy, "nvidia-smi power integrated": smi_energy},
                   "verdict": verdict(None if ours_energy is None or smi_energy is None
                                      else abs(ours_energy - smi_energy) <= 0.15 * smi_energy)})
    devices = (samples.get("gpu") or {}).get("devices") or [{}]
    checks.append({"field": "samples object: gpu rows, interval",
                   "values": {"rows": len(devices[0].get("rows", [])), "interval_s": samples.get("interval_s"),
                              "uuid": devices[0].get("uuid")},
                   "verdict": verdict(len(devices[0].get("rows", [])) >= 10 and bool(devices[0].get("uuid")))})
    report["nvidia_smi_first_rows"] = rows[:3]
    return finish(report, checks)


def _torch_python() -> str | None:
    """An interpreter that imports torch with CUDA: envcap samples the workload whatever runs it."""
    candidates = [os.environ.get("ENVCAP_CHECK_TORCH_PYTHON"), sys.executable, "/opt/torch/.venv/bin/python",
                  shutil.which("python"), shutil.which("python3")]
    for python in candidates:
        if not python or not os.path.exists(python):
            continue
        try:
            proc = subprocess.run([python, "-c", "import torch; assert torch.cuda.is_available()"],
                                  capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return python
    return None


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # reported, not raised
        return False
    return True


def finish(report: dict[str, Any], checks: list[dict[str, Any]]) -> int:
    report["checks"] = checks
    print(json.dumps(report, indent=1, default=str))
    agree = sum(c["verdict"] == "agree" for c in checks)
    differ = sum(c["verdict"] == "differ" for c in checks)
    for c in checks:
        if c["verdict"] == "differ":
            print(f"DIFFER {c['field']}: {json.dumps(c['values'], default=str)}")
    print(f"RESOURCES CHECK: {agree} agree, {differ} differ")
    return 1 if differ or agree == 0 else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # last resort: still one line a reader can act on
        print(f"device_check_resources failed: {type(exc).__name__}: {exc}")
        print("RESOURCES CHECK: 0 agree, 1 differ")
        sys.exit(1)
