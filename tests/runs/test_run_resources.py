"""Resource usage of runs against ground truth: what the kernel and the child say it used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from envcap.core.run import RunRecord
from envcap.runs import resources
from envcap.runs.resources import Monitor, summarize_gpu

from runs_helpers import envcap, run_id_of, show

MIB = 1 << 20

ALLOC = textwrap.dedent("""\
    import sys, time
    buf = bytearray(b"\\x01") * (int(sys.argv[1]) * (1 << 20))   # written, so resident
    time.sleep(float(sys.argv[2]))
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    print(status["VmHWM"].split()[0])                          # the kernel's peak, KiB
""")

BURN = textwrap.dedent("""\
    import sys, time
    end = float(sys.argv[1])
    while time.process_time() < end:
        sum(range(20000))                                      # user time, not clock reads
    print(time.process_time())                                 # the child's own CPU seconds
""")

TREE = textwrap.dedent("""\
    import subprocess, sys
    kids = [subprocess.Popen([sys.executable, "alloc.py", "100", "2.5"], stdout=subprocess.DEVNULL)
            for _ in range(2)]
    burn = subprocess.run([sys.executable, "burn.py", "0.8"], capture_output=True, text=True)
    for k in kids:
        k.wait()
    print(burn.stdout.strip())
""")


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "alloc.py").write_text(ALLOC)
    (tmp_path / "burn.py").write_text(BURN)
    (tmp_path / "tree.py").write_text(TREE)
    return tmp_path


def _run(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    proc = envcap("run", "--", sys.executable, *argv, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return show(run_id_of(proc)), proc.stdout


def test_peak_memory_is_what_the_child_allocated(scripts: Path) -> None:
    view, out = _run(scripts, "alloc.py", "300", "1.2")
    res = view["resources"]
    kernel_mib = int(out.strip()) / 1024
    # 300 MiB allocated, plus the interpreter itself (about 10 MiB): within 5% of 300.
    assert 300 <= res["peak_rss_mib"] <= 300 * 1.05, res
    assert abs(res["peak_rss_mib"] - kernel_mib) <= 0.05 * kernel_mib, (res, kernel_mib)
    assert res["samples"] >= 2 and res["mean_rss_mib"] <= res["peak_rss_mib"]
    assert res["peak_processes"] == 1


def test_cpu_time_is_what_the_cpu_bound_child_used(scripts: Path) -> None:
    view, out = _run(scripts, "burn.py", "1.5")
    res = view["resources"]
    own = float(out.strip())
    assert own >= 1.5
    assert abs(res["cpu_s"] - own) <= max(0.05 * own, 0.1), (res, own)
    assert res["cpu_user_s"] >= 0.8 * own
    assert res["cpu_s"] == pytest.approx(res["cpu_user_s"] + res["cpu_system_s"], abs=0.002)
    assert res["wall_s"] >= res["cpu_s"] * 0.9


def test_the_whole_process_tree_is_counted(scripts: Path) -> None:
    view, out = _run(scripts, "tree.py")
    res = view["resources"]
    # Two grandchildren of 100 MiB each lived at once: only the tree's sum shows 200 MiB,
    # the largest single process (the kernel's high-water mark) about 110.
    assert res["peak_rss_mib"] >= 200, res
    assert res["peak_processes"] >= 3, res  # the script, its two allocators (and the burner)
    # The burning grandchild's CPU time is in the total, through its waiting parent.
    assert res["cpu_s"] >= float(out.strip()), res


def test_samples_are_stored_with_their_interval(scripts: Path, isolated: Path) -> None:
    from envcap.store.embedded import Store

    view, _ = _run(scripts, "alloc.py", "50", "1.0", env={"ENVCAP_RESOURCE_INTERVAL": "0.2"})
    res = view["resources"]
    assert res["interval_s"] == 0.2
    with Store(isolated, create=False) as store:
        doc = resources.load_samples(store.get_object(res["object"]))
    assert doc["interval_s"] == 0.2 and doc["columns"][:2] == ["t_s", "rss_bytes"]
    assert len(doc["rows"]) == res["samples"] >= 4
    times = [r[0] for r in doc["rows"]]
    assert times == sorted(times)
    assert max(r[1] for r in doc["rows"]) / MIB <= res["peak_rss_mib"] + 0.1
    assert "gpu" not in doc  # no NVIDIA GPU on this machine
    verify = envcap("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sampling_off_still_records_the_kernels_totals(scripts: Path) -> None:
    view, out = _run(scripts, "burn.py", "0.5", env={"ENVCAP_RESOURCE_INTERVAL": "0"})
    res = view["resources"]
    assert res["samples"] == 0 and res["object"] is None
    assert abs(res["cpu_s"] - float(out.strip())) <= 0.1
    assert res["peak_rss_mib"] > 1


def test_a_bad_interval_is_a_clean_error_before_anything_runs(scripts: Path) -> None:
    proc = envcap("run", "--", sys.executable, "burn.py", "0", cwd=scripts,
                  env={"ENVCAP_RESOURCE_INTERVAL": "fast"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ENVCAP_RESOURCE_INTERVAL='fast'" in proc.stderr
    # Nothing was recorded: no store was even made, or it holds no run.
    listed = envcap("runs", "--json")
    assert (listed.returncode == 2 and "no envcap store" in listed.stderr) or listed.stdout.strip() == "[]"


def test_show_prints_and_where_filters_on_resources(scripts: Path) -> None:
    small = run_id_of(envcap("run", "--", sys.executable, "alloc.py", "20", "0.6", cwd=scripts))
    big = run_id_of(envcap("run", "--", sys.executable, "alloc.py", "250", "0.6", cwd=scripts))
    text = envcap("show", big, check=True).stdout
    assert "resources" in text and "memory peak 2" in text, text
    found = envcap("runs", "--json", "--where", "resources.peak_rss_mib<100", check=True).stdout
    assert [v["id"] for v in json.loads(found)] == [small]
    found = envcap("runs", "--json", "--where", "resources.peak_rss_mib>=250", check=True).stdout
    assert [v["id"] for v in json.loads(found)] == [big]


def test_a_script_of_its_own_records_its_resources(tmp_path: Path) -> None:
    (tmp_path / "own.py").write_text(textwrap.dedent("""\
        import time, envcap
        with envcap.start_run(params={"a": 1}) as run:
            buf = bytearray(b"\\x01") * (200 << 20)
            end = time.process_time() + 0.6
            while time.process_time() < end:
                sum(range(20000))
        print(run.id)
    """))
    proc = subprocess.run([sys.executable, "own.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = show(proc.stdout.strip())["resources"]
    assert res["peak_rss_mib"] >= 200 and res["cpu_s"] >= 0.6, res
    assert res["samples"] >= 1


def test_records_without_resources_load_and_keep_their_bytes() -> None:
    from envcap.core.canonical import canonical_bytes

    old = {"schema": "envcap.run/1", "id": "01JD3M8Q4WZ6D5V1T0X8KJ2F7N", "state": "finished", "mode": "cli",
           "argv": ["true"], "command": "true", "cwd": "/", "host": None, "started_at": "2026-01-01T00:00:00.000Z",
           "ended_at": None, "duration_s": None, "exit_code": 0, "signal": None, "labels": {}, "manifest": None,
           "snapshot": None, "env_id": None, "platform_id": None, "python": {}, "git": {}, "params": [],
           "params_id": "", "params_files": [], "seeds": {}, "data": [], "outputs": [], "metrics": {},
           "metrics_log": None, "problems": [], "envcap_version": "0.1.0"}
    record = RunRecord.from_dict(old)
    assert record.resources is None
    assert canonical_bytes(record.to_dict()) == canonical_bytes(old)
    with_res = RunRecord.from_dict({**old, "resources": {"peak_rss_mib": 1.0, "object": "sha256:" + "a" * 64}})
    assert ("sha256:" + "a" * 64, "run-resources", "resource samples") in list(with_res.objects())


def test_monitor_of_this_process_sees_no_gpu_here() -> None:
    import os

    monitor = Monitor(os.getpid(), interval=0.05, own_process=True).start()
    junk = bytearray(b"\x01") * (30 * MIB)
    deadline = time.monotonic() + 30
    while len(monitor.rows) < 2 and time.monotonic() < deadline:  # psutil is imported on its thread
        time.sleep(0.05)
    monitor.stop()
    summary = monitor.summary()
    assert summary["samples"] >= 1 and summary["peak_rss_mib"] >= 30
    assert "gpu" not in summary and not monitor.problems
    del junk


def test_without_pynvml_the_gpu_usage_reader_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from envcap.probes import gpu

    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail, as the probe's tests do
    with pytest.raises(gpu.NvmlUnavailable, match="not installed"):
        gpu.NvmlUsage().open()


def test_gpu_energy_from_the_counter_else_from_power() -> None:
    device = {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-x"}
    # t, util %, memory used, power mW, energy counter mJ
    rows = [[0.0, 0, 1 * MIB, 100_000, 5_000_000], [1.0, 50, 3 * MIB, 300_000, 5_200_000],
            [2.0, 100, 2 * MIB, 300_000, 5_500_000]]
    by_counter = summarize_gpu(device, rows)
    assert by_counter["energy_j"] == 500.0 and by_counter["energy_from"] == "counter"
    assert by_counter["peak_util_pct"] == 100 and by_counter["mean_util_pct"] == 50.0
    assert by_counter["peak_memory_mib"] == 3.0 and by_counter["mean_memory_mib"] == 2.0
    no_counter = [[t, u, m, p, None] for t, u, m, p, _ in rows]
    by_power = summarize_gpu(device, no_counter)
    # Trapezoids: (100 + 300) / 2 W for 1 s, then 300 W for 1 s.
    assert by_power["energy_j"] == 500.0 and by_power["energy_from"] == "power"
    nothing = summarize_gpu(device, [[0.0, None, None, None, None]])
    assert nothing["energy_j"] is None and nothing["peak_util_pct"] is None


def test_the_snapshot_path_does_not_import_psutil() -> None:
    code = "import sys, envcap; envcap.snapshot(); print('psutil' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "False"
