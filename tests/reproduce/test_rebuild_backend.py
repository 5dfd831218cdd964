"""The build backend of the run's own package (what its editable install needs), and the
launcher's install step: which way pip is asked, in which order (real /bin/sh; the
end-to-end tests run it with the real pip in the image)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from envcap.engines.spec import ContainerSpec
from envcap.reproduce.backend import DEFAULT_REQUIRES, requires_of
from envcap.reproduce.launch import launcher


def test_the_backend_is_what_the_pyproject_declares(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["hatchling>=1.20", "hatch-vcs"]\n'
                                            'build-backend = "hatchling.build"\n')
    assert requires_of(tmp_path) == ("hatchling>=1.20", "hatch-vcs")


def test_no_build_system_is_pep_517s_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert requires_of(tmp_path) == DEFAULT_REQUIRES
    other = tmp_path / "legacy"
    other.mkdir()
    (other / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    assert requires_of(other) == DEFAULT_REQUIRES


def test_an_unreadable_pyproject_gives_no_backend(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[build-system\nrequires = [")
    assert requires_of(tmp_path) is None
    assert requires_of(tmp_path / "nothing-here") is None


FAKE_PYTHON = """#!/bin/sh
# Logs how pip was asked; fails the ways named in $FAIL.
echo "PYTHONPATH=${PYTHONPATH:-} $*" >>"$LOG"
case "$* ${PYTHONPATH:-}" in
  *--no-build-isolation*/backend*) case "$FAIL" in *backend*) exit 1;; esac;;
  *--no-build-isolation*) case "$FAIL" in *image*) exit 1;; esac;;
  *"-m pip"*) case "$FAIL" in *index*) exit 1;; esac;;
esac
exit 0
"""


def _launch(tmp: Path, backend: str, fail: str) -> tuple[list[str], Path]:
    out = tmp / "out"
    out.mkdir()
    py = tmp / "python"
    py.write_text(FAKE_PYTHON)
    py.chmod(0o755)
    spec = ContainerSpec(image="x", argv=("/bin/true",), workdir=str(tmp))
    argv = launcher(spec, str(out), "pass", {}, [str(py)], [(str(py), str(tmp / "pkg"))], backend=backend)
    log = tmp / "log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(argv, env={**env, "LOG": str(log), "FAIL": fail}, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    calls = [line for line in log.read_text().splitlines() if " -m pip " in f" {line} "]
    return calls, out


def test_the_mounted_backend_is_tried_first_without_index_or_isolation(tmp_path: Path) -> None:
    calls, out = _launch(tmp_path, "/backend", "")
    assert len(calls) == 1 and calls[0].startswith("PYTHONPATH=/backend ")
    assert "--no-build-isolation --no-index" in calls[0]
    assert (out / "editable.how").read_text().split() == ["backend"]
    assert float((out / "installed").read_text()) >= float((out / "installing").read_text())


def test_without_a_backend_the_image_then_the_index(tmp_path: Path) -> None:
    calls, out = _launch(tmp_path, "", "image")
    assert len(calls) == 2 and "--no-index" in calls[0] and "--no-index" not in calls[1]
    assert all(c.startswith("PYTHONPATH= ") for c in calls)
    assert (out / "editable.how").read_text().split() == ["index"]


def test_a_backend_that_fails_falls_back_to_the_index_and_a_failure_is_noted(tmp_path: Path) -> None:
    calls, out = _launch(tmp_path, "/backend", "backend")
    assert len(calls) == 2 and calls[1].startswith("PYTHONPATH= ") and "--no-index" not in calls[1]
    assert not (out / "editable.failed").exists()
    again = tmp_path / "again"
    again.mkdir()
    calls, out = _launch(again, "/backend", "backend index")
    assert len(calls) == 2 and (out / "editable.failed").read_text().split() == [str(again / "pkg")]


def test_the_run_is_dropped_to_the_callers_ids_with_the_environment_it_would_have_had(tmp_path: Path) -> None:
    """As root (the container for a caller who is not root), the launcher runs the command as
    uid:gid with no supplementary groups, and Python's own start-up leaves no LC_CTYPE."""
    import pytest

    python = Path("/usr/bin/python3")
    if os.getuid() != 0 or not python.is_file():
        pytest.skip("needs root and /usr/bin/python3")
    out = tmp_path / "out"
    out.mkdir()
    spec = ContainerSpec(image="x", argv=("/bin/sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) ${LC_CTYPE-unset}"'),
                         workdir=str(tmp_path))
    argv = launcher(spec, str(out), "pass", {}, [str(python)], drop="4242:4243")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("LANG", "LANGUAGE")}
    done = subprocess.run(argv, env={**env, "LC_ALL": ""}, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4242", "4243", "4243", "unset"]
    kept = subprocess.run(argv, env={**env, "LC_CTYPE": "C.UTF-8"}, capture_output=True, text=True, check=False)
    assert kept.stdout.split()[-1] == "C.UTF-8"


def test_checkouts_the_build_restored_are_given_to_the_caller_before_the_run(tmp_path: Path) -> None:
    """A sibling checkout the build restored in the image is root's; on the run's machine it
    was the caller's, and git reads the state of no checkout another user owns. The
    launcher gives it to the caller before the run (and only when it drops to them)."""
    import shutil
    import tempfile

    import pytest
    from conftest import git_first_commit

    python = Path("/usr/bin/python3")
    if os.getuid() != 0 or not python.is_file() or shutil.which("git") is None:
        pytest.skip("needs root, git and /usr/bin/python3")
    root = Path(tempfile.mkdtemp(prefix="envcap-own-"))
    try:
        root.chmod(0o755)
        sibling = root / "lab" / "siblinglib"
        sibling.mkdir(parents=True)
        (sibling / "a.py").write_text("A = 1\n")
        git_first_commit(sibling)
        out = root / "out"
        out.mkdir()
        status = f'git -C {sibling} status --porcelain >/dev/null 2>&1; echo "rc=$?"'
        spec = ContainerSpec(image="x", argv=("/bin/sh", "-c", status), workdir=str(root))
        env = {**os.environ, "HOME": str(root)}
        kept = subprocess.run(launcher(spec, str(out), "pass", {}, [str(python)], drop="4242:4243"),
                              env=env, capture_output=True, text=True, check=False)
        assert kept.stdout.split() == ["rc=128"], kept.stderr  # git: "dubious ownership"
        given = subprocess.run(launcher(spec, str(out), "pass", {}, [str(python)], drop="4242:4243",
                                        own=[str(sibling), str(root / "gone")]),
                               env=env, capture_output=True, text=True, check=False)
        assert given.stdout.split() == ["rc=0"], given.stderr
        assert all(p.stat().st_uid == 4242 for p in [sibling, *sibling.rglob("*")])
        assert root.stat().st_uid == 0 and (root / "lab").stat().st_uid == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
