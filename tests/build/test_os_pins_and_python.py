"""What a workstation's environment needs of a build: which OS packages are pinned
(--pin-os), the site's dated archive, and an interpreter that no base image has (uv)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from buildtest_support import BOOKWORM_SECTIONS, manifest_from

from envcap.builder.dockerfile import render
from envcap.pins.errors import LockError
from envcap.builder.lock import lock
from envcap.builder.settings import BuildSettings
from envcap.capture.native import folders_of, native_libs, needed
from envcap.ecosystems.python import interpreter

NATIVE = {"libraries": {"libc.so.6": "libc6", "libz.so.1": "zlib1g"}, "owners": ["libc6", "zlib1g"]}
OBSERVED = {"time": "2026-11-20T10:00:00+00:00", "native_libs": NATIVE}


def _workstation(base_prefix: str = "/root/.pyenv/versions/3.11.7") -> dict[str, Any]:
    sections = copy.deepcopy(BOOKWORM_SECTIONS)
    sections["system"]["packages"] += [
        {"name": "zlib1g", "version": "1:1.2.13.dfsg-1", "arch": "amd64"},
        {"name": "gcc-12", "version": "12.2.0-14", "arch": "amd64"},
        {"name": "libcudnn9-cuda-12", "version": "9.1.0.70-1", "arch": "amd64"},
        {"name": "appstream", "version": "0.16.1-2", "arch": "amd64"},
    ]
    python = sections["python"]
    python.update(version="3.11.7", base_prefix=base_prefix,
                  paths=[f"{base_prefix}/lib/python3.11", "/opt/venv/lib/python3.11/site-packages"])
    python["packages"] = [p for p in python["packages"] if p["name"] in ("six", "idna")]
    return sections


def _pins(text: str) -> list[str]:
    return [line.split("=")[0] for line in text.splitlines() if line and not line.startswith("#")]


def test_auto_pins_what_the_run_links_compilers_cuda_and_named_packages() -> None:
    m = manifest_from(_workstation(), observed=OBSERVED)
    result = lock(m, hashes=None)
    assert _pins(result.files["apt.txt"]) == ["gcc-12", "libc6", "libc6:i386", "libcudnn9-cuda-12", "zlib1g"]
    assert result.system_left == ("appstream", "jq", "python3", "tzdata")
    assert "5 of 9 installed packages (--pin-os auto" in result.files["apt.txt"]
    named = lock(m, hashes=None, pin_os=("auto", "jq"))
    assert "jq" in _pins(named.files["apt.txt"]) and "jq" not in named.system_left
    every = lock(m, hashes=None, pin_os=("all",))
    assert len(_pins(every.files["apt.txt"])) == 9 and every.system_left == ()
    with pytest.raises(LockError, match="--pin-os nosuchpkg: not an installed dpkg package"):
        lock(m, hashes=None, pin_os=("auto", "nosuchpkg"))
    with pytest.raises(LockError, match="give auto, all, or package names"):
        lock(m, hashes=None, pin_os=("$(reboot)",))


def test_the_build_says_what_it_left_to_the_base_image() -> None:
    m = manifest_from(_workstation(), observed=OBSERVED)
    rendered = render(m, lock(m, hashes=None), "127.0.0.1:5000/debian@sha256:" + "0" * 64)
    [note] = [n for n in rendered.notes if n.startswith("system:")]
    assert "4 dpkg package(s) not pinned, left to the base image" in note and "appstream" in note


def test_a_system_python_pins_the_distributions_interpreter() -> None:
    m = manifest_from(_workstation(base_prefix="/usr"), observed=OBSERVED)
    assert "python3" in _pins(lock(m, hashes=None).files["apt.txt"])


def test_a_package_installed_from_git_pins_git_for_pip() -> None:
    """pip runs git to install a git dependency: the build needs it though no library of
    the run links it (a run with a git+file dependency failed its build without it)."""
    sections = _workstation()
    sections["system"]["packages"].append({"name": "git", "version": "1:2.39.5-0+deb12u2", "arch": "amd64"})
    plain = lock(manifest_from(copy.deepcopy(sections), observed=OBSERVED), hashes=None)
    assert "git" in plain.system_left and "VCS tools" not in plain.pin_os
    sections["python"]["packages"][0]["origin"] = {"kind": "vcs", "vcs": "git", "url": "file:///srv/git/six",
                                                   "commit": "a" * 40}
    result = lock(manifest_from(sections, observed=OBSERVED), hashes=None)
    assert "git" in _pins(result.files["apt.txt"]) and "git" not in result.system_left
    assert "the VCS tools pip installs from (git)" in result.pin_os


def test_an_editable_checkout_with_a_git_state_pins_git_to_read_it_again() -> None:
    """The record of an editable install says its checkout's commit, branch and dirtiness;
    without git in the image the rebuild's capture cannot say them, and the env_id differs."""
    sections = _workstation()
    sections["system"]["packages"].append({"name": "git", "version": "1:2.39.5-0+deb12u2", "arch": "amd64"})
    sections["python"]["packages"][0]["origin"] = {"kind": "editable", "url": "file:///work/lab",
                                                   "git": {"commit": "b" * 40, "branch": "main", "dirty": False}}
    result = lock(manifest_from(sections, observed=OBSERVED), hashes=None)
    assert "git" in _pins(result.files["apt.txt"]) and "git" not in result.system_left


def test_a_snapshot_without_a_run_pins_everything_as_before() -> None:
    m = manifest_from(_workstation())
    result = lock(m, hashes=None)
    assert len(_pins(result.files["apt.txt"])) == 9 and "does not say which libraries" in result.pin_os


