"""GPU probe: the accelerators, their driver and the CUDA version the driver supports.

NVIDIA facts come from a chain of cheap attempts, each returning ``None`` when it does
not apply: NVML (through ``pynvml``, from nvidia-ml-py) on a live machine, then
``nvidia-smi -q -x``, then the files under ``/proc/driver/nvidia`` (which also work under
``--root``). Every path normalises to the same section for the same machine, so that a
machine without pynvml hashes like one with it. AMD GPUs are read best effort from
``rocm-smi --json`` on a live machine with ``/dev/kfd``.

The section holds only what two identical machines share: model names, compute
capability, memory size, driver and CUDA driver versions. UUIDs, serials, PCI bus ids,
VBIOS versions, MIG/ECC/persistence state and power limits differ from host to host or
are operator settings, and go into ``observed``, as does which path answered.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from ..core.errors import ProbeError
from . import PLATFORM, Finding, Probe
from .context import Context

MIB = 1 << 20

_PROC_DRIVER = "/proc/driver/nvidia"
_PROC_VERSION = f"{_PROC_DRIVER}/version"
_PROC_GPUS = f"{_PROC_DRIVER}/gpus"

# The query nvidia-smi's XML cannot answer: ``-q -x`` has no compute capability, so the
# nvidia-smi path asks for it by bus id in CSV (nvidia-smi has known ``compute_cap``
# since driver 510). With a header, so the same parser reads a full CSV dump as well.
SMI_QUERY = ("nvidia-smi", "--query-gpu=pci.bus_id,compute_cap", "--format=csv")

Notes = dict[str, str]


class NvmlUnavailable(Exception):
    """NVML cannot answer here: pynvml is missing, or the library or driver refused."""


# A NamedTuple, not a dataclass: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class _Device(NamedTuple):
    bus_id: str | None
    name: str | None
    compute_capability: str | None
    memory_total_bytes: int | None
    observed: Mapping[str, Any] = MappingProxyType({})


# -- shared normalisation ----------------------------------------------------------


def cuda_version_from_int(value: int | None) -> str | None:
    """NVML's CUDA driver version (``13000``, ``12020``) as nvidia-smi prints it."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def normalise_bus_id(bus_id: str | None) -> str | None:
    """A PCI address in sysfs form (``0000:00:06.0``), whatever width its domain had.

    NVML and nvidia-smi print an 8-digit domain (``00000000:00:06.0``), /proc a 4-digit
    one, and nvidia-smi upper-cases hex digits; one spelling makes them comparable.
    """
    if not bus_id:
        return None
    match = re.fullmatch(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])", bus_id.strip())
    if match is None:
        return bus_id.strip().lower()
    domain, bus, dev, fn = (int(g, 16) for g in match.groups())
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn:x}"


def _bus_key(device: _Device) -> tuple[int, str]:
    # Devices without a bus id (never seen in practice) sort last, in the order given.
    return (0, device.bus_id) if device.bus_id else (1, "")


def _mib_floor(nbytes: int) -> int:
    """``nbytes`` rounded down to whole MiB.

    nvidia-smi reports memory only in whole MiB, NVML in bytes. On the H200 fixture the
    two agree exactly (143771 MiB x 1048576 = 150754820096 bytes, NVML's own figure), so
    this changes nothing there; but were NVML ever to report a size that is not a whole
    number of MiB, keeping its bytes would make the NVML and nvidia-smi paths hash
    differently on one machine. We record MiB granularity from both, and the NVML path
    keeps any exact remainder in ``observed``. Rounding down, not to nearest, is an
    assumption about nvidia-smi that scripts/device_check.py checks on real hardware.
    """
    return nbytes - nbytes % MIB


def _assemble(
    vendor: str,
    driver: str | None,
    cuda: str | None,
    devices: list[_Device],
    observed: dict[str, Any],
) -> Finding:
    ordered = sorted(devices, key=_bus_key)
    section = {
        "vendor": vendor,
        "driver_version": driver,
        "cuda_driver_version": cuda,
        "devices": [
            {
                "name": d.name,
                "compute_capability": d.compute_capability,
                "memory_total_bytes": d.memory_total_bytes,
            }
            for d in ordered
        ],
        "count": len(ordered),
    }
    per_device = [{"pci_bus_id": d.bus_id, **d.observed} for d in ordered]
    return Finding(section, {**observed, "devices": per_device})


