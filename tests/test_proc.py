"""The program fence (envcap.core.proc): real programs, run through it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.core import proc
from envcap.core.errors import StoreError


def test_the_stream_constants_are_subprocess_own() -> None:
    assert (proc.PIPE, proc.STDOUT, proc.DEVNULL) == (subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)


def test_bytes_are_kept_as_bytes_and_text_is_decoded() -> None:
    script = "import sys; sys.stdout.buffer.write(bytes([0xe9, 0x0a])); sys.stderr.write('warn')"
    raw = proc.run_bytes([sys.executable, "-c", script])
    assert raw is not None and raw.stdout == b"\xe9\n" and raw.stderr == b"warn"
    text = proc.run([sys.executable, "-c", script])
    assert text is not None and text.stdout == "\ufffd\n" and text.returncode == 0


def test_a_missing_program_is_none_and_the_locale_is_c_unless_asked(tmp_path: Path) -> None:
    assert proc.run([str(tmp_path / "no-such-program")]) is None
    show = [sys.executable, "-c", "import os; print(os.environ.get('LC_ALL'))"]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "de_DE.UTF-8"}
    assert proc.run(show, env=env).stdout.strip() == "C"  # type: ignore[union-attr]
    assert proc.run(show, env=env, c_locale=False).stdout.strip() == "de_DE.UTF-8"  # type: ignore[union-attr]


def test_start_streams_and_hands_signals_on() -> None:
    child = proc.start([sys.executable, "-u", "-c",
                        "import signal, sys, time\n"
                        "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM'), sys.exit(3)))\n"
                        "print('ready')\n"
                        "time.sleep(30)\n"], stdout=proc.PIPE, stderr=proc.STDOUT)
    with child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        child.send_signal(signal.SIGTERM)
        assert child.stdout.read() == b"got TERM\n"
        assert child.wait(timeout=30) == 3


def test_a_program_that_cannot_start_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        proc.start([str(tmp_path / "no-such-program")])


def test_git_gives_bytes_or_text_and_check_names_the_command(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert proc.git(["init", "-q"], str(repo), check=True) is not None
    (repo / "latin1.txt").write_bytes(b"caf\xe9\n")
    proc.git(["add", "latin1.txt"], str(repo), check=True)
    raw = proc.git(["show", ":latin1.txt"], str(repo))
    assert raw is not None and raw.stdout == b"caf\xe9\n"
    text = proc.git(["rev-parse", "--is-inside-work-tree"], str(repo), text=True)
    assert text is not None and text.stdout == "true\n"
    with pytest.raises(StoreError, match=r"^git cat-file -e 0{40} failed: "):
        proc.git(["cat-file", "-e", "0" * 40], str(repo), check=True)
