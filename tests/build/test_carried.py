"""What no index serves: found on this machine or in what a bundle carried, else refused.

Real git repositories and a real store; the lock runs render-only for the index (no
hashes asked), since only the local packages are under test here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from buildtest_support import BOOKWORM_SECTIONS, manifest_from
from conftest import git, git_first_commit

from envcap.builder.carry import StoreSources
from envcap.pins.errors import LockError
from envcap.builder.lock import lock
from envcap.store import carried
from envcap.store.embedded import Store


def _sections(repo: Path, wheel: Path, sha: str, commit: str) -> dict[str, Any]:
    python = BOOKWORM_SECTIONS["python"]
    packages = [p for p in python["packages"] if p["name"] in ("six", "idna")] + [
        {"name": "gitdep", "version": "0.3", "installer": "pip", "requested": True,
         "origin": {"kind": "vcs", "vcs": "git", "url": f"file://{repo}", "commit": commit}},
        {"name": "carrywheel", "version": "0.1", "installer": "pip", "requested": True,
         "origin": {"kind": "file", "url": f"file://{wheel}", "sha256": sha}},
    ]
    return {**BOOKWORM_SECTIONS, "python": {**python, "packages": packages}}


@pytest.fixture()
def local(tmp_path: Path) -> dict[str, Any]:
    repo = tmp_path / "srv" / "gitdep"
    repo.mkdir(parents=True)
    (repo / "gitdep.py").write_text("X = 1\n")
    commit = git_first_commit(repo)
    (repo / "gitdep.py").write_text("X = 2\n")
    git(repo, "commit", "-qam", "two")  # the branch moved on: the recorded commit is the first
    wheel = tmp_path / "share" / "carrywheel-0.1-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"PK not really a wheel, but bytes with a hash")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    manifest = manifest_from(_sections(repo, wheel, sha, commit))
    return {"repo": repo, "wheel": wheel, "sha": sha, "commit": commit, "manifest": manifest}


def test_needs_lists_local_wheels_and_local_git_repositories(local: dict[str, Any]) -> None:
    deps = carried.needs(local["manifest"])
    assert [(d.name, d.kind, d.member) for d in deps] == [
        ("carrywheel", "wheel", "deps/wheels/carrywheel-0.1-py3-none-any.whl"),
        ("gitdep", "git", f"deps/git/gitdep-{local['commit']}.bundle")]
    # Index packages are not carried; a remote VCS URL and an editable checkout are, unless the
    # checkout is the run's own repository (its rebuild installs it from the run's code).
    other = manifest_from(BOOKWORM_SECTIONS)
    assert [(d.name, d.kind, d.remote) for d in carried.needs(other)] == [
        ("editme", "editable", False), ("localwheel", "wheel", False), ("mylib", "git", True)]
    assert [d.name for d in carried.needs(other, own=["/src"])] == ["localwheel", "mylib"]
    assert [d.name for d in carried.needs(other, own=["/sr"])] == ["editme", "localwheel", "mylib"]


def test_a_git_bundle_holds_the_recorded_commit_as_its_head(local: dict[str, Any], tmp_path: Path) -> None:
    [_, dep] = carried.needs(local["manifest"])
    data = carried.git_here(dep)
    assert data is not None
    (tmp_path / "b.bundle").write_bytes(data)
    subprocess.run(["git", "clone", "-q", "--bare", str(tmp_path / "b.bundle"), str(tmp_path / "back.git")], check=True)
    assert git(tmp_path / "back.git", "rev-parse", "HEAD").strip() == local["commit"]


def test_the_lock_finds_them_here_then_in_the_store_then_refuses(local: dict[str, Any], tmp_path: Path) -> None:
    manifest = local["manifest"]
    with Store(tmp_path / "home") as store:
        result = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch"))
        vcs = result.files["requirements-vcs.txt"]
        assert f"git+file://{local['repo']}#egg=gitdep" in vcs and " @ git+file" not in vcs
        [pin] = result.pip_vcs
        assert pin.carried and Path(pin.carried).is_file() and pin.repo_path == str(local["repo"])
        # The build context names the repository's path and its served bundle; the bundle itself
        # is served, never copied into the context.
        from envcap.builder.dockerfile import render

        rendered = render(manifest, result, "127.0.0.1:5000/base@sha256:" + "0" * 64)
        assert rendered.files["vcs-restore.txt"] == f"git/gitdep.bundle {local['repo']} -\n"
        assert rendered.carried == {"git/gitdep.bundle": pin.carried}
        assert '"vcs-restore.txt"' in rendered.dockerfile
        # Carried into the store (as envcap import does), then gone from this machine.
        for dep in carried.needs(manifest):
            data = carried.here(dep)
            assert data is not None
            oid = store.put_object(data)
            carried.ensure_tables(store)
            store.transaction([("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, len(data), "carried")),
                               *carried.statements(dep, oid)])
        subprocess.run(["rm", "-rf", str(local["repo"]), str(local["wheel"])], check=True)
        result = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch2"))
        [wheel_pin] = [p for p in result.pip_hashed if p.name == "carrywheel"]
        assert wheel_pin.local_file and Path(wheel_pin.local_file).name == "carrywheel-0.1-py3-none-any.whl"
        assert hashlib.sha256(Path(wheel_pin.local_file).read_bytes()).hexdigest() == local["sha"]
        # Installed from its recorded path (put back there by the step), as the run's pip did.
        assert f"carrywheel @ file://{local['wheel']}#sha256={local['sha']}" in result.files["requirements.txt"]
        rendered = render(manifest, result, "127.0.0.1:5000/base@sha256:" + "0" * 64)
        assert rendered.files["wheel-restore.txt"] == f"carrywheel-0.1-py3-none-any.whl {local['wheel']}\n"
        assert rendered.wheels == {"carrywheel-0.1-py3-none-any.whl": wheel_pin.local_file}
    # A store that carries nothing: refused, naming the package and what to do.
    with Store(tmp_path / "empty") as store, pytest.raises(LockError) as info:
        lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch3"))
    assert f"python package gitdep 0.3 (git+file://{local['repo']} at {local['commit']}) cannot be had" \
        in str(info.value)
    assert "envcap export RUN carries it" in str(info.value)


def test_a_carried_wheel_that_is_not_the_recorded_one_is_not_used(local: dict[str, Any], tmp_path: Path) -> None:
    [dep, _] = carried.needs(local["manifest"])
    with Store(tmp_path / "home") as store:
        oid = store.put_object(b"another wheel")
        carried.ensure_tables(store)
        store.transaction([("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, 13, "carried")),
                           *carried.statements(dep, oid)])
        assert carried.find(store, dep) is None


def test_a_carried_wheel_is_found_again_in_either_store(local: dict[str, Any], any_store: Any) -> None:
    """The shared store has the carried table too (its migration to version 3 makes it: a
    module's own CREATE TABLE never runs on PostgreSQL), so a bundle imported there keeps
    what no index serves."""
    [dep] = [d for d in carried.needs(local["manifest"]) if d.kind == "wheel"]
    data = carried.here(dep)
    assert data is not None
    oid = any_store.put_object(data)
    carried.ensure_tables(any_store)
    any_store.transaction([("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, len(data), "carried")),
                           *carried.statements(dep, oid), *carried.statements(dep, oid)])
    assert carried.find(any_store, dep) == data


def test_sizes_are_read_as_people_write_them() -> None:
    assert carried.parse_size("200M") == 200 << 20 and carried.parse_size("1K") == 1024
    assert carried.parse_size("2G") == 2 << 30 and carried.parse_size("512") == 512
    with pytest.raises(Exception, match="give a size"):
        carried.parse_size("lots")


def _keep(store: Store, dep: carried.Dependency, data: bytes) -> None:
    """As envcap import does with what a bundle carries."""
    oid = store.put_object(data)
    carried.ensure_tables(store)
    store.transaction([("INSERT OR IGNORE INTO objects VALUES (?, ?, ?)", (oid, len(data), "carried")),
                       *carried.statements(dep, oid)])


def _other_setups(tmp_path: Path, server: Any) -> dict[str, Any]:
    """A package from a remote git server, a sibling checkout installed editable (on a
    branch that moved on since), and the run's own repository installed editable."""
    remote_src = tmp_path / "remote-src"
    remote_src.mkdir()
    (remote_src / "remotedep.py").write_text("Y = 1\n")
    remote_commit = git_first_commit(remote_src)
    url = server.publish(remote_src, "remotedep")
    sibling = tmp_path / "lab" / "siblinglib"
    sibling.mkdir(parents=True)
    (sibling / "siblinglib.py").write_text("Z = 1\n")
    sibling_commit = git_first_commit(sibling, branch="dev")
    (sibling / "siblinglib.py").write_text("Z = 2\n")
    git(sibling, "commit", "-qam", "two")
    python = BOOKWORM_SECTIONS["python"]
    packages = [p for p in python["packages"] if p["name"] in ("six", "idna")] + [
        {"name": "remotedep", "version": "1.0", "installer": "pip", "requested": True,
         "origin": {"kind": "vcs", "vcs": "git", "url": url, "commit": remote_commit}},
        {"name": "siblinglib", "version": "0.2", "installer": "pip", "requested": True,
         "origin": {"kind": "editable", "url": f"file://{sibling}",
                    "git": {"commit": sibling_commit, "branch": "dev", "dirty": False}}},
        {"name": "research", "version": "0.1", "installer": "pip", "requested": True,
         "origin": {"kind": "editable", "url": "file:///work/research",
                    "git": {"commit": "c" * 40, "branch": "main", "dirty": True}}},
    ]
    manifest = manifest_from({**BOOKWORM_SECTIONS, "python": {**python, "packages": packages}})
    return {"url": url, "remote_commit": remote_commit, "sibling": sibling, "sibling_commit": sibling_commit,
            "manifest": manifest}


def _put_run(store: Store, manifest: Any, editables: list[dict[str, Any]] = (), patch: bytes = b"") -> None:
    """A run of the env whose repository is /work/research, as envcap run records one."""
    from envcap.core.run import FINISHED, RunRecord, new_run_id
    from envcap.store import runs as runs_store

    objects = []
    if patch:
        objects.append((store.put_object(patch), len(patch), "run-diff"))
    record = RunRecord(id=new_run_id(), state=FINISHED, mode="cli", argv=("python", "train.py"),
                       command="python train.py", cwd=".", host=None, started_at="2026-12-03T10:00:00.000Z",
                       env_id=manifest.env_id, git={"in_repository": True, "root": "/work/research",
                                                    "editables": list(editables)})
    runs_store.put_record(store, record, objects=objects)


def test_a_remote_repository_and_a_sibling_checkout_are_carried_then_found_in_the_store(tmp_path: Path) -> None:
    from buildtest_support import GitServer

    from envcap.builder.dockerfile import render

    server = GitServer(tmp_path / "served")
    try:
        s = _other_setups(tmp_path, server)
        manifest = s["manifest"]
        # The run's own repository (a run of the env has it) is left to the rebuild, which
        # installs it from the run's code; the other two are carried.
        deps = carried.needs(manifest, own=["/work/research"])
        assert [(d.name, d.kind, d.member) for d in deps] == [
            ("remotedep", "git", f"deps/git/remotedep-{s['remote_commit']}.bundle"),
            ("siblinglib", "editable", f"deps/editable/siblinglib-{s['sibling_commit']}.bundle")]
        with Store(tmp_path / "home") as store:
            _put_run(store, manifest)
            result = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch",
                                                                      env_id=manifest.env_id))
            [remote] = result.pip_vcs
            [sibling] = result.pip_editable
            assert remote.carried and sibling.carried and sibling.repo_path == str(s["sibling"])
            assert [u.name for u in result.unlocked if u.section == "python"] == ["research"]
            assert f"remotedep @ git+{s['url']}@{s['remote_commit']}" in result.files["requirements-vcs.txt"]
            rendered = render(manifest, result, "127.0.0.1:5000/base@sha256:" + "0" * 64)
            assert rendered.files["vcs-restore.txt"] == f"git/remotedep.bundle {s['url']} -\n"
            assert rendered.files["editable-restore.txt"] == \
                f"git/editable-siblinglib.bundle {s['sibling']} dev -\n"
            # The build's step asks for the remote as the run's pip did (no revision).
            assert f"remotedep @ git+{s['url']}\n" in rendered.files["requirements-vcs.txt"]
            assert set(rendered.carried) == {"git/remotedep.bundle", "git/editable-siblinglib.bundle"}
            for dep in deps:
                data = carried.here(dep)
                assert data is not None and carried.bundle_holds(data, dep)
                _keep(store, dep, data)
            # The server retired, the checkout gone: the store has both.
            server.stop()
            subprocess.run(["rm", "-rf", str(s["sibling"])], check=True)
            again = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch2",
                                                                     env_id=manifest.env_id))
            assert again.pip_vcs[0].carried and again.pip_editable[0].carried
        # A store that carries nothing: both named at once, with what to do; the run's own
        # package is not refused.
        with Store(tmp_path / "empty") as store, pytest.raises(LockError) as info:
            _put_run(store, manifest)
            lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "scratch3", env_id=manifest.env_id))
        text = str(info.value)
        assert "2 packages cannot be had" in text and "research" not in text
        assert f"python package remotedep 1.0 (git+{s['url']} at {s['remote_commit']}) cannot be had: the remote " \
               "cannot be reached" in text
        assert f"python package siblinglib 0.2 (installed editable from {s['sibling']} at {s['sibling_commit']}) " \
               "cannot be had: the checkout is not on this machine" in text
        assert "envcap export RUN carries it" in text
    finally:
        server.stop()