def _state(value: Any) -> str | None:
    """An NVML enable state (0/1) or an nvidia-smi word as ``enabled``/``disabled``."""
    if value is None:
        return None
    if isinstance(value, int):
        return "enabled" if value else "disabled"
    text = str(value).strip().lower()
    return None if text in ("", "n/a", "[n/a]", "not supported") else text


# -- NVML --------------------------------------------------------------------------


def normalise_nvml(raw: Mapping[str, Any]) -> Finding:
    """The finding for what :func:`nvml_raw` gathered (the shape of ``nvml.json``)."""
    devices = [_nvml_device(gpu) for gpu in raw.get("gpus", [])]
    return _assemble(
        "nvidia",
        raw.get("driver"),
        cuda_version_from_int(raw.get("cuda_driver_version")),
        devices,
        {"source": "nvml", "nvml_version": raw.get("nvml_version")},
    )


def _nvml_device(gpu: Mapping[str, Any]) -> _Device:
    cc = gpu.get("compute_capability")
    memory = gpu.get("memory_total")
    observed: dict[str, Any] = {
        "uuid": gpu.get("uuid"),
        "serial": gpu.get("serial"),
        "vbios": gpu.get("vbios"),
        "mig_mode": _state(gpu["mig_mode"][0]) if gpu.get("mig_mode") else None,
        "ecc": _state(gpu.get("ecc")),
        "persistence": _state(gpu.get("persistence")),
        "power_limit_mw": gpu.get("power_limit_mw"),
        "max_sm_clock_mhz": gpu.get("max_sm_clock"),
    }
    if memory is not None and memory % MIB:
        observed["memory_total_bytes_exact"] = memory
    return _Device(
        bus_id=normalise_bus_id(gpu.get("pci_bus_id")),
        name=gpu.get("name"),
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        memory_total_bytes=_mib_floor(memory) if memory is not None else None,
        observed=observed,
    )


