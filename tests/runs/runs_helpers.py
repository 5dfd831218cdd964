"""Helpers for the runs tests: the real CLI in a child process, a git project, the store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import git

def envcap(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
           check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*entry_argv(), *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"envcap {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def entry_argv() -> list[str]:
    """The real ``envcap`` entry point, in a child process."""
    return [sys.executable, "-m", "envcap"]


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    for line in proc.stderr.splitlines():
        if line.startswith("envcap: run ") and "recorded" not in line:
            return line.split()[2]
    raise AssertionError(f"no run id in:\n{proc.stderr}")


def show(run_id: str, **kw: Any) -> dict[str, Any]:
    return json.loads(envcap("show", run_id, "--json", check=True, **kw).stdout)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("envcap: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def run_rows(home: Path) -> list[tuple[Any, ...]]:
    """The runs table, or [] when the store (or the table) does not exist."""
    index = home / "index.sqlite"
    if not index.exists():
        return []
    db = sqlite3.connect(index)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []
        return db.execute("SELECT id, state FROM runs").fetchall()
    finally:
        db.close()


def make_repo(path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A git repository with one commit holding ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {"README.md": "hello\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


def every_byte(home: Path) -> bytes:
    """Every byte of every file under the store (index, WAL, objects, leftovers)."""
    out = []
    for root, _, names in os.walk(home):
        for name in names:
            try:
                out.append(Path(root, name).read_bytes())
            except OSError:
                pass
    return b"\n".join(out)