def test_lock_offline_asks_no_remote_only_what_the_store_carries(tmp_path: Path) -> None:
    from buildtest_support import GitServer

    server = GitServer(tmp_path / "served")
    try:
        s = _other_setups(tmp_path, server)
        manifest = s["manifest"]
        with Store(tmp_path / "home") as store:
            _put_run(store, manifest)
            # The server answers, but --offline does not ask it: refused, saying why.
            with pytest.raises(LockError) as info:
                lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "s1", env_id=manifest.env_id,
                                                                 offline=True))
            assert f"python package remotedep 1.0 (git+{s['url']} at {s['remote_commit']}) cannot be had: " \
                   "--offline asks no remote" in str(info.value)
            # Once a bundle carried it into the store, the offline lock has it, with the server gone.
            [dep] = [d for d in carried.needs(manifest, own=["/work/research"]) if d.remote]
            data = carried.here(dep)
            assert data is not None
            _keep(store, dep, data)
            server.stop()
            result = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "s2", env_id=manifest.env_id,
                                                                      offline=True))
            assert result.pip_vcs[0].carried
    finally:
        server.stop()


def test_what_passes_the_carry_limit_is_refused_by_the_lock(local: dict[str, Any], tmp_path: Path) -> None:
    with Store(tmp_path / "home") as store, pytest.raises(LockError) as info:
        lock(local["manifest"], hashes=None, sources=StoreSources(store, tmp_path / "scratch", limit=16))
    text = str(info.value)
    assert "cannot be carried" in text and "over the carry limit of 16 bytes" in text
    assert "ENVCAP_CARRY_LIMIT" in text and "python package carrywheel 0.1" in text
    assert "2 packages cannot be had" in text and "is not at that path" not in text  # refused for its size alone


