"""envcap lock / build / images through click, and the failures that must record nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from buildtest_support import BOOKWORM_SECTIONS, CONDA_SECTIONS, indexes, manifest_from
from click.testing import CliRunner

from envcap.store import images as image_store
from envcap.builder.base import base_keys, choose_base, load_map
from envcap.pins.errors import BuildError
from envcap.builder.lock import lock
from envcap.builder.pipeline import BuildOptions, build, check_arch, tag_for
from envcap.builder.registry import Registry, Repository
from envcap.cli.main import _Group
from envcap.cli.build import build as build_cmd
from envcap.cli.build import images as images_cmd
from envcap.cli.build import lock as lock_cmd
from envcap.core.errors import UsageError
from envcap.store.embedded import Store


@pytest.fixture()
def cli() -> click.Group:
    group = _Group(name="envcap")
    for command in (lock_cmd, build_cmd, images_cmd):
        group.add_command(command)
    return group


def _manifest_file(tmp_path: Path, sections: dict[str, Any] = BOOKWORM_SECTIONS, **kw: Any) -> Path:
    path = tmp_path / "m.json"
    path.write_text(manifest_from(sections, **kw).to_json())
    return path


def _no_images() -> None:
    with Store() as store:
        assert image_store.images(store) == []


def _with(sections: dict[str, Any], changes: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """BOOKWORM_SECTIONS with some Python packages' origins changed (None: the package left out)."""
    python = sections["python"]
    packages = [{**p, "origin": changes[p["name"]]} if changes.get(p["name"]) else p
                for p in python["packages"] if not (p["name"] in changes and changes[p["name"]] is None)]
    return {**sections, "python": {**python, "packages": packages}}


def test_lock_command_writes_files_and_names_what_it_cannot_pin(cli: click.Group, tmp_path: Path) -> None:
    from buildtest_support import GitServer
    from conftest import git_first_commit

    # A local wheel, a remote repository and an editable checkout, none on this machine nor
    # carried by an imported bundle: refused, every one named at once.
    dead = {"mylib": {"kind": "vcs", "vcs": "git", "url": "http://127.0.0.1:9/mylib.git", "commit": "1" * 40}}
    refused = CliRunner().invoke(cli, ["lock", str(_manifest_file(tmp_path, _with(BOOKWORM_SECTIONS, dead))),
                                       "-o", str(tmp_path / "out")])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "3 packages cannot be had" in refused.output
    assert "python package localwheel 1.2.3 (the local wheel /wheels/localwheel-1.2.3-py3-none-any.whl) cannot " \
           "be had" in refused.output and "envcap export RUN carries it" in refused.output
    assert f"python package mylib 2.0.0 (git+http://127.0.0.1:9/mylib.git at {'1' * 40}) cannot be had: the " \
           "remote cannot be reached" in refused.output
    assert "python package editme 0.0.1 (installed editable from /src/editme at fedcba98" in refused.output
    assert not (tmp_path / "out").exists()
    # The remote answers and the checkout is here: both are carried, and the lock is written.
    checkout = tmp_path / "src" / "editme"
    checkout.mkdir(parents=True)
    (checkout / "editme.py").write_text("X = 1\n")
    commit = git_first_commit(checkout)
    with GitServer(tmp_path / "served") as server:
        url = server.publish(checkout, "mylib")
        sections = _with(BOOKWORM_SECTIONS, {
            "localwheel": None,
            "mylib": {"kind": "vcs", "vcs": "git", "url": url, "commit": commit},
            "editme": {"kind": "editable", "url": f"file://{checkout}",
                       "git": {"commit": commit, "branch": "main", "dirty": False}}})
        path = _manifest_file(tmp_path, sections)
        with indexes() as (main, torch):
            args = ["lock", str(path), "-o", str(tmp_path / "out"), "--index-url", main.url,
                    "--extra-index-url", torch.url]
            first = CliRunner().invoke(cli, args)
            second = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "apt-snapshot.sources", "apt.txt", "requirements-vcs.txt", "requirements.txt"]
    assert f"mylib @ git+{url}@{commit}" in (tmp_path / "out" / "requirements-vcs.txt").read_text()
    assert f"editme==0.0.1: {checkout} (editable checkout at commit {commit})" in \
        (tmp_path / "out" / "requirements.txt").read_text()
    assert "not locked: python editme" not in first.output
    assert "asked the index for 3 project page(s)" in first.output
    assert "every index hash came from the cache" in second.output


