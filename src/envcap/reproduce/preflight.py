"""GPU pre-flight: can this host's driver run the CUDA version in the run's image?

A run needs GPUs when the machine it was recorded on had NVIDIA GPUs and its
environment holds CUDA (a toolkit, or CUDA runtime libraries such as a torch wheel's).
The image's CUDA version is the toolkit's, else the runtime library's major.minor. The
host's is the newest CUDA its driver supports, as NVML or ``nvidia-smi`` report it, or,
when only ``/proc/driver/nvidia`` answers, as NVIDIA's table of minimum driver
versions gives it for the driver's branch.

The driver must support at least the image's CUDA version. Within one major version,
CUDA 11 and later run on an older minor driver ("minor version compatibility"), with
features that need the newer driver failing at run time: allowed, and said. An older
major version is refused, naming both versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.manifest import Manifest
from .errors import PreflightError

# The oldest Linux driver branch of each CUDA release (CUDA Toolkit release notes,
# table 3: "CUDA Toolkit and Corresponding Driver Versions"), newest first.
DRIVER_BRANCHES: tuple[tuple[int, str], ...] = (
    (580, "13.0"), (575, "12.9"), (570, "12.8"), (560, "12.6"), (555, "12.5"), (550, "12.4"), (545, "12.3"),
    (535, "12.2"), (530, "12.1"), (525, "12.0"), (520, "11.8"), (515, "11.7"), (510, "11.6"), (495, "11.5"),
    (470, "11.4"), (465, "11.3"), (460, "11.2"), (455, "11.1"), (450, "11.0"), (440, "10.2"), (418, "10.1"),
    (410, "10.0"),
)


def _version(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = str(text).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def cuda_for_driver(driver: str | None) -> str | None:
    """The newest CUDA a driver version supports, by its branch (``580.159.04`` → ``13.0``)."""
    try:
        branch = int(str(driver).split(".")[0])
    except ValueError:
        return None
    for oldest, cuda in DRIVER_BRANCHES:
        if branch >= oldest:
            return cuda
    return None


@dataclass(frozen=True, slots=True)
class GpuFacts:
    vendor: str | None
    driver: str | None
    cuda: str | None  # the newest CUDA the driver supports
    cuda_from: str  # "driver" (NVML or nvidia-smi said so) or "branch table"
    models: tuple[str, ...]

    @classmethod
    def of(cls, section: Any) -> GpuFacts | None:
        if not isinstance(section, Mapping) or not section.get("count"):
            return None
        driver = section.get("driver_version")
        cuda = section.get("cuda_driver_version")
        how = "driver"
        if not cuda:
            cuda, how = cuda_for_driver(driver), "branch table"
        models = tuple(str(d.get("name")) for d in section.get("devices") or () if isinstance(d, Mapping))
        return cls(section.get("vendor"), driver, cuda, how, models)

    def text(self) -> str:
        names = ", ".join(sorted(set(self.models))) or "GPU"
        count = len(self.models)
        return (f"{count} × {names}" if count > 1 else names) + f", driver {self.driver or 'unknown'}" + \
            (f" (CUDA {self.cuda})" if self.cuda else "")

    def to_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "driver": self.driver, "cuda": self.cuda, "cuda_from": self.cuda_from,
                "models": list(self.models)}


def image_cuda(manifest: Manifest) -> str | None:
    """The CUDA version of the run's environment (and so of its image), major.minor."""
    cuda = manifest.sections.get("cuda")
    if not isinstance(cuda, Mapping):
        return None
    for key in ("version", "cudart_version"):
        v = _version(cuda.get(key))
        if v is not None:
            return f"{v[0]}.{v[1]}"
    return None


def host_gpu_section() -> Any:
    """This machine's GPU section, as the gpu probe reads it (None without GPUs)."""
    from ..probes import gpu
    from ..probes.context import Context

    try:
        return gpu.collect(Context()).section
    except Exception:  # noqa: BLE001 - a GPU that cannot be read is, for this check, no GPU
        return None


@dataclass(frozen=True, slots=True)
class Preflight:
    gpu_run: bool  # the run needs GPUs
    use_gpus: bool  # the container gets this host's GPUs
    image_cuda: str | None
    original: GpuFacts | None
    host: GpuFacts | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_run": self.gpu_run, "use_gpus": self.use_gpus, "image_cuda": self.image_cuda,
                "original": self.original.to_dict() if self.original else None,
                "host": self.host.to_dict() if self.host else None, "notes": list(self.notes)}


def check(manifest: Manifest, host_section: Any, *, no_gpu: bool = False) -> Preflight:
    """Whether the host can run the image as the run needs; refuse (naming both versions) if not."""
    original = GpuFacts.of(manifest.sections.get("gpu"))
    host = GpuFacts.of(host_section)
    cuda = image_cuda(manifest)
    nvidia = original is not None and original.vendor == "nvidia"
    if not nvidia:
        skipped = () if original is None else (f"the run's {original.vendor} GPUs are not checked; none are given",)
        return Preflight(False, False, cuda, original, host, skipped)
    assert original is not None
    if cuda is None:
        return Preflight(False, False, None, original, host,
                         ((f"the run's machine had {original.text()}, but its environment holds no CUDA: "
                           "run without GPUs"),))
    if no_gpu:
        return Preflight(True, False, cuda, original, host,
                         ((f"--no-gpu: the run had {original.text()}; it runs on the CPU here, and its results "
                           "may differ"),))
    if host is None or host.vendor != "nvidia":
        raise PreflightError(f"the run used {original.text()} and its image needs CUDA {cuda}, but this host has "
                             "no NVIDIA GPU: rebuild it on a GPU host, or pass --no-gpu to run it on the CPU "
                             "(results may differ)")
    need, have = _version(cuda), _version(host.cuda)
    if have is None:
        raise PreflightError(f"this host's NVIDIA driver {host.driver} does not say which CUDA it supports, and "
                             f"the image needs CUDA {cuda}: check the driver (nvidia-smi)")
    assert need is not None
    notes: list[str] = []
    if have < need:
        if have[0] < need[0] or need[0] < 11:
            raise PreflightError(f"this host's NVIDIA driver {host.driver} supports CUDA up to {host.cuda}, and "
                                 f"the run's image needs CUDA {cuda}: install a driver for CUDA {cuda} or newer "
                                 f"(the run was recorded with driver {original.driver or 'unknown'})")
        notes.append(f"this host's driver {host.driver} supports CUDA {host.cuda}, older than the image's {cuda}: "
                     "it runs through CUDA's minor version compatibility, and features that need the newer "
                     "driver fail")
    if host.models != original.models or host.driver != original.driver:
        notes.append(f"platform: the run had {original.text()}; this host has {host.text()}")
    return Preflight(True, True, cuda, original, host, tuple(notes))
