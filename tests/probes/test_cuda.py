"""The cuda probe against the H200 machine's file tree and its own record of itself."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import pytest

from envcap.core.proc import Result
from envcap.probes import SOFTWARE, Finding, cuda
from envcap.probes.context import Context

H200 = Path(__file__).resolve().parents[1] / "testdata" / "gpu-h200-ubuntu24"
FSTREE = H200 / "fstree"
META = FSTREE / "_meta"
SITE = "/opt/torch/.venv/lib/python3.12/site-packages"


def _env() -> dict[str, str]:
    """The CUDA image's environment as recorded on the machine."""
    lines = (META / "env-allowlisted.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _deb(version: str) -> str:
    """A Debian package version without its revision: 9.14.0.64-1 -> 9.14.0.64."""
    return version.rsplit("-", 1)[0]


def _pip() -> dict[str, str]:
    lines = (H200 / "pip-freeze.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line)


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _walk(item)]
    if isinstance(value, list):
        return [v for item in value for v in _walk(item)]
    return [value]


def _copies(section: Mapping[str, Any], library: str, source: str) -> list[dict[str, str]]:
    return [c for c in section["libraries"][library] if c["source"] == source]


@pytest.fixture(scope="module")
def h200() -> Finding:
    return cuda.collect(Context(FSTREE))


# -- the toolkit ---------------------------------------------------------------------


def test_toolkit_is_the_resolved_cuda_link(h200: Finding) -> None:
    target = os.readlink(FSTREE / "usr/local/cuda")
    assert h200.section is not None
    assert h200.section["toolkit_path"] == f"/usr/local/{target}"


def test_toolkit_version_agrees_with_nvcc(h200: Finding) -> None:
    release = re.search(r"release (\d+\.\d+),", (META / "nvcc-version.txt").read_text())
    assert release is not None
    assert h200.section["version"] == release.group(1)  # type: ignore[index]
    assert h200.section["version_full"] is None  # type: ignore[index]
    assert h200.observed["version_source"] == "directory name"


def test_nvcc_is_not_run_for_a_file_tree(h200: Finding) -> None:
    assert h200.section["nvcc_version"] is None  # type: ignore[index]


def test_nvcc_version_on_a_live_machine() -> None:
    nvcc = (META / "nvcc-version.txt").read_text()
    assert cuda.parse_nvcc_version(nvcc) == "13.0.88"  # the README's "nvcc 13.0.88"


# -- libraries: every copy, checked against the machine's package records ----------------


def test_toolkit_cudart_and_cublas_match_the_installed_packages(h200: Finding) -> None:
    env = _env()
    (cudart,) = _copies(h200.section, "cudart", "toolkit")  # type: ignore[arg-type]
    (cublas,) = _copies(h200.section, "cublas", "toolkit")  # type: ignore[arg-type]
    assert cudart["version"] == _deb(env["NV_CUDA_CUDART_VERSION"])
    assert cublas["version"] == _deb(env["NV_LIBCUBLAS_VERSION"])
    assert cudart["path"] == "/usr/local/cuda-13.0/lib64/libcudart.so." + cudart["version"]


def test_system_cudnn_and_nccl_match_the_installed_packages(h200: Finding) -> None:
    env = _env()
    (cudnn,) = _copies(h200.section, "cudnn", "system")  # type: ignore[arg-type]
    (nccl,) = _copies(h200.section, "nccl", "system")  # type: ignore[arg-type]
    # The library file is named with three parts; the package version has four.
    assert _deb(env["NV_CUDNN_VERSION"]).startswith(cudnn["version"] + ".")
    assert nccl["version"] == _deb(env["NCCL_VERSION"])
    assert cudnn["path"] == "/usr/lib/x86_64-linux-gnu/libcudnn.so." + cudnn["version"]


def test_wheel_copies_match_pip_freeze(h200: Finding) -> None:
    pip = _pip()
    wheels = {
        "cudart": "nvidia-cuda-runtime",
        "cublas": "nvidia-cublas",
        "cudnn": "nvidia-cudnn-cu13",
        "nccl": "nvidia-nccl-cu13",
    }
    for library, dist in wheels.items():
        (copy,) = _copies(h200.section, library, "wheel")  # type: ignore[arg-type]
        assert copy["version"] == pip[dist], library
        assert copy["path"].startswith(SITE + "/nvidia_")


def test_convenience_keys_name_the_copy_pytorch_loaded(h200: Finding) -> None:
    maps = (META / "torch-cuda-maps.txt").read_text()
    loaded = {
        lib: re.search(rf"(\S+/lib{lib}\.so\.\d+)$", maps, re.M)
        for lib in ("cudnn", "nccl", "cudart")
    }
    for lib, match in loaded.items():
        assert match is not None and match.group(1).startswith(SITE + "/nvidia/"), lib
    # env.txt's "## torch" section is torch's own account: torch.__version__,
    # torch.version.cuda, torch.backends.cudnn.version(), device name, capability.
    torch_line = (H200 / "env.txt").read_text().split("## torch\n", 1)[1].splitlines()[0]
    cudnn_int = int(torch_line.split()[2])
    major, minor, patch = cudnn_int // 10000, cudnn_int % 10000 // 100, cudnn_int % 100
    section = h200.section
    assert section is not None
    assert section["cudnn_version"].startswith(f"{major}.{minor}.{patch}")
    assert section["nccl_version"] == _pip()["nvidia-nccl-cu13"]
    for lib in cuda.LIBRARIES:
        assert section[f"{lib}_version"] == section["libraries"][lib][0]["version"]
        assert section["libraries"][lib][0]["source"] == "wheel"


def test_every_library_key_is_present_and_no_floats(h200: Finding) -> None:
    section = h200.section
    assert section is not None
    assert set(section["libraries"]) == set(cuda.LIBRARIES)
    assert section["rocm_version"] is None
    assert not any(isinstance(v, float) for v in _walk(section))


def test_a_tree_without_cuda_gives_no_section(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libc.so.6").touch()
    (tmp_path / "usr/lib/python3.12/site-packages/numpy-2.0.0.dist-info").mkdir(parents=True)
    assert cuda.collect(Context(tmp_path)) == Finding(None)


# -- other layouts (built here, following the real layouts they name) ---------------------


def _toolkit(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "usr/local" / name
    (root / "lib64").mkdir(parents=True)
    (tmp_path / "usr/local/cuda").symlink_to(name)
    return root


def test_version_json_wins_over_the_directory_name(tmp_path: Path) -> None:
    root = _toolkit(tmp_path, "cuda-12.4")
    doc = {"cuda": {"name": "CUDA SDK", "version": "12.4.1"}, "cuda_nvcc": {"version": "12.4.131"}}
    (root / "version.json").write_text(json.dumps(doc))
    finding = cuda.collect(Context(tmp_path))
    assert finding.section is not None
    assert (finding.section["version"], finding.section["version_full"]) == ("12.4", "12.4.1")
    assert finding.section["nvcc_version"] == "12.4.131"


def test_version_txt_of_old_toolkits(tmp_path: Path) -> None:
    root = _toolkit(tmp_path, "cuda-10.2")
    (root / "version.txt").write_text("CUDA Version 10.2.89\n")
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None
    assert (section["version"], section["version_full"]) == ("10.2", "10.2.89")


def test_cudart_file_name_when_nothing_else_says(tmp_path: Path) -> None:
    root = tmp_path / "opt/cuda"
    (root / "lib64").mkdir(parents=True)
    (root / "lib64/libcudart.so.12.8.90").touch()
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None
    assert (section["version"], section["cudart_version"]) == ("12.8", "12.8.90")
    assert section["libraries"]["cudart"][0]["source"] == "toolkit"


def test_cudnn_header_when_library_names_carry_no_version(tmp_path: Path) -> None:
    include = tmp_path / "usr/include/x86_64-linux-gnu"
    include.mkdir(parents=True)
    (include / "cudnn_version_v8.h").write_text(
        "#define CUDNN_MAJOR 8\n#define CUDNN_MINOR 9\n#define CUDNN_PATCHLEVEL 7\n"
    )
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None and section["cudnn_version"] == "8.9.7"


def test_aarch64_and_merged_usr_are_read_once(tmp_path: Path) -> None:
    libdir = tmp_path / "usr/lib/aarch64-linux-gnu"
    libdir.mkdir(parents=True)
    (libdir / "libnccl.so.2.18.1").touch()
    (tmp_path / "lib").symlink_to("usr/lib")
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None
    path = "/usr/lib/aarch64-linux-gnu/libnccl.so.2.18.1"
    assert section["libraries"]["nccl"] == [{"version": "2.18.1", "path": path, "source": "system"}]


def test_cu12_wheel_names(tmp_path: Path) -> None:
    site = tmp_path / "usr/local/lib/python3.10/dist-packages"
    (site / "nvidia_cudnn_cu12-8.9.2.26.dist-info").mkdir(parents=True)
    (site / "nvidia_cuda_runtime_cu12-12.1.105.dist-info").mkdir()
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None
    assert (section["cudnn_version"], section["cudart_version"]) == ("8.9.2.26", "12.1.105")
    assert section["toolkit_path"] is None and section["version"] is None


def test_rocm_alone_gives_a_section(tmp_path: Path) -> None:
    info = tmp_path / "opt/rocm-6.2.0/.info"
    info.mkdir(parents=True)
    (info / "version").write_text("6.2.0-66\n")
    (tmp_path / "opt/rocm").symlink_to("rocm-6.2.0")
    finding = cuda.collect(Context(tmp_path))
    assert finding.section is not None
    assert finding.section["rocm_version"] == "6.2.0-66"
    assert finding.observed["rocm_path"] == "/opt/rocm-6.2.0"


def test_precedence_orders_wheel_toolkit_system() -> None:
    copies = [
        cuda.Copy("nccl", "2.1.0", "/usr/lib/libnccl.so.2.1.0", "system"),
        cuda.Copy("nccl", "2.2.0", "/usr/local/cuda/lib64/libnccl.so.2.2.0", "toolkit"),
        cuda.Copy("nccl", "2.3.0", "/site/nvidia_nccl_cu12-2.3.0.dist-info", "wheel"),
    ]
    assert [c["source"] for c in cuda.group(copies)["nccl"]] == ["wheel", "toolkit", "system"]


# -- live ---------------------------------------------------------------------------------


class LiveFixture:
    """The fixture tree seen as a live machine whose programs print canned output."""

    def __init__(self, outputs: Mapping[tuple[str, ...], Result], extra: set[str]) -> None:
        self._files = Context(FSTREE)
        self.extra = extra  # paths the tree lacks but the live machine had
        self.live = True
        self.env = {"CUDA_HOME": "/usr/local/cuda", "VIRTUAL_ENV": "/opt/torch/.venv"}
        self.python = None
        self.conda_prefix = None
        self.outputs = dict(outputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._files, name)

    def exists(self, path: str) -> bool:
        return path in self.extra or self._files.exists(path)

    def run(self, argv: Any, timeout: float | None = None, **_: Any) -> Result | None:
        return self.outputs.get(tuple(argv))


def test_live_run_adds_nvcc_and_otherwise_agrees_with_the_tree(h200: Finding) -> None:
    nvcc = (META / "nvcc-version.txt").read_text()
    binary = "/usr/local/cuda-13.0/bin/nvcc"
    # The tree keeps no nvcc binary; the live machine it was read from had one.
    assert not (FSTREE / binary.lstrip("/")).exists()
    live = LiveFixture({(binary, "--version"): Result(0, nvcc, "")}, extra={binary})
    finding = cuda.collect(live)  # type: ignore[arg-type]
    assert finding.section is not None
    assert finding.section["nvcc_version"] == cuda.parse_nvcc_version(nvcc)
    assert {**finding.section, "nvcc_version": None} == h200.section


def test_probe_registration() -> None:
    assert cuda.PROBE.name == cuda.PROBE.section == "cuda"
    assert cuda.PROBE.layer == SOFTWARE
    assert cuda.PROBE.tags == {"cuda", "gpu", "toolkit"}
    assert cuda.PROBE.reads_files


WHEEL_TOOLKIT = Path(__file__).parent.parent / "testdata" / "cuda-wheel-toolkit" / "fstree"


def test_a_toolkit_assembled_from_wheels_has_its_cudart_version_from_their_metadata() -> None:
    # libcudart is there by its SONAME only (lib/libcudart.so.13, behind lib64 -> lib and
    # targets/x86_64-linux/lib -> ../../lib); the wheel's dist-info says 13.0.96.
    section = cuda.collect(Context(WHEEL_TOOLKIT)).section
    assert section is not None
    assert section["toolkit_path"] == "/usr/local/cuda-13.0"
    assert section["cudart_version"] == "13.0.96"
    (copy,) = section["libraries"]["cudart"]
    assert copy == {"version": "13.0.96", "source": "toolkit",
                    "path": "/usr/local/cuda-13.0/dist-info/nvidia_cuda_runtime-13.0.96.dist-info"}
    # cupti has no key of its own; nvcc's wheel is not a library: neither is counted.
    assert section["cublas_version"] is None and section["libraries"]["cublas"] == []


def test_wheel_metadata_in_a_toolkit_names_only_libraries_it_holds(tmp_path: Path) -> None:
    root = tmp_path / "usr/local/cuda-13.0"
    (root / "lib").mkdir(parents=True)
    (root / "lib/libcudart.so.13.0.96").touch()
    (root / "lib64").symlink_to("lib")
    (root / "dist-info/nvidia_cuda_runtime-13.0.90.dist-info").mkdir(parents=True)
    (root / "dist-info/nvidia_cublas-13.1.0.3.dist-info").mkdir(parents=True)
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None
    # The library's own file name wins over metadata; cuBLAS's wheel left no library here.
    assert section["cudart_version"] == "13.0.96" and section["cublas_version"] is None


def test_a_versioned_libcudart_behind_the_runfile_links_is_found(tmp_path: Path) -> None:
    root = tmp_path / "usr/local/cuda-12.4"
    lib = root / "targets/x86_64-linux/lib"
    lib.mkdir(parents=True)
    (lib / "libcudart.so.12.4.127").touch()
    (lib / "libcudart.so.12").symlink_to("libcudart.so.12.4.127")
    (root / "lib64").symlink_to("targets/x86_64-linux/lib")
    (tmp_path / "usr/local/cuda").symlink_to("/usr/local/cuda-12.4")
    section = cuda.collect(Context(tmp_path)).section
    assert section is not None and section["cudart_version"] == "12.4.127"
    assert section["libraries"]["cudart"][0]["path"] == "/usr/local/cuda-12.4/targets/x86_64-linux/lib/libcudart.so.12.4.127"


def _live_cudart_truth() -> str | None:
    """What this machine's toolkit says of its libcudart: a versioned file, else its wheel's metadata."""
    root = os.path.realpath("/usr/local/cuda")
    for lib in ("lib64", "lib", "targets/x86_64-linux/lib"):
        folder = os.path.join(root, lib)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        full = [n for n in names if re.fullmatch(r"libcudart\.so\.\d+\.\d+\.\d+", n)]
        if full:
            return full[0][len("libcudart.so."):]
    for name in os.listdir(os.path.join(root, "dist-info")) if os.path.isdir(os.path.join(root, "dist-info")) else []:
        with open(os.path.join(root, "dist-info", name, "METADATA"), encoding="utf-8") as fh:
            head = dict(line.split(": ", 1) for line in fh.read().split("\n\n")[0].splitlines() if ": " in line)
        if head.get("Name") == "nvidia-cuda-runtime":
            return head["Version"]
    return None


@pytest.mark.skipif(not os.path.isdir("/usr/local/cuda"), reason="no CUDA toolkit on this machine")
def test_live_toolkit_cudart_version_agrees_with_the_toolkit() -> None:
    truth = _live_cudart_truth()
    if truth is None:
        pytest.skip("this toolkit holds no libcudart")
    section = cuda.collect(Context("/")).section
    assert section is not None and section["cudart_version"] == truth
