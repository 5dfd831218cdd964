"""GPU pre-flight against what real machines reported: the H200's environment (CUDA 13.0,
torch cu130) rebuilt on the H100 device machine, and on drivers that cannot run it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from envcap.capture.collect import snapshot
from envcap.core.manifest import Manifest
from envcap.probes import gpu
from envcap.reproduce import preflight
from envcap.reproduce.errors import PreflightError

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
H200 = TESTDATA / "gpu-h200-ubuntu24"
H100 = TESTDATA / "gpu-h100-device"


@pytest.fixture(scope="module")
def h200() -> Manifest:
    """The H200 machine's manifest, captured from its file tree as `envcap snapshot --root`."""
    return snapshot(root=H200 / "fstree")


def h100_host(**changes: Any) -> Any:
    """The H100 device machine's GPU section, from what NVML returned there."""
    raw = json.loads((H100 / "nvml.json").read_text())
    raw.update(changes)
    return gpu.normalise_nvml(raw).section


def _xml_value(path: Path, tag: str) -> str:
    match = re.search(rf"<{tag}>([^<]+)</{tag}>", path.read_text())
    assert match
    return match.group(1)


def with_sections(m: Manifest, **sections: Any) -> Manifest:
    data = {k: copy.deepcopy(v) for k, v in m.sections.items()}
    layers = {k: list(v) for k, v in m.layers.items()}
    for name, value in sections.items():
        if value is None:
            data.pop(name, None)
            for names in layers.values():
                if name in names:
                    names.remove(name)
        else:
            data[name] = value
    return Manifest.create(data, layers)


def test_image_cuda_is_the_toolkit_of_the_h200_environment(h200: Manifest) -> None:
    assert preflight.image_cuda(h200) == "13.0"
    # Without a toolkit, the CUDA runtime library a wheel brought (13.0.96) says it.
    cuda = dict(h200.sections["cuda"], version=None)
    assert preflight.image_cuda(with_sections(h200, cuda=cuda)) == "13.0"


def test_driver_branch_table_agrees_with_nvidia_smi_on_both_machines(h200: Manifest) -> None:
    # /proc/driver/nvidia (what --root reads) gives the driver but not its CUDA version.
    facts = preflight.GpuFacts.of(h200.sections["gpu"])
    assert facts is not None and facts.cuda_from == "branch table"
    for machine in (H200, H100):
        xml = machine / "nvidia-smi-q.xml"
        assert preflight.cuda_for_driver(_xml_value(xml, "driver_version")) == _xml_value(xml, "cuda_version")


def test_h200_run_on_the_h100_machine_gets_the_gpus(h200: Manifest) -> None:
    result = preflight.check(h200, h100_host())
    assert result.gpu_run and result.use_gpus
    assert result.image_cuda == "13.0" and result.host is not None and result.host.cuda == "13.0"
    assert result.host.cuda_from == "driver"
    # The GPU model differs: a platform difference, said as such, not a refusal.
    assert any("platform" in n and "NVIDIA H200" in n and "NVIDIA H100 80GB HBM3" in n for n in result.notes)


def test_an_older_major_cuda_driver_is_refused_naming_both_versions(h200: Manifest) -> None:
    host = h100_host(driver="535.104.05", cuda_driver_version=12020)
    with pytest.raises(PreflightError) as err:
        preflight.check(h200, host)
    text = str(err.value)
    assert "535.104.05" in text and "CUDA up to 12.2" in text and "needs CUDA 13.0" in text


def test_an_older_minor_driver_runs_with_a_note(h200: Manifest) -> None:
    cuda = dict(h200.sections["cuda"], version="13.1")
    result = preflight.check(with_sections(h200, cuda=cuda), h100_host())
    assert result.use_gpus
    assert any("minor version compatibility" in n and "13.0" in n and "13.1" in n for n in result.notes)


def test_a_driver_known_only_from_procfs_is_checked_by_its_branch(h200: Manifest) -> None:
    # The H200's own GPU section, as /proc gave it: no CUDA version, driver 580.
    result = preflight.check(h200, h200.sections["gpu"])
    assert result.use_gpus and result.host is not None and result.host.cuda == "13.0"
    old = dict(h200.sections["gpu"], driver_version="470.256.02")
    with pytest.raises(PreflightError, match=r"470\.256\.02 supports CUDA up to 11\.4.*needs CUDA 13\.0"):
        preflight.check(h200, old)


def test_no_gpu_here_refuses_unless_told_to_run_on_the_cpu(h200: Manifest) -> None:
    with pytest.raises(PreflightError, match="no NVIDIA GPU.*--no-gpu"):
        preflight.check(h200, None)
    result = preflight.check(h200, None, no_gpu=True)
    assert result.gpu_run and not result.use_gpus
    assert any("--no-gpu" in n for n in result.notes)


def test_runs_without_gpus_or_without_cuda_need_none(h200: Manifest) -> None:
    cpu_only = with_sections(h200, gpu=None, cuda=None)
    assert not preflight.check(cpu_only, None).gpu_run
    # The machine had GPUs, but the environment holds no CUDA: nothing to give.
    no_cuda = with_sections(h200, cuda=None)
    result = preflight.check(no_cuda, None)
    assert not result.gpu_run and not result.use_gpus
    assert "holds no CUDA" in result.notes[0]


def test_gpu_runs_get_the_gpus_from_docker() -> None:
    pytest.importorskip("docker")
    from envcap.engines.docker import docker_create_kwargs
    from envcap.engines.spec import ContainerSpec

    spec = ContainerSpec(image="r/x@sha256:" + "0" * 64, argv=("python", "t.py"), workdir="/w", gpus=True)
    kwargs = docker_create_kwargs(spec, ["python", "t.py"], {})
    request = kwargs["device_requests"][0]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert kwargs["network_mode"] == "host"
    cpu = docker_create_kwargs(ContainerSpec(image=spec.image, argv=spec.argv, workdir="/w"), ["python"], {})
    assert cpu["device_requests"] is None