def test_a_carried_bundle_that_is_not_the_recorded_commit_is_not_used(local: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    [_, dep] = carried.needs(local["manifest"])
    other = carried.Dependency(dep.name, dep.version, "git", dep.key, dep.path, "0" * 40)
    data = carried.here(dep)
    assert data is not None and carried.bundle_holds(data, dep) and not carried.bundle_holds(data, other)
    assert not carried.bundle_holds(b"not a bundle", dep)
    with Store(tmp_path / "home") as store:
        _keep(store, other, data)
        assert carried.find(store, other) is None


def test_a_sibling_checkouts_recorded_changes_are_kept_and_applied(tmp_path: Path) -> None:
    """envcap run keeps the uncommitted changes of a dirty sibling checkout (git.editables);
    the build finds them in the run's record and restores the checkout with them."""
    from envcap.builder.dockerfile import render
    from envcap.core.redact import default_redactor
    from envcap.runs.git import Capture, editable_diffs

    sibling = tmp_path / "lab" / "siblinglib"
    sibling.mkdir(parents=True)
    (sibling / "siblinglib.py").write_text("Z = 1\n")
    commit = git_first_commit(sibling)
    (sibling / "siblinglib.py").write_text("Z = 2\n")  # uncommitted
    python = BOOKWORM_SECTIONS["python"]
    packages = [p for p in python["packages"] if p["name"] == "six"] + [
        {"name": "siblinglib", "version": "0.2", "installer": "pip", "requested": True,
         "origin": {"kind": "editable", "url": f"file://{sibling}",
                    "git": {"commit": commit, "branch": "main", "dirty": True}}}]
    manifest = manifest_from({**BOOKWORM_SECTIONS, "python": {**python, "packages": packages}})
    cap = Capture({}, None)
    [entry] = editable_diffs(manifest, "/work/research", default_redactor(), cap)
    assert entry["path"] == str(sibling) and entry["commit"] == commit
    patch = cap.blobs[entry["diff"]["object"]].data
    assert b"-Z = 1\n+Z = 2\n" in patch
    # Untracked files alone: recorded as no tracked change, no empty patch kept.
    git(sibling, "stash", "-q")
    (sibling / "notes.txt").write_text("untracked\n")
    empty = Capture({}, None)
    [clean] = editable_diffs(manifest, "/work/research", default_redactor(), empty)
    assert clean["diff"]["size"] == 0 and clean["diff"]["object"] is None and not empty.blobs
    git(sibling, "stash", "pop", "-q")
    # Inside the run's own repository: not another checkout, nothing kept.
    assert editable_diffs(manifest, str(tmp_path / "lab"), default_redactor(), Capture({}, None)) == []
    with Store(tmp_path / "home") as store:
        # Without a record of the changes: installed at its commit, and the build says so.
        plain = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "s1", env_id=manifest.env_id))
        assert plain.pip_editable[0].patch is None
        notes = render(manifest, plain, "127.0.0.1:5000/base@sha256:" + "0" * 64).notes
        assert any("siblinglib 0.2" in n and "which no record holds" in n for n in notes)
        _put_run(store, manifest, [entry], patch)
        result = lock(manifest, hashes=None, sources=StoreSources(store, tmp_path / "s2", env_id=manifest.env_id))
        [pin] = result.pip_editable
        assert pin.patch and Path(pin.patch).read_bytes() == patch
        rendered = render(manifest, result, "127.0.0.1:5000/base@sha256:" + "0" * 64)
        assert rendered.files["editable-restore.txt"] == \
            f"git/editable-siblinglib.bundle {sibling} main git/editable-siblinglib.patch\n"
        assert rendered.carried["git/editable-siblinglib.patch"] == pin.patch
        assert not any("which no record holds" in n for n in rendered.notes)


