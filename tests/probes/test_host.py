"""os, kernel, libc, cpu and memory probes against the system's own tools."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from conftest import H200_TREE

from envcap.probes import cpu, kernel, libc, memory, os_release
from envcap.probes.context import Context

LIVE = Context("/")
TREE = Context(H200_TREE)


def os_release_file(path: str = "/etc/os-release") -> dict[str, str]:
    # platform.freedesktop_os_release is the standard library's own reader.
    with open(path) as fh:
        return dict(platform._parse_os_release(fh))  # type: ignore[attr-defined]


def test_os_agrees_with_os_release() -> None:
    section = os_release.collect(LIVE).section
    truth = os_release_file()
    assert section is not None
    assert (section["id"], section["version_id"], section["pretty_name"]) == (
        truth["ID"], truth.get("VERSION_ID"), truth["PRETTY_NAME"])


def test_os_of_the_h200_tree() -> None:
    section = os_release.collect(TREE).section
    truth = os_release_file(str(H200_TREE / "etc/os-release"))
    assert section is not None
    assert (section["id"], section["version_id"], section["pretty_name"]) == ("ubuntu", "24.04", truth["PRETTY_NAME"])


def test_kernel_agrees_with_uname() -> None:
    section = kernel.collect(LIVE).section
    uname = subprocess.run(["uname", "-r", "-m"], capture_output=True, text=True, check=True).stdout.split()
    assert section is not None and [section["release"], section["machine"]] == uname


def test_kernel_of_the_h200_tree() -> None:
    section = kernel.collect(TREE).section
    assert section is not None and section["release"] == "6.18.44-fc-v657-gpu"


def test_libc_agrees_with_getconf() -> None:
    section = libc.collect(LIVE).section
    truth = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, check=True).stdout.split()
    assert section is not None and [section["family"], section["version"]] == truth


def test_libc_from_the_library_file(tmp_path) -> None:
    lib = tmp_path / "lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    real = "/lib/x86_64-linux-gnu/libc.so.6"
    if os.path.exists(real):
        (lib / "libc.so.6").write_bytes(Path(real).read_bytes())
        section = libc.collect(Context(tmp_path)).section
        assert section == libc.collect(LIVE).section


def test_cpu_agrees_with_nproc_and_lscpu() -> None:
    section = cpu.collect(LIVE).section
    nproc = int(subprocess.run(["nproc", "--all"], capture_output=True, text=True, check=True).stdout)
    assert section is not None
    assert section["logical_cpus"] == nproc
    assert section["architecture"] == platform.machine()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, env={"LC_ALL": "C", "PATH": os.environ["PATH"]})
    if lscpu.returncode == 0:
        fields = dict(line.split(":", 1) for line in lscpu.stdout.splitlines() if ":" in line)
        if "Model name" in fields:
            assert section["model"] == fields["Model name"].strip()
        if "Flags" in fields:
            assert section["flags"] == sorted(set(fields["Flags"].split()))


def test_cpu_of_the_h200_tree() -> None:
    section = cpu.collect(TREE).section
    assert section is not None
    assert section["logical_cpus"] == 16
    assert section["model"] == "Intel(R) Xeon(R) Processor"
    assert "avx512f" in section["flags"] and section["architecture"] == "x86_64"


def test_memory_agrees_with_sysconf() -> None:
    finding = memory.collect(LIVE)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert finding.observed["total_bytes"] == total
    assert finding.section == {"total_gib": round(total / 2**30)}


def test_memory_of_the_h200_tree() -> None:
    finding = memory.collect(TREE)
    assert finding.observed["total_bytes"] == 131981020 * 1024
    assert finding.section == {"total_gib": 126}


def test_os_release_quoting_and_the_distro_fallback(tmp_path) -> None:
    from envcap.probes.os_release import parse_os_release

    assert parse_os_release('NAME="Fedora Linux"\nID=fedora\n# c\nPRETTY_NAME=\'A \\"B\\"\'\nBAD\n') == {
        "NAME": "Fedora Linux", "ID": "fedora", "PRETTY_NAME": 'A \\"B\\"'}
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/centos-release").write_text("CentOS release 6.10 (Final)\n")
    section = os_release.collect(Context(tmp_path)).section
    assert section is not None and (section["id"], section["version_id"]) == ("centos", "6.10")


def test_libc_of_the_h200_tree_comes_from_its_package_database() -> None:
    # That tree has no libc.so.6; its dpkg database says libc6 2.39-0ubuntu8.x.
    libc6 = [line.split("\t") for line in (H200_TREE.parent / "dpkg.tsv").read_text().splitlines()
             if line.startswith("libc6\t")]
    assert libc6 and libc6[0][1].startswith("2.39-")
    assert libc.collect(TREE).section == {"family": "glibc", "version": "2.39"}


def test_environment_allow_list_patterns() -> None:
    from envcap.probes.environment import _matcher

    match = _matcher(("PATH", "CUDA_*", "LC_*", "MY_?AB", "X[YZ]"))
    for name in ("PATH", "CUDA_HOME", "CUDA_", "LC_ALL", "MY_LAB", "XZ"):
        assert match(name), name
    for name in ("PATHS", "XPATH", "CUDA", "MY_LLAB", "XA", "cuda_home"):
        assert not match(name), name
