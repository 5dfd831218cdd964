"""Resource usage of a run: what the command's whole process tree used, sampled as it ran.

A :class:`Monitor` samples, every ``interval`` seconds on a thread of its own, the
process tree rooted at the command (``envcap run``) or at the script itself
(``envcap.start_run``): resident memory, CPU time (user and system), I/O, threads and
processes, through psutil; and where an NVIDIA GPU is present, each device's
utilisation, memory used, power and energy counter, through the gpu probe's NVML code
(:class:`envcap.probes.gpu.NvmlUsage`).

The totals do not rest on the samples alone, which miss what happens between two of
them: for ``envcap run`` the kernel's own account of the command, returned by
``wait4`` when it ends, gives the exact CPU time of the command and every descendant
it waited for, and the high-water mark of the largest process's resident memory. The
peak recorded is the larger of that mark and the largest sampled sum over the tree.

The summary (peak, mean, total) goes into the run record as ``resources``; the samples
go into the store as one JSON object (:data:`SCHEMA`) with their interval. At most
:data:`MAX_SAMPLES` are kept: past that, every other sample is dropped and the interval
doubled, so a run of a week costs as little memory as a run of an hour.

``ENVCAP_RESOURCE_INTERVAL`` sets the interval in seconds (default 0.5); ``0`` turns
sampling off, and the record then holds the kernel's totals only. psutil is imported
here, never on the snapshot path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Mapping

from ..core.errors import UsageError

SCHEMA = "envcap.resources/1"
DEFAULT_INTERVAL = 0.5
MAX_SAMPLES = 7200
MIB = 1 << 20
COLUMNS = ("t_s", "rss_bytes", "cpu_user_s", "cpu_system_s", "read_bytes", "write_bytes",
           "threads", "processes")
GPU_COLUMNS = ("t_s", "util_pct", "memory_used_bytes", "power_mw", "energy_mj")


def interval_from_env(env: Mapping[str, str] | None = None) -> float:
    """``ENVCAP_RESOURCE_INTERVAL`` in seconds (``0``: no sampling)."""
    env = os.environ if env is None else env
    raw = env.get("ENVCAP_RESOURCE_INTERVAL")
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value == 0 or 0.01 <= value <= 3600):
        raise UsageError(f"ENVCAP_RESOURCE_INTERVAL={raw!r}: give seconds between 0.01 and 3600, or 0 for none")
    return value


class Monitor:
    """Samples the process tree rooted at ``pid`` until :meth:`stop`.

    ``own_process`` says the root is this very process (``start_run``): its CPU time then
    comes from psutil at the end, less what the sampling thread itself spent.
    """

    def __init__(self, pid: int, *, interval: float | None = None, own_process: bool = False) -> None:
        self.pid = pid
        self.interval = interval_from_env() if interval is None else interval
        self.own_process = own_process
        self.rows: list[list[Any]] = []
        self.gpu_rows: list[list[list[Any]]] = []  # per device
        self.gpu_devices: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self._io_last: dict[tuple[int, float], tuple[int, int, int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._ended: float | None = None
        self._rusage: Any = None
        self._root: Any = None
        self._psutil: Any = None
        self._nvml: Any = None
        self._thread_cpu = 0.0
        self._parents: dict[int, int | None] = {}
        self._procs: dict[int, Any] = {}

    # -- the life of the monitor ------------------------------------------------------------

    def start(self) -> Monitor:
        """Start sampling on a thread (psutil is imported there: the command never waits)."""
        self._started = time.monotonic()
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="envcap-resources", daemon=True)
            self._thread.start()
        return self

    def wait(self, child: Any) -> int:
        """Wait for ``child`` (a Popen) with ``wait4``, keeping the kernel's account of it."""
        try:
            _, status, self._rusage = os.wait4(child.pid, 0)
        except ChildProcessError:
            return int(child.wait())
        self._ended = time.monotonic()
        child.returncode = os.waitstatus_to_exitcode(status)
        return int(child.returncode)

    def stop(self) -> None:
        if self._ended is None:
            self._ended = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._nvml is not None:
            self._sample_gpu(self._ended - self._started)  # the energy counter's last reading
            self._nvml.close()
            self._nvml = None

    # -- sampling -----------------------------------------------------------------------

    def _open_gpu(self) -> None:
        from ..probes import gpu

        if not gpu.nvidia_present():
            return
        try:
            self._nvml = gpu.NvmlUsage().open()
        except gpu.NvmlUnavailable as exc:
            self.problems.append(f"GPU samples: {exc}")
            return
        self.gpu_devices = self._nvml.devices
        self.gpu_rows = [[] for _ in self.gpu_devices]

    def _setup(self) -> bool:
        try:
            import psutil  # type: ignore[import-untyped]
        except ImportError:
            self.problems.append("resource samples: psutil is not installed (pip install psutil); "
                                 "only the kernel's totals are recorded")
            return False
        self._psutil = psutil
        try:
            self._root = psutil.Process(self.pid)
        except psutil.Error as exc:
            self.problems.append(f"resource samples: process {self.pid}: {exc}")
            return False
        self._procs = {self.pid: self._root}
        self._open_gpu()
        return True

    def _loop(self) -> None:
        start_cpu = time.thread_time()
        try:
            if not self._setup():
                return
            while not self._stop.is_set():
                now = time.monotonic() - self._started
                if not self._sample(now):
                    break
                if self._nvml is not None:
                    self._sample_gpu(now)
                if len(self.rows) > MAX_SAMPLES:
                    self._decimate()
                self._stop.wait(self.interval)
        except Exception as exc:  # noqa: BLE001 - sampling never stops the run
            self.problems.append(f"resource samples stopped: {type(exc).__name__}: {exc}")
        finally:
            self._thread_cpu = time.thread_time() - start_cpu

    def _tree(self) -> list[Any]:
        """The root and its descendants now, as psutil processes (kept from tick to tick).

        psutil's ``children(recursive=True)`` reads the parent of every process on the
        machine at each call (9 ms on a machine of 100 processes); here a process's
        parent is read once, when it is first seen, and /proc is only listed after that.
        """
        ps = self._psutil
        if not os.path.isdir("/proc/self/task"):
            try:
                return [self._root, *self._root.children(recursive=True)]
            except ps.NoSuchProcess:
                return []
        alive = {int(n) for n in os.listdir("/proc") if n.isdigit()}
        for pid in alive - self._parents.keys():
            self._parents[pid] = _parent(pid)
        for pid in self._parents.keys() - alive:
            del self._parents[pid]
            self._procs.pop(pid, None)
        if self.pid not in alive:
            return []
        children: dict[int, list[int]] = {}
        for pid, parent in self._parents.items():
            if parent is not None:
                children.setdefault(parent, []).append(pid)
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = self._procs[pid] = ps.Process(pid)
                except ps.Error:
                    continue
            tree.append(proc)
            todo += children.get(pid, [])
        return tree

    def _sample(self, now: float) -> bool:
        """One row for the tree as it is now; False once the root is gone."""
        ps = self._psutil
        rss = threads = count = 0
        user = system = 0.0
        for proc in self._tree():
            try:
                with proc.oneshot():
                    mem = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    nthreads = proc.num_threads()
                    io = _io(proc)
                    key = (proc.pid, proc.create_time())
            except (ps.NoSuchProcess, ps.AccessDenied):
                continue
            if self.own_process and proc.pid == self.pid:
                nthreads -= 1  # the sampling thread is envcap's, not the script's
            rss += mem
            threads += nthreads
            count += 1
            # A parent's children_* times hold the children it has waited for, which are no
            # longer in the tree: the sum grows as the tree's CPU time does.
            user += cpu.user + getattr(cpu, "children_user", 0.0)
            system += cpu.system + getattr(cpu, "children_system", 0.0)
            if io is not None:
                self._io_last[key] = io
        if count == 0:
            return False
        read = sum(v[0] for v in self._io_last.values())
        write = sum(v[1] for v in self._io_last.values())
        self.rows.append([round(now, 3), rss, round(user, 3), round(system, 3), read, write, threads, count])
        return True

    def _sample_gpu(self, now: float) -> None:
        try:
            usage = self._nvml.sample()
        except Exception as exc:  # noqa: BLE001 - a GPU gone unwell ends GPU sampling only
            self.problems.append(f"GPU samples stopped: {type(exc).__name__}: {exc}")
            self._nvml.close()
            self._nvml = None
            return
        for rows, u in zip(self.gpu_rows, usage, strict=False):
            rows.append([round(now, 3), u["util_pct"], u["memory_used_bytes"], u["power_mw"], u["energy_mj"]])

    def _decimate(self) -> None:
        self.rows = self.rows[::2]
        self.gpu_rows = [rows[::2] for rows in self.gpu_rows]
        self.interval *= 2

    # -- the result -------------------------------------------------------------------------

    def samples_bytes(self) -> bytes | None:
        """The samples as the stored object (canonical JSON), or None when there are none."""
        if not self.rows and not any(self.gpu_rows):
            return None
        from ..core.canonical import canonical_bytes

        doc: dict[str, Any] = {"schema": SCHEMA, "interval_s": self.interval, "columns": list(COLUMNS),
                               "rows": self.rows}
        if self.gpu_devices:
            doc["gpu"] = {"columns": list(GPU_COLUMNS),
                          "devices": [{**d, "rows": rows} for d, rows in zip(self.gpu_devices, self.gpu_rows)]}
        return canonical_bytes(doc)

    def summary(self) -> dict[str, Any]:
        """Peak, mean and total of what the tree used (see the module's notes for sources)."""
        ended = self._ended if self._ended is not None else time.monotonic()
        out: dict[str, Any] = {"wall_s": round(ended - self._started, 3), "interval_s": self.interval,
                               "samples": len(self.rows)}
        user, system, peak_from_kernel = self._cpu_and_peak()
        out["cpu_user_s"] = round(user, 3) if user is not None else None
        out["cpu_system_s"] = round(system, 3) if system is not None else None
        if user is not None and system is not None:
            out["cpu_s"] = round(user + system, 3)
            out["cpu_util_pct"] = round(100 * (user + system) / out["wall_s"], 1) if out["wall_s"] > 0 else None
        sampled = [r[1] for r in self.rows]
        peak = max([*sampled, peak_from_kernel or 0]) or None
        out["peak_rss_mib"] = _mib(peak)
        out["mean_rss_mib"] = _mib(sum(sampled) / len(sampled)) if sampled else None
        read = sum(v[0] for v in self._io_last.values()) if self._io_last else None
        write = sum(v[1] for v in self._io_last.values()) if self._io_last else None
        if self._rusage is not None:
            # Blocks of 512 bytes, including waited-for descendants: a floor under the samples.
            read = max(read or 0, self._rusage.ru_inblock * 512)
            write = max(write or 0, self._rusage.ru_oublock * 512)
        out["read_bytes"], out["write_bytes"] = read, write
        if self._io_last:
            out["read_chars"] = sum(v[2] for v in self._io_last.values())
            out["write_chars"] = sum(v[3] for v in self._io_last.values())
        out["peak_threads"] = max((r[6] for r in self.rows), default=None)
        out["peak_processes"] = max((r[7] for r in self.rows), default=None)
        if self.gpu_devices:
            out["gpu"] = [summarize_gpu(d, rows) for d, rows in zip(self.gpu_devices, self.gpu_rows)]
        return out

    def _cpu_and_peak(self) -> tuple[float | None, float | None, int | None]:
        if self._rusage is not None:
            ru = self._rusage
            return ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024  # Linux: kibibytes
        if self.own_process:
            import resource

            ru = resource.getrusage(resource.RUSAGE_SELF)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            # The sampling thread's CPU is envcap's, not the script's; it is nearly all user time.
            user = max(0.0, ru.ru_utime + kids.ru_utime - self._thread_cpu)
            return user, ru.ru_stime + kids.ru_stime, max(ru.ru_maxrss, kids.ru_maxrss) * 1024
        if self.rows:
            return self.rows[-1][2], self.rows[-1][3], None
        return None, None, None