def test_build_refuses_a_gone_checkout_and_remote_before_any_build_step(tmp_path: Path) -> None:
    """envcap build (the test bed's registry): exit 2, every package named, no base image
    chosen, nothing pushed, no traceback."""
    from buildtest_support import GitServer, bed_facts
    from click.testing import CliRunner

    from envcap.builder.pipeline import tag_for
    from envcap.builder.registry import Registry, Repository
    from envcap.cli.build import build as build_cmd
    from envcap.cli.main import _Group

    facts = bed_facts()
    with GitServer(tmp_path / "served") as server:
        s = _other_setups(tmp_path, server)
    subprocess.run(["rm", "-rf", str(s["sibling"])], check=True)
    path = tmp_path / "m.json"
    path.write_text(s["manifest"].to_json())
    group = _Group(name="envcap")
    group.add_command(build_cmd)
    repository = f"{facts['ENVCAP_TEST_REGISTRY']}/envcap-test-carry-refused"
    result = CliRunner().invoke(group, ["build", str(path), "--registry", repository,
                                        "--base", facts["ENVCAP_TEST_BASE_BOOKWORM"]])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "base image:" not in result.output
    # No run of this env in the store: every editable checkout is carried, the research one too.
    assert "3 packages cannot be had" in result.output
    for name in ("remotedep 1.0", "siblinglib 0.2", "research 0.1"):
        assert f"python package {name}" in result.output
    assert Registry(Repository.parse(repository)).manifest_digest(tag_for(s["manifest"].env_id)) is None