def test_lock_refuses_a_hostile_manifest_naming_the_field(cli: click.Group, tmp_path: Path) -> None:
    sections = {**BOOKWORM_SECTIONS, "system": {"manager": "dpkg", "packages": [
        {"name": "jq", "version": "1.0\nRUN curl x|sh", "arch": "amd64"}]}}
    result = CliRunner().invoke(cli, ["lock", str(_manifest_file(tmp_path, sections)), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "envcap: error: manifest refused: sections.system.packages[0].version" in result.output
    assert not (tmp_path / "o").exists()


def test_build_with_the_registry_unreachable_fails_clearly(cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(_manifest_file(tmp_path)), "--registry", "127.0.0.1:9/envs"])
    assert result.exit_code == 2
    assert "the registry 127.0.0.1:9 is unreachable" in result.output and "scripts/testbed.sh up" in result.output
    _no_images()


def test_build_with_the_daemon_down_fails_clearly(cli: click.Group, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    from buildtest_support import FakeIndex

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    # A registry that answers (a loopback server that says 200 to /v2/ and 404 to the rest).
    with FakeIndex({}) as fake:
        fake_registry = fake.url.removeprefix("http://").removesuffix("/simple")
        monkeypatch.setattr(Registry, "ping", lambda self: None)
        monkeypatch.setattr(Registry, "manifest_digest", lambda self, ref: None)
        sections = {k: v for k, v in BOOKWORM_SECTIONS.items() if k != "python"}
        result = CliRunner().invoke(cli, ["build", str(_manifest_file(tmp_path, sections)),
                                          "--registry", f"{fake_registry}/envs"])
    assert result.exit_code == 2, result.output
    assert "cannot reach the Docker daemon" in result.output and "DOCKER_HOST" in result.output
    _no_images()


def test_a_manifest_of_another_architecture_is_refused() -> None:
    result = lock(manifest_from(BOOKWORM_SECTIONS, platform={"cpu": {"architecture": "aarch64"}}), hashes=None)
    with pytest.raises(BuildError, match="manifest is of a aarch64 machine and this engine builds x86_64"):
        check_arch(result, "x86_64")
    check_arch(lock(manifest_from(BOOKWORM_SECTIONS), hashes=None), "x86_64")


def test_build_of_another_architecture_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Engine:
        name = "fake"

        def arch(self) -> str:
            return "x86_64"

    monkeypatch.setattr(Registry, "ping", lambda self: None)
    monkeypatch.setattr(Registry, "manifest_digest", lambda self, ref: None)
    m = manifest_from({k: v for k, v in BOOKWORM_SECTIONS.items() if k != "python"},
                      platform={"cpu": {"architecture": "aarch64"}})
    with Store() as store, pytest.raises(BuildError, match="build it on a aarch64 machine"):
        build(m, BuildOptions(registry="127.0.0.1:5000/envs"), store=store, engine=Engine())
    _no_images()


def test_images_lists_records(cli: click.Group) -> None:
    with Store() as store:
        image_store.record(store, image_store.ImageRecord(
            env_id="sha256:" + "e" * 64, repository="127.0.0.1:5000/envs", tag=tag_for("sha256:" + "e" * 64),
            digest="sha256:" + "f" * 64, status="partial", engine="docker", base="b", differences=("x",)))
    out = CliRunner().invoke(cli, ["images", "--json"])
    rows = json.loads(out.output)
    assert rows[0]["reference"] == "127.0.0.1:5000/envs@sha256:" + "f" * 64
    assert rows[0]["status"] == "partial" and rows[0]["differences"] == ["x"]
    assert "partial" in CliRunner().invoke(cli, ["images"]).output


def test_base_keys_and_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert base_keys(manifest_from(BOOKWORM_SECTIONS)) == ["debian:bookworm", "debian:12"]
    assert base_keys(manifest_from(CONDA_SECTIONS))[:3] == ["conda/ubuntu:jammy", "conda/ubuntu:22.04", "conda"]
    official = {**BOOKWORM_SECTIONS, "python": {**BOOKWORM_SECTIONS["python"], "base_prefix": "/usr/local"}}
    assert base_keys(manifest_from(official))[0] == "python-3.11.2/debian:bookworm"
    assert load_map()["debian:bookworm"] == "docker.io/library/debian:bookworm"
    site = tmp_path / "map.toml"
    site.write_text('[bases]\n"debian:bookworm" = "127.0.0.1:5000/b/debian@sha256:' + "a" * 64 + '"\n')
    monkeypatch.setenv("ENVCAP_BASE_MAP", str(site))
    choice = choose_base(manifest_from(BOOKWORM_SECTIONS))
    assert (choice.key, choice.ref) == ("debian:bookworm", "127.0.0.1:5000/b/debian@sha256:" + "a" * 64)
    assert choose_base(manifest_from(BOOKWORM_SECTIONS), override="x.example/y:1").key == "--base"
    with pytest.raises(UsageError, match="--base"):
        choose_base(manifest_from(BOOKWORM_SECTIONS), override="bad ref; rm")
    with pytest.raises(BuildError, match="no base image is mapped.*ENVCAP_BASE_MAP"):
        choose_base(manifest_from({"os": {"id": "plan9", "version_id": "4"}}), mapping={})


def test_repository_parsing() -> None:
    repo = Repository.parse("127.0.0.1:5000/envs/team")
    assert (repo.host, repo.path, repo.loopback) == ("127.0.0.1:5000", "envs/team", True)
    assert not Repository.parse("registry.example/envs").loopback
    with pytest.raises(UsageError, match="--registry"):
        Repository.parse("envs")
    assert tag_for("sha256:" + "ab" * 32) == "env-" + "ab" * 32


def test_fidelity_lists_what_differs_and_marks_the_build_partial() -> None:
    from envcap.builder.fidelity import capture_args, compare

    source = manifest_from(BOOKWORM_SECTIONS, observed={"probes": {"python": {}, "system": {}, "nosuch": {}}})
    changed = {**BOOKWORM_SECTIONS, "system": {"manager": "dpkg", "packages": [
        {"name": "jq", "version": "1.6-2.1+deb12u3", "arch": "amd64"}]}}
    result = compare(source, manifest_from(changed))
    assert not result.complete and result.status == "partial"
    assert "system jq:amd64 1.6-2.1+deb12u2 → 1.6-2.1+deb12u3" in result.differences
    assert "system -tzdata:all 2025b-0+deb12u1" in result.differences
    assert result.lines()[0].startswith("fidelity: PARTIAL")
    assert compare(source, source).status == "complete"
    candidates, args = capture_args(source)
    assert candidates[:2] == ["/usr/bin/python3", "/usr/local/bin/python3"]
    assert args == {"python": "/opt/venv/bin/python", "select": ["python", "system"], "files_only": False}
    # A source read from a file tree is compared with the image read as one.
    from_tree = manifest_from(BOOKWORM_SECTIONS, observed={"root": "/srv/unpacked", "probes": {"python": {}}})
    assert capture_args(from_tree)[1] == {"python": None, "select": ["python"], "files_only": True}
