"""Lockfiles from a manifest: pins, hashes from a real (loopback) index, the cache, pip's acceptance."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from buildtest_support import (
    BOOKWORM_SECTIONS,
    CONDA_SECTIONS,
    FakeIndex,
    fake_sha,
    indexes,
    manifest_from,
)

from envcap.pins import hashes as hashes_mod
from envcap.pins.errors import LockError
from envcap.pins.hashes import IndexHashes, indexes_for
from envcap.builder.lock import lock


def _lock(manifest, main, torch, cache: Path, **kw):
    h = IndexHashes(cache, **kw)
    try:
        return lock(manifest, hashes=h, index_url=main.url, extra_index_urls=[torch.url]), h
    finally:
        h.close()


def test_requirements_pin_every_distribution_with_index_hashes(tmp_path: Path) -> None:
    m = manifest_from(BOOKWORM_SECTIONS)
    with indexes() as (main, torch):
        result, _ = _lock(m, main, torch, tmp_path / "c.sqlite")
        text = result.files["requirements.txt"]
        assert f"--index-url {main.url}\n--extra-index-url {torch.url}\n" in text
    # Every file of the release, and only that release's.
    assert f"six==1.17.0 \\\n    --hash=sha256:{min(fake_sha('six-1.17.0-py2.py3-none-any.whl'), fake_sha('six-1.17.0.tar.gz'))}" in text
    assert fake_sha("six-1.16.0.tar.gz") not in text
    # A local version label is found on its own index (HTML page), not on PyPI's.
    assert "torch==2.5.0+cu124 \\" in text
    assert fake_sha("torch-2.5.0+cu124-cp312-cp312-linux_x86_64.whl") in text
    assert fake_sha("torch-2.5.0-cp311-cp311-manylinux1_x86_64.whl") not in text
    # A local wheel by the sha256 pip recorded; an editable as needing its source.
    assert f"localwheel==1.2.3 \\\n    --hash=sha256:{'a' * 64}" in text
    assert "#   editme==0.0.1: editable install from file:///src/editme at fedcba98" in text
    # A distribution installed by the system package manager is left to apt.txt.
    assert "debpkg" not in text
    # VCS: pinned to the commit, in a file installed without --require-hashes.
    assert result.files["requirements-vcs.txt"].splitlines()[-1] == \
        "mylib @ git+https://example.org/mylib.git@0123456789abcdef0123456789abcdef01234567"
    assert [u.name for u in result.unlocked] == ["editme", "oldconf"]
    assert dict(result.requested) == {"idna": False, "localwheel": True, "mylib": True, "six": True, "torch": True,
                                      "editme": True}


def test_apt_pins_qualify_foreign_architectures_and_skip_leftovers(tmp_path: Path) -> None:
    m = manifest_from(BOOKWORM_SECTIONS)
    result = lock(m, hashes=None)
    pins = [line for line in result.files["apt.txt"].splitlines() if not line.startswith("#")]
    assert pins == ["jq=1.6-2.1+deb12u2", "libc6=2.36-9+deb12u14", "libc6:i386=2.36-9+deb12u14",
                    "python3=3.11.2-1+b1", "tzdata=2025b-0+deb12u1"]
    snapshot = result.files["apt-snapshot.sources"]
    assert "URIs: https://snapshot.debian.org/archive/debian/20261120T100000Z/" in snapshot
    assert "Suites: bookworm" in snapshot


def test_conda_explicit_lockfile_from_records(tmp_path: Path) -> None:
    m = manifest_from(CONDA_SECTIONS)
    with FakeIndex({"six": ["six-1.17.0-py2.py3-none-any.whl"]}) as main:
        h = IndexHashes(tmp_path / "c.sqlite")
        result = lock(m, hashes=h, index_url=main.url)
    text = result.files["conda-linux-64.lock"]
    assert text.splitlines()[3:] == [
        "# platform: linux-64",
        "@EXPLICIT",
        f"https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda#{'c' * 32}",
        f"https://conda.anaconda.org/conda-forge/noarch/pip-24.0-pyhd8ed1ab_0.conda#{'d' * 32}",
    ]
    assert [u.name for u in result.unlocked] == ["nourl"]
    # pip installed by conda stays in the conda lockfile; six came from the index.
    reqs = result.files["requirements.txt"]
    assert "six==1.17.0" in reqs and "pip==" not in reqs


def test_relocking_asks_the_index_nothing_and_is_byte_identical(tmp_path: Path) -> None:
    m = manifest_from(BOOKWORM_SECTIONS)
    cache = tmp_path / "c.sqlite"
    with indexes() as (main, torch):
        first, h1 = _lock(m, main, torch, cache)
        asked = len(main.requests) + len(torch.requests)
        second, h2 = _lock(m, main, torch, cache)
        assert len(main.requests) + len(torch.requests) == asked
    # One page per project, fetched concurrently; none the second time.
    assert h1.requests == 3 and h2.requests == 0
    assert first.files == second.files
    third, _ = _lock(m, main, torch, cache, offline=True)
    assert third.files == first.files


def test_a_release_on_no_index_is_an_error_naming_it(tmp_path: Path) -> None:
    sections = {**BOOKWORM_SECTIONS, "python": {**BOOKWORM_SECTIONS["python"], "packages": [
        {"name": "six", "version": "9.9.9", "installer": "pip", "requested": True, "origin": {"kind": "index"}}]}}
    with indexes() as (main, torch):
        with pytest.raises(LockError, match=r"six==9\.9\.9 \(looked in .*--extra-index-url"):
            _lock(manifest_from(sections), main, torch, tmp_path / "c.sqlite")


def test_offline_without_a_cache_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="--offline"):
        lock(manifest_from(BOOKWORM_SECTIONS), hashes=IndexHashes(tmp_path / "c.sqlite", offline=True))


def test_an_unreachable_index_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashes_mod.time, "sleep", lambda s: None)
    h = IndexHashes(tmp_path / "c.sqlite")
    with pytest.raises(LockError, match="none of the indexes.*cannot reach http://127.0.0.1:9/"):
        lock(manifest_from(BOOKWORM_SECTIONS), hashes=h, index_url="http://127.0.0.1:9")


def test_local_labels_look_in_their_own_index_first() -> None:
    assert indexes_for("2.5.0+cu130", "https://pypi.org/simple", []) == [
        "https://download.pytorch.org/whl/cu130", "https://pypi.org/simple"]
    assert indexes_for("2.5.0+cu130", "https://pypi.org/simple", ["https://mirror/cu130"]) == [
        "https://mirror/cu130", "https://download.pytorch.org/whl/cu130", "https://pypi.org/simple"]
    assert indexes_for("1.0", "https://pypi.org/simple/", ["https://x/simple"]) == [
        "https://pypi.org/simple", "https://x/simple"]


def _wheel(path: Path, name: str, version: str) -> bytes:
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path.read_bytes()


def test_pip_installs_the_requirements_with_require_hashes(tmp_path: Path) -> None:
    """pip itself accepts the file: hash-checking mode, no resolution, from the index."""
    whl = "tinypkg-0.1.0-py3-none-any.whl"
    data = _wheel(tmp_path / whl, "tinypkg", "0.1.0")
    sections = {"python": {**BOOKWORM_SECTIONS["python"], "packages": [
        {"name": "tinypkg", "version": "0.1.0", "installer": "pip", "requested": True, "origin": {"kind": "index"}}]}}
    with FakeIndex({"tinypkg": [whl]}, real_files={whl: data}) as index:
        result = lock(manifest_from(sections), hashes=IndexHashes(tmp_path / "c.sqlite"), index_url=index.url)
        result.write(tmp_path / "lock")
        assert f"--hash=sha256:{hashlib.sha256(data).hexdigest()}" in result.files["requirements.txt"]
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        for name in [n for n in env if n.startswith("PIP_") and n != "PIP_CONFIG_FILE"]:
            env.pop(name)
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes",
                               "--target", str(tmp_path / "t"), "--disable-pip-version-check",
                               "-r", str(tmp_path / "lock" / "requirements.txt")],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t" / "tinypkg" / "__init__.py").exists()


def test_a_private_conda_channel_leaves_its_package_unlocked_and_the_rest_written(tmp_path: Path) -> None:
    """The conda fixture holds acme-kernels from a private channel, its token redacted."""
    from conftest import TESTDATA, run_envcap

    manifest = tmp_path / "conda.json"
    run_envcap("snapshot", "--root", str(TESTDATA / "conda-linux64" / "fstree"), "--no-store",
               "-o", str(manifest), check=True)
    assert "/t/[REDACTED]/acme-private/" in manifest.read_text()
    proc = run_envcap("lock", str(manifest), "-o", str(tmp_path / "lock"), "--offline")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "lock" / "conda-linux-64.lock").read_text()
    urls = [line for line in text.splitlines() if line.startswith("https://")]
    assert [u.split("/")[-1].split("-")[0] for u in urls] == ["numpy", "python"]
    assert "not locked: conda acme-kernels 0.3.1: not pinned" in proc.stderr
    assert "[REDACTED]" not in "".join(urls)
