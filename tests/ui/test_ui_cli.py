"""``envcap ui`` as a user starts it: loopback by default, the address printed, a clear
error for a store that is not there."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ui_support import experiment_records, write_synthetic


@pytest.mark.parametrize("how", ["--store", "ENVCAP_HOME"])
def test_serves_on_loopback_and_prints_the_address(tmp_path: Path, how: str) -> None:
    write_synthetic(tmp_path, experiment_records(3))
    given = ["--store", str(tmp_path)] if how == "--store" else []
    proc = subprocess.Popen([sys.executable, "-m", "envcap", "ui", *given, "--port", "0"], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "ENVCAP_HOME": str(tmp_path) if not given else "/nonexistent"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.fullmatch(r"envcap ui: serving the store on http://127\.0\.0\.1:(\d+)/ \(Ctrl-C stops it\)\n", line)
        assert found, line
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=60)
        conn.request("GET", "/api/runs")
        response = conn.getresponse()
        assert response.status == 200 and b'"total":3' in response.read()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_missing_store_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "envcap", "ui", "--store", str(tmp_path / "none"), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("envcap: error: no envcap store at ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "none").exists()
