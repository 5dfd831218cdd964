"""The gpu probe against what a real H200 machine said through NVML, nvidia-smi and /proc."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest

from envcap.core.proc import Result
from envcap.probes import PLATFORM, Finding, gpu
from envcap.probes.context import Context

H200 = Path(__file__).resolve().parents[1] / "testdata" / "gpu-h200-ubuntu24"
FSTREE = H200 / "fstree"
MIB = 1024 * 1024


def _nvml() -> dict[str, Any]:
    return json.loads((H200 / "nvml.json").read_text())


def _xml() -> str:
    return (H200 / "nvidia-smi-q.xml").read_text()


def _smi_csv_text() -> str:
    return (H200 / "nvidia-smi.csv").read_text()


def _smi_rows() -> list[dict[str, str]]:
    """nvidia-smi.csv read with the csv module, independently of the probe's parser."""
    reader = csv.DictReader(_smi_csv_text().splitlines(), skipinitialspace=True)
    return [{k.strip(): v.strip() for k, v in row.items()} for row in reader]


class LiveFixture:
    """The fixture tree seen as a live machine whose programs print canned output."""

    def __init__(self, outputs: Mapping[tuple[str, ...], Result | None]) -> None:
        self._files = Context(FSTREE)
        self.live = True
        self.env: dict[str, str] = {}
        self.outputs = dict(outputs)
        self.calls: list[tuple[str, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._files, name)

    def run(self, argv: Any, timeout: float | None = None, **_: Any) -> Result | None:
        self.calls.append(tuple(argv))
        return self.outputs.get(tuple(argv))


def _smi_outputs() -> dict[tuple[str, ...], Result | None]:
    return {
        ("nvidia-smi", "-q", "-x"): Result(0, _xml(), ""),
        gpu.SMI_QUERY: Result(0, _smi_csv_text(), ""),
    }


def _nvml_fails(monkeypatch: pytest.MonkeyPatch, reason: str = "nvmlInit failed") -> None:
    def fail() -> dict[str, Any]:
        raise gpu.NvmlUnavailable(reason)

    monkeypatch.setattr(gpu, "nvml_raw", fail)


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _walk(item)]
    if isinstance(value, list):
        return [v for item in value for v in _walk(item)]
    return [value]


# -- the paths agree -----------------------------------------------------------------


def test_nvml_and_nvidia_smi_give_identical_sections() -> None:
    from_nvml = gpu.normalise_nvml(_nvml())
    from_smi = gpu.parse_nvidia_smi(_xml(), _smi_csv_text())
    assert from_nvml.section == from_smi.section
    assert from_nvml.section is not None


def test_section_matches_the_machines_own_tools() -> None:
    section = gpu.normalise_nvml(_nvml()).section
    assert section is not None
    (row,) = _smi_rows()
    raw = _nvml()
    assert section["vendor"] == "nvidia"
    assert section["driver_version"] == row["driver_version"] == raw["driver"]
    assert section["count"] == raw["count"] == len(_smi_rows())
    (device,) = section["devices"]
    assert device["name"] == row["name"]
    assert device["compute_capability"] == row["compute_cap"]
    assert device["memory_total_bytes"] == raw["gpus"][0]["memory_total"]


def test_cuda_driver_version_agrees_with_nvidia_smi_xml() -> None:
    import xml.etree.ElementTree as ET

    printed = ET.fromstring(_xml()).findtext("cuda_version")
    section = gpu.normalise_nvml(_nvml()).section
    assert section is not None and section["cuda_driver_version"] == printed
    assert gpu.cuda_version_from_int(12020) == "12.2"
    assert gpu.cuda_version_from_int(None) is None


def test_nvidia_smi_mib_times_mib_is_nvmls_byte_count_exactly() -> None:
    # The finding behind _mib_floor: on this machine no rounding is involved.
    (row,) = _smi_rows()
    mib = int(row["memory.total [MiB]"].split()[0])
    assert mib * MIB == _nvml()["gpus"][0]["memory_total"]


def test_nvml_bytes_off_a_mib_boundary_are_recorded_at_mib_granularity() -> None:
    raw = _nvml()
    exact = raw["gpus"][0]["memory_total"] + 12345
    raw["gpus"][0]["memory_total"] = exact
    finding = gpu.normalise_nvml(raw)
    assert finding.section is not None
    assert finding.section["devices"][0]["memory_total_bytes"] == exact - exact % MIB
    assert finding.observed["devices"][0]["memory_total_bytes_exact"] == exact


def test_observations_agree_between_nvml_and_nvidia_smi() -> None:
    from_nvml = gpu.normalise_nvml(_nvml()).observed["devices"]
    from_smi = gpu.parse_nvidia_smi(_xml(), _smi_csv_text()).observed["devices"]
    assert from_nvml == from_smi
    (row,) = _smi_rows()
    assert from_nvml[0]["uuid"] == row["uuid"]
    assert from_nvml[0]["serial"] == row["serial"]
    assert from_nvml[0]["pci_bus_id"] == gpu.normalise_bus_id(row["pci.bus_id"])