def _parent(pid: int) -> int | None:
    """The parent of ``pid`` from /proc/PID/stat (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def _io(proc: Any) -> tuple[int, int, int, int] | None:
    try:
        io = proc.io_counters()
    except (AttributeError, NotImplementedError):
        return None
    return (io.read_bytes, io.write_bytes, getattr(io, "read_chars", 0), getattr(io, "write_chars", 0))


def _mib(nbytes: float | None) -> float | None:
    return None if nbytes is None else round(nbytes / MIB, 1)


def summarize_gpu(device: Mapping[str, Any], rows: list[list[Any]]) -> dict[str, Any]:
    """One device's peak and mean utilisation and memory, and the energy it used.

    Energy is the difference of NVML's total energy counter (millijoules since the driver
    loaded) between the first and last sample where the board has the counter, else the
    power readings integrated over time (trapezoids).
    """
    util = [r[1] for r in rows if r[1] is not None]
    memory = [r[2] for r in rows if r[2] is not None]
    out: dict[str, Any] = {
        "index": device.get("index"), "name": device.get("name"), "uuid": device.get("uuid"),
        "peak_util_pct": max(util, default=None),
        "mean_util_pct": round(sum(util) / len(util), 1) if util else None,
        "peak_memory_mib": _mib(max(memory, default=None)),
        "mean_memory_mib": _mib(sum(memory) / len(memory)) if memory else None,
        "energy_j": None, "energy_from": None,
    }
    counter = [(r[0], r[4]) for r in rows if r[4] is not None]
    power = [(r[0], r[3]) for r in rows if r[3] is not None]
    if len(counter) >= 2 and counter[-1][1] >= counter[0][1]:
        out["energy_j"] = round((counter[-1][1] - counter[0][1]) / 1000, 3)
        out["energy_from"] = "counter"
    elif len(power) >= 2:
        joules = sum((t1 - t0) * (p0 + p1) / 2 / 1000 for (t0, p0), (t1, p1) in zip(power, power[1:]))
        out["energy_j"] = round(joules, 3)
        out["energy_from"] = "power"
    return out


def load_samples(data: bytes) -> dict[str, Any]:
    """A stored samples object, read back (for tools and tests)."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"not a resource samples object ({SCHEMA})")
    return doc