def _text(value: Any) -> Any:
    # Older pynvml releases return bytes where newer ones return str.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def nvml_init() -> Any:
    """pynvml, initialised; :class:`NvmlUnavailable` with the reason when it cannot be."""
    try:
        import pynvml  # nvidia-ml-py: imported only once a GPU is plausibly present
    except ImportError as exc:
        raise NvmlUnavailable("pynvml (nvidia-ml-py) is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"nvmlInit failed: {exc}") from exc
    return pynvml


def nvml_raw() -> dict[str, Any]:
    """Ask NVML, in the shape of ``tests/testdata/gpu-h200-ubuntu24/nvml.json``.

    Raises :class:`NvmlUnavailable` when pynvml is missing or NVML refuses, so that the
    chain moves on to nvidia-smi with the reason noted.
    """
    pynvml = nvml_init()
    try:
        return _nvml_gather(pynvml)
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML query failed: {exc}") from exc
    finally:
        _optional(pynvml, "nvmlShutdown")


def _optional(nv: Any, name: str, *args: Any) -> Any:
    """``nv.<name>(*args)``, or ``None`` where this GPU or this pynvml lacks it."""
    fn = getattr(nv, name, None)
    if fn is None:
        return None
    try:
        return _text(fn(*args))
    except nv.NVMLError:
        return None


def _nvml_gather(nv: Any) -> dict[str, Any]:
    count = nv.nvmlDeviceGetCount()
    return {
        "driver": _text(nv.nvmlSystemGetDriverVersion()),
        "cuda_driver_version": _optional(nv, "nvmlSystemGetCudaDriverVersion"),
        "nvml_version": _optional(nv, "nvmlSystemGetNVMLVersion"),
        "count": count,
        "gpus": [_nvml_device_raw(nv, nv.nvmlDeviceGetHandleByIndex(i)) for i in range(count)],
    }


def _nvml_device_raw(nv: Any, handle: Any) -> dict[str, Any]:
    # Name, memory, compute capability and bus id are required: NVML failing on them
    # means the GPU is unwell, and the chain should try nvidia-smi. The rest is
    # optional, unsupported on some boards (no serial on GeForce, no MIG before A100).
    mig = _optional(nv, "nvmlDeviceGetMigMode", handle)
    ecc = _optional(nv, "nvmlDeviceGetEccMode", handle)
    return {
        "name": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": _optional(nv, "nvmlDeviceGetUUID", handle),
        "memory_total": int(nv.nvmlDeviceGetMemoryInfo(handle).total),
        "compute_capability": list(nv.nvmlDeviceGetCudaComputeCapability(handle)),
        "pci_bus_id": _text(nv.nvmlDeviceGetPciInfo(handle).busId),
        "vbios": _optional(nv, "nvmlDeviceGetVbiosVersion", handle),
        "serial": _optional(nv, "nvmlDeviceGetSerial", handle),
        "mig_mode": list(mig) if mig is not None else None,
        "ecc": ecc[0] if ecc is not None else None,
        "power_limit_mw": _optional(nv, "nvmlDeviceGetPowerManagementLimit", handle),
        "persistence": _optional(nv, "nvmlDeviceGetPersistenceMode", handle),
        "max_sm_clock": _optional(nv, "nvmlDeviceGetMaxClockInfo", handle, nv.NVML_CLOCK_SM),
    }


def nvidia_present() -> bool:
    """Whether this live machine plausibly has an NVIDIA GPU (the probe's two stat calls)."""
    import os

    return os.path.exists(_PROC_VERSION) or os.path.exists("/dev/nvidiactl")


def nvml_usage(nv: Any, handle: Any) -> dict[str, Any]:
    """What one device is doing now: utilisation, memory used, power and energy so far.

    Each reading is optional (``None`` where this board or driver lacks it): the total
    energy counter exists from Volta on, power readings not on every board.
    """
    rates = _optional(nv, "nvmlDeviceGetUtilizationRates", handle)
    memory = _optional(nv, "nvmlDeviceGetMemoryInfo", handle)
    return {
        "util_pct": getattr(rates, "gpu", None),
        "memory_util_pct": getattr(rates, "memory", None),
        "memory_used_bytes": int(memory.used) if memory is not None else None,
        "power_mw": _optional(nv, "nvmlDeviceGetPowerUsage", handle),
        "energy_mj": _optional(nv, "nvmlDeviceGetTotalEnergyConsumption", handle),
    }


class NvmlUsage:
    """NVML held open for a run, so that each sample costs only the device queries.

    :meth:`open` raises :class:`NvmlUnavailable` as :func:`nvml_raw` does; the devices
    are described (name, uuid, bus id) once, through the probe's own reading code.
    """

    def __init__(self) -> None:
        self._nv: Any = None
        self._handles: list[Any] = []
        self.devices: list[dict[str, Any]] = []

    def open(self) -> NvmlUsage:
        pynvml = nvml_init()
        self._nv = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            for index, handle in enumerate(self._handles):
                raw = _nvml_device_raw(pynvml, handle)
                self.devices.append({"index": index, "name": raw["name"], "uuid": raw["uuid"],
                                     "pci_bus_id": normalise_bus_id(raw["pci_bus_id"]),
                                     "memory_total_bytes": raw["memory_total"]})
        except pynvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML query failed: {exc}") from exc
        return self

    def sample(self) -> list[dict[str, Any]]:
        return [nvml_usage(self._nv, h) for h in self._handles]

    def close(self) -> None:
        if self._nv is not None:
            _optional(self._nv, "nvmlShutdown")
            self._nv = None


# -- nvidia-smi ----------------------------------------------------------------------


def parse_smi_csv(text: str | None) -> dict[str, dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=... --format=csv`` keyed by normalised bus id.

    Header names lose their unit (``memory.total [MiB]`` -> ``memory.total``); rows
    without a ``pci.bus_id`` column cannot be matched to the XML and are left out.
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return {}
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in lines[0].split(",")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        row = dict(zip(header, (v.strip() for v in line.split(",")), strict=False))
        bus = normalise_bus_id(row.get("pci.bus_id"))
        if bus:
            rows[bus] = row
    return rows


def parse_nvidia_smi(xml_text: str, query_csv: str | None = None) -> Finding:
    """The finding for ``nvidia-smi -q -x`` plus, for compute capability, :data:`SMI_QUERY`."""
    from xml.etree import ElementTree  # only paid for on machines with a GPU

    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise ProbeError(f"nvidia-smi -q -x: unreadable XML: {exc}") from exc
    caps = parse_smi_csv(query_csv)
    devices = [_smi_device(gpu, caps) for gpu in root.findall("gpu")]
    return _assemble(
        "nvidia",
        _smi_text(root, "driver_version"),
        _smi_text(root, "cuda_version"),
        devices,
        {"source": "nvidia-smi"},
    )


def _smi_text(node: Any, path: str) -> str | None:
    found = node.find(path)
    text = (found.text or "").strip() if found is not None else ""
    return None if text in ("", "N/A", "[N/A]") else text


def _smi_number(text: str | None, unit: str) -> float | None:
    match = re.fullmatch(rf"([0-9.]+)\s*{unit}", text or "")
    return float(match.group(1)) if match else None


def _smi_device(gpu: Any, caps: Mapping[str, Mapping[str, str]]) -> _Device:
    bus = normalise_bus_id(gpu.get("id") or _smi_text(gpu, "pci/pci_bus_id"))
    mib = _smi_number(_smi_text(gpu, "fb_memory_usage/total"), "MiB")
    watts = _smi_number(
        _smi_text(gpu, "gpu_power_readings/current_power_limit")
        or _smi_text(gpu, "power_readings/power_limit"),
        "W",
    )
    clock = _smi_number(_smi_text(gpu, "max_clocks/sm_clock"), "MHz")
    cap = caps.get(bus or "", {}).get("compute_cap")
    observed = {
        "uuid": _smi_text(gpu, "uuid"),
        "serial": _smi_text(gpu, "serial"),
        "vbios": _smi_text(gpu, "vbios_version"),
        "mig_mode": _state(_smi_text(gpu, "mig_mode/current_mig")),
        "ecc": _state(_smi_text(gpu, "ecc_mode/current_ecc")),
        "persistence": _state(_smi_text(gpu, "persistence_mode")),
        "power_limit_mw": round(watts * 1000) if watts is not None else None,
        "max_sm_clock_mhz": int(clock) if clock is not None else None,
    }
    return _Device(
        bus_id=bus,
        name=_smi_text(gpu, "product_name"),
        compute_capability=cap if cap and cap not in ("N/A", "[N/A]") else None,
        memory_total_bytes=int(mib) * MIB if mib is not None else None,
        observed=observed,
    )


# -- /proc -----------------------------------------------------------------------------


def parse_proc_version(text: str) -> str | None:
    """The driver version in ``/proc/driver/nvidia/version``.

    Proprietary: ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat ...``;
    open: ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release``.
    """
    match = re.search(r"^NVRM version:.*?Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text, re.M)
    return match.group(1) if match else None


def parse_proc_information(text: str) -> dict[str, str]:
    """``Key: value`` lines of ``/proc/driver/nvidia/gpus/<bus>/information``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_procfs(version_text: str, informations: Mapping[str, str]) -> Finding:
    """The finding from /proc: the driver and model names, but neither compute capability,
    memory size nor CUDA version, which stay ``null`` rather than being guessed."""
    devices = []
    for dirname, text in informations.items():
        info = parse_proc_information(text)
        devices.append(
            _Device(
                bus_id=normalise_bus_id(info.get("Bus Location") or dirname),
                name=info.get("Model"),
                compute_capability=None,
                memory_total_bytes=None,
                observed={"uuid": info.get("GPU UUID"), "vbios": info.get("Video BIOS")},
            )
        )
    return _assemble(
        "nvidia", parse_proc_version(version_text), None, devices, {"source": "procfs"}
    )


# -- AMD ---------------------------------------------------------------------------------

ROCM_SMI = (
    "rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion",
    "--showbus", "--json",
)  # fmt: skip


def _lookup(record: Mapping[str, Any], *names: str) -> Any:
    # rocm-smi has spelled its keys differently across releases ("Card series",
    # "Card Series"), so keys are matched without regard to case.
    lowered = {str(k).lower(): v for k, v in record.items()}
    for name in names:
        if lowered.get(name.lower()) not in (None, "", "N/A"):
            return lowered[name.lower()]
    return None


def parse_rocm_smi(text: str) -> Finding | None:
    """Best effort: the finding for :data:`ROCM_SMI` output, ``None`` if it has no cards.

    The key names follow rocm-smi's ``--json`` output as published by AMD and seen in
    the wild; no captured machine backs this parser yet, so it reads defensively.
    """
    start = text.find("{")  # rocm-smi may print warnings before its JSON
    try:
        doc = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError as exc:
        raise ProbeError(f"rocm-smi --json: unreadable output: {exc}") from exc
    if not isinstance(doc, dict):
        return None
    cards = {k: v for k, v in doc.items() if str(k).startswith("card") and isinstance(v, dict)}
    if not cards:
        return None
    system = doc.get("system")
    system = system if isinstance(system, dict) else {}
    driver = _lookup(system, "Driver version")
    devices = [_rocm_device(name, card) for name, card in cards.items()]
    driver = driver or next((_lookup(c, "Driver version") for c in cards.values()), None)
    return _assemble("amd", driver, None, devices, {"source": "rocm-smi"})


def _rocm_device(card_name: str, card: Mapping[str, Any]) -> _Device:
    memory = _lookup(card, "VRAM Total Memory (B)")
    bus = _lookup(card, "PCI Bus")
    return _Device(
        bus_id=normalise_bus_id(str(bus).split()[0]) if bus else None,
        name=_lookup(card, "Card Series", "Card SKU", "Card Model", "Device Name"),
        # The gfx target (gfx90a, gfx942) plays the part of NVIDIA's compute capability:
        # it is what kernels are compiled for.
        compute_capability=_lookup(card, "GFX Version"),
        memory_total_bytes=int(memory) if str(memory or "").isdigit() else None,
        observed={"card": card_name, "serial": _lookup(card, "Serial Number")},
    )


# -- the chain ---------------------------------------------------------------------------


def _nvidia_plausible(ctx: Context) -> bool:
    # Two stat calls: what a machine without an NVIDIA GPU pays for this probe.
    return ctx.exists(_PROC_VERSION) or ctx.exists("/dev/nvidiactl")


def _from_nvml(ctx: Context, notes: Notes) -> Finding | None:
    if not ctx.live or not _nvidia_plausible(ctx):
        return None
    try:
        raw = nvml_raw()
    except NvmlUnavailable as exc:
        notes["nvml"] = str(exc)
        return None
    return normalise_nvml(raw)


def _run_text(ctx: Context, argv: tuple[str, ...], notes: Notes, key: str) -> str | None:
    """Standard output of ``argv``, or ``None`` with the reason noted under ``key``."""
    result = ctx.run(argv)
    if result is None:
        notes[key] = f"{argv[0]} not found"
        return None
    if result.returncode != 0:
        first = (result.stdout.strip() or result.stderr.strip()).splitlines()[:1]
        notes[key] = f"exit {result.returncode}: {first[0] if first else ''}".strip()
        return None
    return result.stdout


def _from_nvidia_smi(ctx: Context, notes: Notes) -> Finding | None:
    if not ctx.live or not _nvidia_plausible(ctx):
        return None
    xml_text = _run_text(ctx, ("nvidia-smi", "-q", "-x"), notes, "nvidia-smi")
    if xml_text is None:
        return None
    query = _run_text(ctx, SMI_QUERY, notes, "nvidia-smi --query-gpu")
    return parse_nvidia_smi(xml_text, query)


def _from_procfs(ctx: Context, notes: Notes) -> Finding | None:
    version = ctx.read_text(_PROC_VERSION)
    if version is None:
        return None
    infos = {}
    for bus in ctx.listdir(_PROC_GPUS):
        text = ctx.read_text(f"{_PROC_GPUS}/{bus}/information")
        if text is not None:
            infos[bus] = text
    return parse_procfs(version, infos)


def _from_rocm_smi(ctx: Context, notes: Notes) -> Finding | None:
    if not ctx.live or not ctx.exists("/dev/kfd"):
        return None
    text = _run_text(ctx, ROCM_SMI, notes, "rocm-smi")
    return parse_rocm_smi(text) if text is not None else None


CHAIN: tuple[Callable[[Context, Notes], Finding | None], ...] = (
    _from_nvml,
    _from_nvidia_smi,
    _from_procfs,
    _from_rocm_smi,
)


def collect(ctx: Context) -> Finding:
    # Notes say why an applicable step stepped aside (pynvml missing, nvidia-smi
    # failing), so that a fallback answer never hides a broken first choice.
    notes: Notes = {}
    for step in CHAIN:
        found = step(ctx, notes)
        if found is not None:
            observed = {**found.observed, "skipped": notes} if notes else found.observed
            return Finding(found.section, observed)
    return Finding(None, {"skipped": notes} if notes else {})


PROBE = Probe(
    name="gpu",
    section="gpu",
    layer=PLATFORM,
    tags=frozenset({"gpu", "nvidia", "platform"}),
    collect=collect,
    reads_files=True,
)