def test_per_host_facts_stay_out_of_the_section() -> None:
    finding = gpu.normalise_nvml(_nvml())
    text = json.dumps(finding.section)
    (row,) = _smi_rows()
    for value in (row["uuid"], row["serial"], row["pci.bus_id"], row["vbios_version"]):
        assert value not in text
    assert "source" not in finding.section  # type: ignore[operator]
    assert finding.observed["source"] == "nvml"


@pytest.mark.parametrize("source", ["nvml", "nvidia-smi", "procfs"])
def test_sections_hold_no_floats(source: str) -> None:
    finding = {
        "nvml": lambda: gpu.normalise_nvml(_nvml()),
        "nvidia-smi": lambda: gpu.parse_nvidia_smi(_xml(), _smi_csv_text()),
        "procfs": lambda: gpu.collect(Context(FSTREE)),
    }[source]()
    assert not any(isinstance(v, float) for v in _walk(finding.section))


def test_xml_alone_does_not_know_compute_capability() -> None:
    # nvidia-smi -q -x carries no compute capability; without the CSV query it stays null
    # rather than being guessed from the architecture name.
    section = gpu.parse_nvidia_smi(_xml(), None).section
    assert section["devices"][0]["compute_capability"] is None  # type: ignore[index]


def test_bus_ids_of_every_spelling_normalise_alike() -> None:
    assert gpu.normalise_bus_id("00000000:00:06.0") == gpu.normalise_bus_id("0000:00:06.0")
    assert gpu.normalise_bus_id("00000000:1A:00.0") == "0000:1a:00.0"


def test_devices_are_sorted_by_bus_id() -> None:
    raw = _nvml()
    first = dict(raw["gpus"][0], pci_bus_id="00000000:1B:00.0", name="B")
    second = dict(raw["gpus"][0], pci_bus_id="00000000:0A:00.0", name="A")
    finding = gpu.normalise_nvml(dict(raw, gpus=[first, second], count=2))
    assert [d["name"] for d in finding.section["devices"]] == ["A", "B"]  # type: ignore[index]
    buses = [d["pci_bus_id"] for d in finding.observed["devices"]]
    assert buses == ["0000:0a:00.0", "0000:1b:00.0"]


# -- /proc ---------------------------------------------------------------------------


def test_procfs_under_root_reads_driver_and_model() -> None:
    finding = gpu.collect(Context(FSTREE))
    (row,) = _smi_rows()
    assert finding.section == {
        "vendor": "nvidia",
        "driver_version": row["driver_version"],
        "cuda_driver_version": None,
        "devices": [{"name": row["name"], "compute_capability": None, "memory_total_bytes": None}],
        "count": 1,
    }
    assert finding.observed["source"] == "procfs"
    assert finding.observed["devices"][0]["pci_bus_id"] == gpu.normalise_bus_id(row["pci.bus_id"])


def test_proc_version_of_the_proprietary_module() -> None:
    text = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05"
        "  Sat Aug 19 01:15:15 UTC 2023\n"
    )
    assert gpu.parse_proc_version(text) == "535.104.05"


def test_under_root_nothing_is_run_and_nvml_is_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> dict[str, Any]:
        raise AssertionError("NVML must not be tried for a file tree")

    monkeypatch.setattr(gpu, "nvml_raw", boom)
    assert gpu.collect(Context(FSTREE)).observed["source"] == "procfs"


# -- the chain -----------------------------------------------------------------------


def test_live_nvml_answers_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "nvml_raw", _nvml)
    ctx = LiveFixture(_smi_outputs())
    finding = gpu.collect(ctx)  # type: ignore[arg-type]
    assert finding.observed["source"] == "nvml"
    assert "skipped" not in finding.observed
    assert ctx.calls == []


def test_without_nvml_nvidia_smi_answers_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    _nvml_fails(monkeypatch, "pynvml (nvidia-ml-py) is not installed")
    finding = gpu.collect(LiveFixture(_smi_outputs()))  # type: ignore[arg-type]
    assert finding.observed["source"] == "nvidia-smi"
    assert finding.observed["skipped"] == {"nvml": "pynvml (nvidia-ml-py) is not installed"}
    assert finding.section == gpu.normalise_nvml(_nvml()).section


def test_failing_nvidia_smi_falls_back_to_procfs_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _nvml_fails(monkeypatch)
    failing = Result(9, "NVIDIA-SMI has failed because it couldn't communicate with the driver", "")
    ctx = LiveFixture({("nvidia-smi", "-q", "-x"): failing})
    finding = gpu.collect(ctx)  # type: ignore[arg-type]
    assert finding.observed["source"] == "procfs"
    assert set(finding.observed["skipped"]) == {"nvml", "nvidia-smi"}
    assert "exit 9" in finding.observed["skipped"]["nvidia-smi"]


