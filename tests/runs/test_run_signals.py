"""Signals: passed to the command; killed commands and a killed envcap are recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runs_helpers import entry_argv, envcap, run_id_of, run_rows, show

# Says it is ready, then waits; on SIGTERM it writes a marker and exits 7.
WAITER = """\
import os, signal, sys, time
def on_term(signum, frame):
    open("got-term", "w").write("yes")
    sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
open("child.pid", "w").write(str(os.getpid()))
print("ready", flush=True)
time.sleep(60)
"""


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "wait.py").write_text(WAITER)
    return subprocess.Popen([*entry_argv(), "run", *args, "--", sys.executable, "wait.py"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"


def wait_for_state(home: Path, state: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = run_rows(home)
        if rows and rows[0][1] == state:
            return str(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"no run reached state {state}")


def test_sigterm_is_passed_to_the_command_and_its_exit_recorded(tmp_path: Path) -> None:
    proc = start(tmp_path)
    wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert (tmp_path / "got-term").read_text() == "yes"
    view = show(run_id_of(subprocess.CompletedProcess([], 0, "", err)))
    assert view["status"] == "failed" and view["exit_code"] == 7


def test_sigint_is_passed_on_and_the_interrupted_run_recorded(tmp_path: Path) -> None:
    proc = start(tmp_path)
    wait_ready(proc)
    proc.send_signal(signal.SIGINT)  # not from a terminal: envcap passes it on
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    view = show(run_id_of(subprocess.CompletedProcess([], 0, "", err)))
    assert view["signal"] == "SIGINT" and view["exit_code"] == 130 and view["status"] == "killed"


def test_a_command_killed_by_a_signal_is_recorded(tmp_path: Path) -> None:
    proc = envcap("run", "--", sys.executable, "-c", "import os; os.kill(os.getpid(), 9)", cwd=tmp_path)
    assert proc.returncode == 137
    view = show(run_id_of(proc))
    assert view["signal"] == "SIGKILL" and view["exit_code"] == 137 and view["state"] == "finished"


def test_a_killed_envcap_leaves_a_whole_record_marked_unfinished(tmp_path: Path, isolated: Path) -> None:
    proc = start(tmp_path, "--note", "will be killed")
    wait_ready(proc)
    run_id = wait_for_state(isolated, "unfinished")
    # Wait until the record taken while the command runs (with the environment) is in.
    deadline = time.monotonic() + 20
    while not show(run_id).get("env_id") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGKILL)
    proc.communicate()  # the command held the pipes too
    view = show(run_id)
    assert view["state"] == "unfinished" and view["status"] == "unfinished"
    assert view["exit_code"] is None and view["env_id"] and view["git"]["in_repository"] is False
    assert [n["text"] for n in view["notes"]] == ["will be killed"]
    assert envcap("verify").returncode == 0
    assert "unfinished" in envcap("runs", check=True).stdout


@pytest.mark.parametrize("delay", [0.1, 0.18, 0.25, 0.32, 0.45])
def test_killing_envcap_at_any_moment_never_leaves_a_torn_record(tmp_path: Path, isolated: Path,
                                                                 delay: float) -> None:
    # envcap starts in about 0.15 s; the command lasts 0.2 s: the kill lands before,
    # during and after the command, while records are being written.
    proc = subprocess.Popen([*entry_argv(), "run", "--", sys.executable, "-c", "import time; time.sleep(0.2)"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    for run_id, state in run_rows(isolated):
        view = show(run_id)  # every record the index names is whole and verifies
        assert view["state"] == state
    if (isolated / "index.sqlite").exists():
        verify = envcap("verify")
        assert verify.returncode == 0, verify.stdout
