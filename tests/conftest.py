"""Shared fixtures. Every test runs with its own store and no user configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

TESTDATA = Path(__file__).parent / "testdata"
H200 = TESTDATA / "gpu-h200-ubuntu24"
H200_TREE = H200 / "fstree"


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ENVCAP_HOME, no config file, and no envcap variables from the caller."""
    home = tmp_path_factory.mktemp("envcap-home")
    for name in list(os.environ):
        # The test bed's coordinates (ENVCAP_TEST_*) stay; envcap's own settings go.
        if name.startswith("ENVCAP_") and not name.startswith("ENVCAP_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ENVCAP_HOME", str(home))
    monkeypatch.setenv("ENVCAP_CONFIG", str(home / "no-config.toml"))
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(home / "cache"))
    from envcap.core import redact
    from envcap.store import factory

    redact.reset_default()
    # A command run in this process (click's CliRunner) with --store selects that store
    # for the rest of the process: each test starts with none selected.
    monkeypatch.setattr(factory, "_selected", None)
    return home


def run_envcap(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``envcap`` entry point in a child process."""
    proc = subprocess.run(
        [sys.executable, "-m", "envcap", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"envcap {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


class Venv:
    """A real virtual environment made with ``python -m venv`` and filled by pip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = str(path / "bin" / "python")

    def pip(self, *args: str) -> str:
        proc = subprocess.run(
            [self.python, "-m", "pip", "--disable-pip-version-check", *args],
            capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            raise AssertionError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def git_first_commit(path: Path, message: str = "one", *, branch: str = "main") -> str:
    """Make ``path`` a git repository whose first commit holds every file in it; that commit."""
    git(path, "init", "-q", "-b", branch)
    git(path, "add", "-A")
    git(path, "commit", "-qm", message)
    return git(path, "rev-parse", "HEAD")


def make_project(path: Path, name: str, version: str = "0.1.0") -> Path:
    """A minimal installable project in its own git repository."""
    module = name.replace("-", "_")
    (path / module).mkdir(parents=True)
    (path / module / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (path / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
        f"[project]\nname = {name!r}\nversion = {version!r}\n"
        f"[tool.setuptools]\npackages = [{module!r}]\n"
    )
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A venv holding packages from every kind of origin pip records.

    From the index (six), a local wheel file, a VCS checkout (git+file://) and an
    editable checkout, so that origins are tested against what pip really writes.
    """
    base = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(base / "env")], check=True, timeout=300)
    env = Venv(base / "env")
    env.pip("install", "-q", "six==1.16.0", "setuptools>=70", "wheel")
    wheel_src = make_project(base / "wheelsrc", "envcap-test-wheel", "1.2.3")
    env.pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(base / "wheels"), str(wheel_src))
    wheel = next((base / "wheels").glob("*.whl"))
    env.pip("install", "-q", str(wheel))
    vcs_src = make_project(base / "vcssrc", "envcap-test-vcs", "2.0.0")
    env.pip("install", "-q", "--no-build-isolation", f"git+file://{vcs_src}")
    editable_src = make_project(base / "editsrc", "envcap-test-editable", "0.0.1")
    env.pip("install", "-q", "--no-build-isolation", "-e", str(editable_src))
    extra_src = make_project(base / "extrasrc", "envcap-test-extra", "0.9")
    env.pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(base / "extra"), str(extra_src))
    env.extra_wheel = next((base / "extra").glob("*.whl"))  # type: ignore[attr-defined]
    env.wheel = wheel  # type: ignore[attr-defined]
    env.vcs_src = vcs_src  # type: ignore[attr-defined]
    env.editable_src = editable_src  # type: ignore[attr-defined]
    return env


# -- the two store backends ----------------------------------------------------------------------

def pg_admin_url() -> str | None:
    """The test bed's PostgreSQL (scripts/testbed.sh), or None when it is not running.

    Where the test bed is required (scripts/test.sh sets ENVCAP_TEST_REQUIRE_PG=1, as CI
    does) a missing server fails the tests that need it instead of skipping them.
    """
    url = os.environ.get("ENVCAP_TEST_PG")
    if not url and os.environ.get("ENVCAP_TEST_REQUIRE_PG") == "1":
        pytest.fail("ENVCAP_TEST_PG is not set but the PostgreSQL test bed is required: run scripts/testbed.sh up")
    return url or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty database on the test bed's server, dropped afterwards."""
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL test bed (ENVCAP_TEST_PG): run scripts/testbed.sh up")
    psycopg = pytest.importorskip("psycopg")
    name = f"envcap_t_{os.getpid()}_{os.urandom(4).hex()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["embedded", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs twice: on an embedded store (a directory) and on PostgreSQL."""
    if request.param == "embedded":
        return str(tmp_path / "store")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def any_store(store_url: str) -> Iterator[Any]:
    """A new, empty store of each backend (see ``store_url``)."""
    from envcap.store.factory import open_store

    with open_store(store_url, create=True) as store:
        yield store


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The attack generators' tally (tests/hardening): cases tried and cases held."""
    support = sys.modules.get("hardening_support")
    for line in support.summary_lines() if support is not None else []:
        terminalreporter.write_line(line)