def test_missing_nvidia_smi_falls_back_to_procfs(monkeypatch: pytest.MonkeyPatch) -> None:
    _nvml_fails(monkeypatch)
    finding = gpu.collect(LiveFixture({}))  # type: ignore[arg-type]
    assert finding.observed["source"] == "procfs"
    assert finding.observed["skipped"]["nvidia-smi"] == "nvidia-smi not found"


def test_missing_pynvml_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with pytest.raises(gpu.NvmlUnavailable, match="not installed"):
        gpu.nvml_raw()


def test_unreadable_xml_is_an_error_naming_its_source() -> None:
    with pytest.raises(Exception, match="nvidia-smi -q -x"):
        gpu.parse_nvidia_smi("<nvidia_smi_log><gpu>", None)


def test_no_gpu_is_quiet(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    assert gpu.collect(Context(tmp_path)) == Finding(None, {})


def test_no_gpu_live_costs_no_pynvml_import(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has an NVIDIA driver")
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    ctx = Context("/")
    if ctx.exists("/dev/kfd"):
        pytest.skip("this machine has an AMD GPU")
    assert gpu.collect(ctx).section is None
    assert "pynvml" not in sys.modules


# -- AMD -----------------------------------------------------------------------------

# The shape of `rocm-smi --showproductname --showmeminfo vram --showdriverversion
# --showbus --json` as rocm-smi documents it; hand-written, not captured from a machine.
ROCM_SAMPLE = json.dumps(
    {
        "card1": {
            "Card Series": "AMD Instinct MI250X",
            "GFX Version": "gfx90a",
            "PCI Bus": "0000:D1:00.0",
            "VRAM Total Memory (B)": "68702699520",
            "Serial Number": "PCB0123",
        },
        "card0": {
            "Card series": "AMD Instinct MI250X",
            "GFX Version": "gfx90a",
            "PCI Bus": "0000:C1:00.0",
            "VRAM Total Memory (B)": "68702699520",
        },
        "system": {"Driver version": "6.7.0"},
    }
)


def test_rocm_smi_json_is_read_best_effort() -> None:
    finding = gpu.parse_rocm_smi("WARNING: some notice\n" + ROCM_SAMPLE)
    assert finding is not None
    assert finding.section == {
        "vendor": "amd",
        "driver_version": "6.7.0",
        "cuda_driver_version": None,
        "devices": [
            {"name": "AMD Instinct MI250X", "compute_capability": "gfx90a",
             "memory_total_bytes": 68702699520},
        ] * 2,
        "count": 2,
    }
    assert [d["card"] for d in finding.observed["devices"]] == ["card0", "card1"]


def test_rocm_smi_is_not_run_without_dev_kfd(monkeypatch: pytest.MonkeyPatch) -> None:
    _nvml_fails(monkeypatch)
    ctx = LiveFixture({})
    gpu.collect(ctx)  # type: ignore[arg-type]
    assert not any(call[0] == "rocm-smi" for call in ctx.calls)


def test_probe_registration() -> None:
    assert gpu.PROBE.name == gpu.PROBE.section == "gpu"
    assert gpu.PROBE.layer == PLATFORM
    assert gpu.PROBE.tags == {"gpu", "nvidia", "platform"}
    assert gpu.PROBE.reads_files


# -- a second real machine: the H100 read by scripts/device_check.sh -------------------

H100 = Path(__file__).resolve().parents[1] / "testdata" / "gpu-h100-device"


def test_h100_nvml_agrees_with_that_machines_nvidia_smi() -> None:
    from_nvml = gpu.normalise_nvml(json.loads((H100 / "nvml.json").read_text())).section
    from_xml = gpu.parse_nvidia_smi((H100 / "nvidia-smi-q.xml").read_text()).section
    rows = list(csv.DictReader((H100 / "smi.csv").read_text().splitlines(), skipinitialspace=True))
    assert from_nvml is not None and from_xml is not None and len(rows) == 1
    row = rows[0]
    device = from_nvml["devices"][0]
    assert device["name"] == row["name"] == "NVIDIA H100 80GB HBM3"
    assert device["compute_capability"] == row["compute_cap"] == "9.0"
    assert device["memory_total_bytes"] == int(row["memory.total [MiB]"].split()[0]) * MIB
    assert from_nvml["driver_version"] == row["driver_version"]
    # The XML has no compute capability; everything else is the same section.
    assert from_xml["devices"][0]["compute_capability"] is None
    from_xml["devices"][0]["compute_capability"] = device["compute_capability"]
    assert from_xml == from_nvml
