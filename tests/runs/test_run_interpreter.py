"""Which Python a command runs: the environment a run records is that interpreter's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import Venv
from runs_helpers import envcap, run_id_of, show

from envcap.core.errors import UsageError
from envcap.runs.runner import resolve_python

HERE = os.path.dirname(sys.executable)


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def env(**extra: str) -> dict[str, str]:
    return {"PATH": f"{HERE}:/usr/bin:/bin", **extra}


def test_the_interpreter_named_by_the_command(tmp_path: Path) -> None:
    choice = resolve_python(["python", "train.py"], option=None, env=env(), cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (os.path.join(HERE, "python"), "command")
    choice = resolve_python([sys.executable, "-m", "pkg"], option=None, env=env(), cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (sys.executable, "command")
    wrapped = resolve_python(["env", "OMP_NUM_THREADS=1", "python3", "t.py"], option=None, env=env(),
                             cwd=str(tmp_path))
    assert wrapped.how == "command" and wrapped.executable == os.path.join(HERE, "python3")


def test_a_scripts_shebang(tmp_path: Path) -> None:
    via_env = script(tmp_path / "train", "#!/usr/bin/env python3\nprint(1)\n")
    choice = resolve_python([str(via_env)], option=None, env=env(), cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (os.path.join(HERE, "python3"), "shebang")
    direct = script(tmp_path / "tool", f"#!{sys.executable}\nprint(1)\n")
    (tmp_path / "bin").mkdir()
    os.symlink(direct, tmp_path / "bin" / "tool")
    choice = resolve_python(["tool", "--flag"], option=None, env={"PATH": str(tmp_path / "bin")},
                            cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (sys.executable, "shebang")


def test_else_the_active_virtual_environment_else_python3(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script(venv / "bin" / "python", "#!/bin/sh\n")
    shell = script(tmp_path / "run.sh", "#!/bin/sh\necho hi\n")
    choice = resolve_python([str(shell)], option=None, env=env(VIRTUAL_ENV=str(venv)), cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (str(venv / "bin" / "python"), "virtual_env")
    choice = resolve_python([str(shell)], option=None, env=env(), cwd=str(tmp_path))
    assert choice.how == "path" and choice.executable == os.path.join(HERE, "python3")


def test_the_python_option_wins(tmp_path: Path) -> None:
    choice = resolve_python(["python", "x.py"], option=sys.executable, env=env(), cwd=str(tmp_path))
    assert (choice.executable, choice.how) == (sys.executable, "option")
    with pytest.raises(UsageError):
        resolve_python(["python"], option=str(tmp_path / "nope"), env=env(), cwd=str(tmp_path))


def test_a_run_records_the_commands_interpreter_not_envcaps(tmp_path: Path, venv: Venv) -> None:
    proc = envcap("run", "--", venv.python, "-c", "import six", cwd=tmp_path, check=True)
    view = show(run_id_of(proc))
    assert view["python"]["executable"] == venv.python
    manifest = envcap("show", view["manifest"][7:], "--json", check=True).stdout
    import json

    packages = {p["name"] for p in json.loads(manifest)["sections"]["python"]["packages"]}
    assert "six" in packages and "envcap" not in packages
