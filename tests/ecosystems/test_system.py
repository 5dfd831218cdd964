"""The system probe against what dpkg-query, dpkg-deb and rpm themselves print."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envcap.core.errors import NotApplicable, ProbeError
from envcap.ecosystems.system import probe as system
from envcap.probes.context import Context

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
H200 = TESTDATA / "gpu-h200-ubuntu24"
STATES = TESTDATA / "dpkg-states"
DISTROLESS = TESTDATA / "dpkg-distroless"
RPM = TESTDATA / "rpm-fedora39"
APK = TESTDATA / "apk-alpine319"

Row = tuple[str, ...]


def read_tsv_text(text: str) -> list[Row]:
    return [tuple(line.split("\t")) for line in text.splitlines() if line]


def read_tsv(path: Path) -> list[Row]:
    return read_tsv_text(path.read_text())


def rows(section: dict[str, Any], with_status: bool = False) -> list[Row]:
    out = []
    for p in section["packages"]:
        row: Row = (p["name"], p["version"], p["arch"])
        out.append(row + (p.get("status", "installed"),) if with_status else row)
    return out


def collect(root: Path | str) -> dict[str, Any]:
    section = system.collect(Context(root)).section
    assert section is not None
    return section


def dpkg_query(admindir: str | None = None) -> list[Row]:
    argv = ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\n"]
    if admindir:
        argv.insert(1, f"--admindir={admindir}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return read_tsv_text(out)


needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not os.path.exists("/var/lib/dpkg/status"),
    reason="not a dpkg machine",
)


# -- dpkg ----------------------------------------------------------------------------


@needs_dpkg
def test_live_machine_matches_dpkg_query() -> None:
    section = collect("/")
    expected = dpkg_query()
    got = rows(section, with_status=True)
    assert section["manager"] == "dpkg"
    assert len(got) == len(expected)
    assert set(got) == set(expected)


def test_h200_tree_matches_its_dpkg_query_listing() -> None:
    section = collect(H200 / "fstree")
    expected = read_tsv(H200 / "dpkg.tsv")
    assert len(expected) == 439
    assert rows(section) == sorted(expected, key=lambda r: (r[0], r[2]))


def test_states_tree_matches_dpkg_query() -> None:
    # dpkg-query -W lists every state but not-installed; envcap marks the incomplete ones.
    section = collect(STATES / "fstree")
    expected = read_tsv(STATES / "dpkg-query.tsv")
    assert sorted(rows(section, with_status=True)) == sorted(expected)
    installed = [p for p in section["packages"] if "status" not in p]
    assert {p["name"] for p in installed} == {r[0] for r in expected if r[3] == "installed"}


@needs_dpkg
def test_states_tree_ground_truth_is_what_dpkg_query_prints_now() -> None:
    live = dpkg_query(str(STATES / "fstree/var/lib/dpkg"))
    assert sorted(live) == sorted(read_tsv(STATES / "dpkg-query.tsv"))


def test_distroless_status_d_matches_dpkg_deb() -> None:
    section = collect(DISTROLESS / "fstree")
    assert sorted(rows(section)) == sorted(read_tsv(DISTROLESS / "dpkg-deb.tsv"))


def test_status_d_md5sums_files_are_not_packages() -> None:
    names = [p["name"] for p in collect(DISTROLESS / "fstree")["packages"]]
    assert names and not [n for n in names if n.endswith(".md5sums")]


def test_stanza_without_version_names_file_and_line(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    good = (STATES / "fstree/var/lib/dpkg/status").read_text().split("\n\n")[0]
    broken = "Package: broken\nStatus: install ok installed\nArchitecture: amd64\n"
    status.write_text(good + "\n\n" + broken)
    line = good.count("\n") + 3
    with pytest.raises(ProbeError, match=rf"/var/lib/dpkg/status:{line}: package 'broken' has no Version"):
        system.collect(Context(tmp_path))


def test_stanza_without_package_is_an_error() -> None:
    text = "Package: a\nVersion: 1\n\nVersion: 2\nStatus: install ok installed\n"
    with pytest.raises(ProbeError, match=r"status:4: stanza has no Package field"):
        system.parse_dpkg_status(text, "status", default_status="installed")


def test_zero_epoch_is_dropped_as_dpkg_prints_it() -> None:
    # dpkg-query.tsv shows libc6:i386 printed without the "0:" its stanza carries.
    assert "Version: 0:2.36" in (STATES / "fstree/var/lib/dpkg/status").read_text()
    assert system.normalize_dpkg_version("0:2.36-9") == "2.36-9"
    assert system.normalize_dpkg_version("1:5.44-3") == "1:5.44-3"


# -- rpm -----------------------------------------------------------------------------


def rpm_qa_rows(text: str) -> list[Row]:
    # rpm prints "(none):" for an absent epoch; envcap omits it.
    return [(n, v.removeprefix("(none):"), a) for n, v, a in read_tsv_text(text)]


def test_rpm_sqlite_matches_rpm_qa() -> None:
    section = collect(RPM / "fstree")
    expected = rpm_qa_rows((RPM / "rpm-qa.tsv").read_text())
    assert section["manager"] == "rpm"
    assert rows(section) == sorted(expected, key=lambda r: (r[0], r[2]))


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
def test_rpm_sqlite_matches_what_rpm_prints_now(tmp_path: Path) -> None:
    # rpm writes lock and -shm files beside its database, so it reads a copy.
    shutil.copy(RPM / "fstree/usr/lib/sysimage/rpm/rpmdb.sqlite", tmp_path)
    out = subprocess.run(
        [
            "rpm",
            "--dbpath",
            str(tmp_path),
            "-qa",
            "--qf",
            r"%{NAME}\t%{EPOCH}:%{VERSION}-%{RELEASE}\t%{ARCH}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(rows(collect(RPM / "fstree"))) == sorted(rpm_qa_rows(out))


def test_reading_the_rpmdb_leaves_the_tree_untouched() -> None:
    directory = RPM / "fstree/usr/lib/sysimage/rpm"
    before = sorted(os.listdir(directory))
    collect(RPM / "fstree")
    assert sorted(os.listdir(directory)) == before == ["rpmdb.sqlite"]


def test_parse_rpm_qa_reads_rpm_output() -> None:
    packages = system.parse_rpm_qa((RPM / "rpm-qa.tsv").read_text())
    got = [(p.name, p.version, p.arch) for p in packages]
    assert got == rpm_qa_rows((RPM / "rpm-qa.tsv").read_text())


def test_truncated_rpm_header_is_an_error() -> None:
    rows_ = system.read_rpmdb_sqlite(RPM / "fstree/usr/lib/sysimage/rpm/rpmdb.sqlite", "rpmdb.sqlite")
    blob = rows_[0][1]
    assert system.parse_rpm_header(blob).name
    with pytest.raises(ValueError, match="header declares"):
        system.parse_rpm_header(blob[: len(blob) // 2])


def test_berkeley_db_rpmdb_needs_rpm_so_not_applicable_under_root(tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    (tmp_path / "var/lib/rpm/Packages").write_bytes(b"\0" * 64)
    with pytest.raises(NotApplicable):
        system.collect(Context(tmp_path))


# -- apk and none --------------------------------------------------------------------


def test_apk_installed_matches_expected() -> None:
    section = collect(APK / "fstree")
    assert section["manager"] == "apk"
    assert sorted(rows(section)) == sorted(read_tsv(APK / "expected.tsv"))


def test_apk_record_without_version_names_file_and_line() -> None:
    with pytest.raises(ProbeError, match=r"installed:4: record has no V"):
        system.parse_apk_installed("P:musl\nV:1.2\n\nP:busybox\nA:x86_64\n", "installed")


def test_no_package_manager_is_quietly_absent(tmp_path: Path) -> None:
    assert system.collect(Context(tmp_path)).section is None


def test_probe_registration() -> None:
    assert system.PROBE.name == "system" and system.PROBE.section == "system"
    assert system.PROBE.reads_files and system.PROBE.tags == {"system", "packages"}


def test_malformed_status_field_is_an_error() -> None:
    # dpkg-query itself refuses this: "third (status) word in 'Status' field: is missing a value".
    text = "Package: badstat\nStatus: install ok\nArchitecture: amd64\nVersion: 1.0\n"
    with pytest.raises(ProbeError, match=r"status:1: package 'badstat' has a malformed Status field"):
        system.parse_dpkg_status(text, "status")


def test_field_names_in_another_case_are_read_as_dpkg_reads_them() -> None:
    from envcap.ecosystems.system.probe import parse_dpkg_status

    canonical = "Package: a\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n\n"
    odd = "package: b\nSTATUS: install ok installed\nversion:  2.0 \nArchitecture: amd64\n"
    packages = parse_dpkg_status(canonical + odd, "status")
    assert [(p.name, p.version, p.arch, p.status) for p in packages] == [
        ("a", "1.0", "all", "installed"), ("b", "2.0", "amd64", "installed")]