def test_a_forged_record_of_an_editable_checkouts_changes_is_refused() -> None:
    from envcap.core.errors import StoreError
    from envcap.core.run import FINISHED, RunRecord, check_untrusted, new_run_id

    for bad, match in (({"name": "x", "path": "lab/x", "commit": "c", "diff": {}}, "absolute path"),
                       ({"name": "x", "path": "/lab/x", "commit": "c", "diff": {"object": "../../etc"}}, "object id"),
                       ({"name": "x", "path": "/lab/x", "commit": "c", "diff": "p"}, "JSON object")):
        record = RunRecord(id=new_run_id(), state=FINISHED, mode="cli", argv=("x",), command="x", cwd=".",
                           host=None, started_at="t", git={"in_repository": True, "editables": [bad]})
        with pytest.raises(StoreError, match=match):
            check_untrusted(record, "forged.zip: run.json")


def test_rebuild_refuses_what_cannot_be_had_before_any_build_step(tmp_path: Path) -> None:
    """envcap rebuild of a run whose environment needs a retired remote and a gone sibling
    checkout, its image in no registry: exit 2 naming both, nothing built or pushed, no
    run recorded. (The run's own editable package is not refused: the rebuild installs it.)"""
    from buildtest_support import GitServer, bed_facts

    from envcap.builder.pipeline import tag_for
    from envcap.builder.registry import Registry, Repository
    from envcap.core.run import FINISHED, RunRecord, new_run_id
    from envcap.store import runs as runs_store

    facts = bed_facts()
    with GitServer(tmp_path / "served") as server:
        s = _other_setups(tmp_path, server)
    subprocess.run(["rm", "-rf", str(s["sibling"])], check=True)
    manifest = s["manifest"]
    home = tmp_path / "home"
    with Store(home) as store:
        store.add(manifest)
        run_id = new_run_id()
        runs_store.put_record(store, RunRecord(
            id=run_id, state=FINISHED, mode="cli", argv=("python", "train.py"), command="python train.py", cwd=".",
            host=None, started_at="2026-12-03T10:00:00.000Z", ended_at="2026-12-03T10:00:01.000Z", exit_code=0,
            manifest=manifest.id, env_id=manifest.env_id,
            git={"in_repository": True, "root": "/work/research", "commit": "c" * 40}))
        before = runs_store.all_ids(store)
    repository = f"{facts['ENVCAP_TEST_REGISTRY']}/envcap-test-carry-rebuild-refused"
    proc = subprocess.run([sys.executable, "-m", "envcap", "rebuild", run_id, "--registry", repository,
                           "--base", facts["ENVCAP_TEST_BASE_BOOKWORM"], "--json"],
                          env={**os.environ, "ENVCAP_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "base image:" not in proc.stderr
    assert "2 packages cannot be had" in proc.stderr and "research" not in proc.stderr
    assert "python package remotedep 1.0" in proc.stderr and "python package siblinglib 0.2" in proc.stderr
    assert Registry(Repository.parse(repository)).manifest_digest(tag_for(manifest.env_id)) is None
    with Store(home) as store:
        assert runs_store.all_ids(store) == before


def test_a_remote_that_never_answers_is_not_there_after_the_bounded_wait(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """A private server behind a dropped route: the clone's wait is bounded, and the remote
    counts as gone (named by the refusal), not a traceback."""
    import socket

    monkeypatch.setattr(carried, "REMOTE_TIMEOUT", 1.0)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    try:
        dep = carried.Dependency("remotedep", "1.0", "git", f"https://127.0.0.1:{hole.getsockname()[1]}/lab/x.git"
                                 f"@{'a' * 40}", f"https://127.0.0.1:{hole.getsockname()[1]}/lab/x.git", "a" * 40)
        assert dep.remote
        assert carried.here(dep) is None
    finally:
        hole.close()
