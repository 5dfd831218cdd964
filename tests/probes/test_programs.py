"""Program answers are cached by the binary's identity, and only for binaries."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from envcap.probes import _programs
from envcap.probes.context import Context


def copy_of_gcc(tmp_path: Path) -> str:
    target = tmp_path / "bin" / "mycc"
    target.parent.mkdir()
    gcc = shutil.which("gcc")
    assert gcc is not None
    shutil.copy2(os.path.realpath(gcc), target)
    return str(target)


def test_a_binarys_answer_is_reused_until_the_binary_changes(tmp_path: Path) -> None:
    cc = copy_of_gcc(tmp_path)
    first = Context("/").run([cc, "--version"], cacheable=True)
    assert first is not None and first.returncode == 0
    key = _programs.key([cc, "--version"])
    assert key is not None and _programs.get(key) == first
    # A forged cache entry is what the next snapshot sees: nothing ran.
    _programs.put(key, first._replace(stdout="cached answer"))
    assert Context("/").run([cc, "--version"], cacheable=True).stdout == "cached answer"
    # Touching the binary changes the key: the program runs again.
    os.utime(cc, ns=(1, 1))
    again = Context("/").run([cc, "--version"], cacheable=True)
    assert again is not None and again.stdout == first.stdout


def test_scripts_and_uncacheable_runs_always_run(tmp_path: Path) -> None:
    script = tmp_path / "wrapper"
    script.write_text("#!/bin/sh\necho $RANDOM$$\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert _programs.key([str(script), "--version"]) is None
    a = Context("/").run([str(script), "--version"], cacheable=True)
    b = Context("/").run([str(script), "--version"], cacheable=True)
    assert a is not None and b is not None and a.stdout != b.stdout


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    directory = Path(_programs.cache_dir())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "programs.json").write_text("{not json")
    _programs._loaded.clear()
    cc = copy_of_gcc(tmp_path)
    result = Context("/").run([cc, "--version"], cacheable=True)
    assert result is not None and result.returncode == 0
