"""A pinned dpkg version that neither the mirror nor the dated archive serves is refused
before any build step (issue 21 item 3): the real mirror's and the test bed's dated
archive's package indexes, read once and cached.

The test bed's archive (127.0.0.1:5080) holds libexpat1 at a security version that the
mirror's bookworm and bookworm-updates suites do not serve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from buildtest_support import BOOKWORM_SECTIONS, bed_facts, manifest_from
from click.testing import CliRunner

from envcap.builder import aptindex
from envcap.builder.lock import lock
from envcap.builder.settings import BuildSettings
from envcap.cli.build import build as build_cmd
from envcap.cli.build import lock as lock_cmd
from envcap.cli.main import _Group
from envcap.pins.errors import LockError

pytestmark = pytest.mark.testbed

MISSING = "9.9.9-1~never"


@pytest.fixture(scope="module")
def facts() -> dict[str, str]:
    return bed_facts()


def _manifest(expat: str, extra: tuple[dict[str, Any], ...] = ()) -> Any:
    system = {"manager": "dpkg", "packages": [
        {"name": "libexpat1", "version": expat, "arch": "amd64"}, *extra]}
    sections = {k: v for k, v in BOOKWORM_SECTIONS.items() if k != "python"}
    return manifest_from({**sections, "system": system})


def _settings(facts: dict[str, str], archive: str | None = None) -> BuildSettings:
    return BuildSettings(apt_archive=archive or facts["ENVCAP_TEST_APT_ARCHIVE"],
                         apt_archive_key=facts["ENVCAP_TEST_APT_ARCHIVE_KEY"])


def test_a_version_the_archive_serves_passes_one_neither_serves_is_named(facts: dict[str, str]) -> None:
    mirror = facts["ENVCAP_TEST_APT_MIRROR"]
    archived = facts["ENVCAP_TEST_ARCHIVE_PACKAGE"].split("=", 1)[1]
    # The archive's version: not on the mirror's bookworm suites, in the dated archive.
    good = lock(_manifest(archived), hashes=None, settings=_settings(facts))
    aptindex.check(good, mirror=mirror)
    # A version no one serves, beside a package the mirror does not know by name (a
    # third-party repository's, left to the apt step).
    third = {"name": "envcap-third-party-tool", "version": "1.0", "arch": "amd64"}
    bad = lock(_manifest(MISSING, (third,)), hashes=None, settings=_settings(facts))
    with pytest.raises(LockError) as info:
        aptindex.check(bad, mirror=mirror)
    text = str(info.value)
    assert f"libexpat1={MISSING}" in text and "envcap-third-party-tool" not in text
    assert f"nor the dated archive {facts['ENVCAP_TEST_APT_ARCHIVE'].rstrip('/')}" in text
    assert "ENVCAP_APT_ARCHIVE" in text and "--pin-os" in text
    # The archive's version when the archive cannot be read: refused, saying so.
    dead = lock(_manifest(archived), hashes=None, settings=_settings(facts, "http://127.0.0.1:9/debian/"))
    with pytest.raises(LockError, match=r"the dated archive http://127.0.0.1:9/debian could not be read: "
                                        rf"libexpat1={archived.replace('+', '[+]')}"):
        aptindex.check(dead, mirror=mirror)


def test_the_indexes_are_read_once_then_cached(facts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = aptindex._fetch

    def counting(url: str) -> bytes | None:
        asked.append(url)
        return real(url)

    monkeypatch.setattr(aptindex, "_fetch", counting)
    bad = lock(_manifest(MISSING), hashes=None, settings=_settings(facts))
    for _ in range(2):
        with pytest.raises(LockError):
            aptindex.check(bad, mirror=facts["ENVCAP_TEST_APT_MIRROR"])
    first = len(asked)
    assert first >= 3  # the mirror's two suites and the archive, each at least once
    assert all(u.endswith(("Packages.xz", "Packages.gz", "Packages")) for u in asked)
    assert len(asked) == first  # the second check asked nothing: the cache answered


def test_a_mirror_that_cannot_be_read_leaves_the_pins_to_the_apt_step(facts: dict[str, str]) -> None:
    notes: list[str] = []
    bad = lock(_manifest(MISSING), hashes=None, settings=_settings(facts))
    aptindex.check(bad, mirror="http://127.0.0.1:9/debian", progress=notes.append)
    assert notes and "could not be read" in notes[0]


@pytest.fixture()
def cli() -> click.Group:
    group = _Group(name="envcap")
    for command in (lock_cmd, build_cmd):
        group.add_command(command)
    return group


def test_build_refuses_it_before_any_build_step_and_lock_warns(cli: click.Group, facts: dict[str, str],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envcap.builder.pipeline import tag_for
    from envcap.builder.registry import Registry, Repository

    monkeypatch.setenv("ENVCAP_APT_MIRROR", facts["ENVCAP_TEST_APT_MIRROR"])
    monkeypatch.setenv("ENVCAP_APT_ARCHIVE", facts["ENVCAP_TEST_APT_ARCHIVE"])
    monkeypatch.setenv("ENVCAP_APT_ARCHIVE_KEY", facts["ENVCAP_TEST_APT_ARCHIVE_KEY"])
    manifest = _manifest(MISSING)
    path = tmp_path / "m.json"
    path.write_text(manifest.to_json())
    # The lockfiles are written (a site may have an archive that holds the version), with a warning.
    locked = CliRunner().invoke(cli, ["lock", str(path), "-o", str(tmp_path / "out")])
    assert locked.exit_code == 0, locked.output
    assert "warning: 1 pinned OS package version(s) can be had from neither the mirror" in locked.output
    assert f"libexpat1={MISSING}" in locked.output and "envcap build refuses these pins" in locked.output
    assert (tmp_path / "out" / "apt.txt").is_file()
    repository = f"{facts['ENVCAP_TEST_REGISTRY']}/envcap-test-apt-refused"
    built = CliRunner().invoke(cli, ["build", str(path), "--registry", repository,
                                     "--base", facts["ENVCAP_TEST_BASE_BOOKWORM"]])
    assert built.exit_code == 2, built.output
    assert f"libexpat1={MISSING}" in built.output and "ENVCAP_APT_ARCHIVE" in built.output
    assert "base image:" not in built.output and "Traceback" not in built.output
    assert Registry(Repository.parse(repository)).manifest_digest(tag_for(manifest.env_id)) is None