def test_the_sites_dated_archive_and_its_key(tmp_path: Path) -> None:
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGb0\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
    m = manifest_from(_workstation(), observed=OBSERVED)
    settings = BuildSettings(apt_archive="http://archive.example/debian/{stamp}/", apt_archive_key=None)
    text = lock(m, hashes=None, settings=settings).files["apt-snapshot.sources"]
    assert "URIs: http://archive.example/debian/20261120T100000Z/\n" in text and "Signed-By" not in text
    (tmp_path / "key.asc").write_text(key)
    signed = lock(m, hashes=None, settings=BuildSettings(apt_archive="http://archive.example/d/",
                                                          apt_archive_key=str(tmp_path / "key.asc")))
    sources = signed.files["apt-snapshot.sources"]
    assert sources.endswith("Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQENBGb0\n =abcd\n"
                            " -----END PGP PUBLIC KEY BLOCK-----\n")
    (tmp_path / "key.asc").write_text("not a key\n")
    with pytest.raises(LockError, match="not an armored PGP public key"):
        lock(m, hashes=None, settings=BuildSettings(apt_archive="http://a.example/", apt_archive_key=str(
            tmp_path / "key.asc")))
    rendered = render(m, lock(m, hashes=None, settings=settings), "127.0.0.1:5000/debian@sha256:" + "0" * 64)
    assert ('RUN ["/bin/bash", "/usr/share/envcap/steps/apt.sh", "/usr/share/envcap/lock/apt.txt", '
            '"/usr/share/envcap/lock/apt-snapshot.sources"]') in rendered.dockerfile


def test_an_interpreter_of_its_own_is_installed_where_it_was_with_uv() -> None:
    m = manifest_from(_workstation(), observed=OBSERVED)
    offer = interpreter.Offer(("3.11.7", "3.12.1"), "http://files.example/downloads.json", "")
    rendered = render(m, lock(m, hashes=None, python_offer=offer), "127.0.0.1:5000/debian@sha256:" + "0" * 64)
    lines = rendered.dockerfile.splitlines()
    step = ('RUN ["/bin/bash", "/usr/share/envcap/steps/python.sh", "3.11.7", "/root/.pyenv/versions/3.11.7", '
            '"http://files.example/downloads.json", ""]')
    venv = ('RUN ["/bin/bash", "/usr/share/envcap/steps/venv.sh", "/root/.pyenv/versions/3.11.7/bin/python3.11", '
            '"/opt/venv"]')
    assert step in lines and venv in lines and lines.index(step) < lines.index(venv)
    assert not [n for n in rendered.notes if "substituted" in n]


def test_a_missing_patch_release_is_substituted_and_a_missing_series_refused() -> None:
    choice = interpreter.choose("3.11.7", "/p", interpreter.Offer(("3.10.4", "3.11.2", "3.11.9", "3.12.1")))
    assert choice.version == "3.11.9" and choice.substituted
    assert choice.note() == ("python: CPython 3.11.7 cannot be had from the interpreter builds on offer; "
                             "substituted CPython 3.11.9 (at /p)")
    with pytest.raises(LockError, match=r"CPython 3\.11\.7 .* no CPython 3\.11 build is on offer \(offered: 3\.12\.1\)"):
        interpreter.choose("3.11.7", "/p", interpreter.Offer(("3.12.1",)))
    m = manifest_from(_workstation(), observed=OBSERVED)
    rendered = render(m, lock(m, hashes=None, python_offer=interpreter.Offer(("3.11.9",))),
                      "127.0.0.1:5000/debian@sha256:" + "0" * 64)
    assert any("substituted CPython 3.11.9" in n for n in rendered.notes)
    assert 'python.sh", "3.11.9", "/root/.pyenv/versions/3.11.7"' in rendered.dockerfile


def test_uv_says_what_a_local_download_list_offers(tmp_path: Path) -> None:
    uv = BuildSettings().uv_binary()
    if uv is None:
        pytest.fail("uv is not installed (envcap[build] installs it)")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("python/README"), io.BytesIO(b""))
    entry = {"name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
             "major": 3, "minor": 11, "patch": 7, "prerelease": "", "url": "http://127.0.0.1:9/p.tar.gz",
             "sha256": hashlib.sha256(archive.getvalue()).hexdigest(), "variant": None, "build": "t"}
    listing = tmp_path / "downloads.json"
    listing.write_text(json.dumps({"cpython-3.11.7-linux-x86_64-gnu": entry}))
    settings = BuildSettings(python_downloads=str(listing))
    assert interpreter.offered(uv, settings.uv_env(), "x86_64") == ("3.11.7",)
    listing.write_text("{not json")
    with pytest.raises(LockError, match="uv cannot list the Python builds on offer"):
        interpreter.offered(uv, settings.uv_env(), "x86_64")
    with pytest.raises(LockError, match="needs uv"):
        interpreter.offered(None, {}, "x86_64")


def test_needed_reads_dt_needed_of_real_elf_files() -> None:
    found = needed(sys.executable)
    assert found is not None and found[0] == 62 and any(name.startswith("libc.so") for name in found[1])
    assert needed(__file__) is None
    import _ssl

    dynload = str(Path(_ssl.__file__).parent)
    python = {"base_prefix": "/opt/own-python", "prefix": "/opt/venv", "paths": [dynload, "/nonexistent"]}
    assert folders_of(python) == [dynload]
    assert folders_of({**python, "base_prefix": "/usr"}) == []
    libs = native_libs(python, dpkg=True)
    assert libs is not None and "libc6" in libs["owners"] and libs["libraries"]["libc.so.6"] == "libc6"
