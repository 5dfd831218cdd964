"""The compilers probe against the compilers' own answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from envcap.probes import compilers
from envcap.probes.context import Context

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
NVCC_OUTPUT = TESTDATA / "gpu-h200-ubuntu24/fstree/_meta/nvcc-version.txt"


def tools_of(ctx: Context) -> dict[str, Any]:
    section = compilers.collect(ctx).section
    assert section is not None
    return section["tools"]  # type: ignore[no-any-return]


def output_of(*argv: str) -> str:
    return subprocess.run(
        argv, capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"}
    ).stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_live_gcc_matches_gcc_itself() -> None:
    gcc = tools_of(Context("/"))["gcc"]
    assert gcc["path"] == shutil.which("gcc")
    assert gcc["version"] == output_of("gcc", "-dumpfullversion").strip()
    assert gcc["banner"] == output_of("gcc", "--version").splitlines()[0]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on this machine")
def test_live_nvcc_matches_nvcc_itself() -> None:
    release = next(line for line in output_of("nvcc", "--version").splitlines() if ", V" in line)
    nvcc = tools_of(Context("/"))["nvcc"]
    assert nvcc["banner"] == release
    assert nvcc["version"] == release.rpartition(", V")[2]


def test_nvcc_output_from_the_h200_machine() -> None:
    text = NVCC_OUTPUT.read_text()
    assert compilers.parse_version("nvcc", text) == "13.0.88"
    assert compilers.banner(text, "13.0.88") == "Cuda compilation tools, release 13.0, V13.0.88"


@pytest.mark.parametrize(
    ("name", "first_line", "version"),
    [
        ("clang", "Debian clang version 14.0.6", "14.0.6"),
        ("clang", "Ubuntu clang version 18.1.3 (1ubuntu1)", "18.1.3"),
        ("g++", "Apple clang version 15.0.0 (clang-1500.3.9.4)", "15.0.0"),
        ("gfortran", "GNU Fortran (Ubuntu 13.3.0-6ubuntu2~24.04.1) 13.3.0", "13.3.0"),
        ("hipcc", "HIP version: 6.2.41133-dd7f95766", "6.2.41133-dd7f95766"),
    ],
)
def test_version_banners(name: str, first_line: str, version: str) -> None:
    assert compilers.parse_version(name, first_line + "\nTarget: x86_64-pc-linux-gnu\n") == version


def test_gcc_banner_of_the_h200_machine() -> None:
    # gcc -v ends with the same "gcc version X (pkgversion)" the H200's --version showed.
    last = (TESTDATA / "gpu-h200-ubuntu24/fstree/_meta/gcc-v.txt").read_text().splitlines()[-1]
    assert last.startswith("gcc version 13.3.0 ")
    assert compilers.parse_version("gcc", "gcc (Ubuntu 13.3.0-6ubuntu2~24.04.1) 13.3.0\n") == "13.3.0"


def fake_tool(directory: Path, name: str, script: str) -> None:
    # The probe runs tools with the context's PATH, which holds only the fakes.
    sleep = shutil.which("sleep") or "sleep"
    path = directory / name
    path.write_text("#!/bin/sh\n" + script.replace("sleep ", f"{sleep} "))
    path.chmod(0o755)


def test_tools_run_at_the_same_time(tmp_path: Path) -> None:
    # Five fake compilers that each take 0.4 s: one after another would take 2.4 s.
    for name in ("gcc", "g++", "gfortran"):
        fake_tool(
            tmp_path,
            name,
            f'sleep 0.4\ncase "$1" in -dump*) echo 12.3.0;; *) echo "{name} (GCC) 12.3.0";; esac\n',
        )
    fake_tool(
        tmp_path, "clang", 'sleep 0.4\necho "clang version 17.0.6"\necho "Target: x86_64-pc-linux-gnu"\n'
    )
    fake_tool(tmp_path, "hipcc", "sleep 0.4\necho 'hipcc: no ROCm here' >&2\nexit 1\n")
    ctx = Context("/", env={"PATH": str(tmp_path)})
    start = time.monotonic()
    finding = compilers.collect(ctx)
    assert 0.4 <= time.monotonic() - start < 1.6
    assert finding.section is not None
    tools = finding.section["tools"]
    assert sorted(tools) == ["clang", "g++", "gcc", "gfortran", "hipcc"]
    assert tools["gfortran"] == {
        "path": str(tmp_path / "gfortran"),
        "version": "12.3.0",
        "banner": "gfortran (GCC) 12.3.0",
    }
    assert tools["clang"]["version"] == "17.0.6"
    # A compiler that fails is recorded as there, of unknown version, and why goes aside.
    assert tools["hipcc"] == {"path": str(tmp_path / "hipcc"), "version": None, "banner": None}
    assert "no ROCm here" in finding.observed["errors"]["hipcc"]


def test_flags_that_change_outputs_are_kept_and_redacted(tmp_path: Path) -> None:
    token = "ghp_" + "a1B2c3D4e5" * 4
    env = {
        "PATH": str(tmp_path),
        "CFLAGS": "-O2 -march=native",
        "TORCH_CUDA_ARCH_LIST": "9.0",
        "CMAKE_ARGS": f"-DGITHUB_TOKEN={token} -DUSE_CUDA=ON",
        "MAX_JOBS": "16",
        "CXXFLAGS": "",
    }
    section = compilers.collect(Context("/", env=env)).section
    assert section is not None
    assert section["tools"] == {}
    flags = section["flags"]
    assert set(flags) == {"CFLAGS", "TORCH_CUDA_ARCH_LIST", "CMAKE_ARGS"}
    assert flags["CFLAGS"] == "-O2 -march=native"
    assert token not in flags["CMAKE_ARGS"] and "-DUSE_CUDA=ON" in flags["CMAKE_ARGS"]


def test_nothing_found_is_quietly_absent(tmp_path: Path) -> None:
    assert compilers.collect(Context("/", env={"PATH": str(tmp_path)})).section is None


def test_probe_registration() -> None:
    assert compilers.PROBE.name == "compilers" and not compilers.PROBE.reads_files
    assert compilers.PROBE.tags == {"compilers", "toolchain"}
