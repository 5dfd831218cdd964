"""Issue 20 item 3: `envcap ui` answers only the Host names it serves (DNS rebinding)."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
from pathlib import Path

from ui_support import experiment_records, write_synthetic


def _status(port: int, host: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Host": host} if host is not None else {}
        conn.request("GET", "/api/runs", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_foreign_host_header_gets_400(tmp_path: Path) -> None:
    write_synthetic(tmp_path, experiment_records(3))
    proc = subprocess.Popen([sys.executable, "-m", "envcap", "ui", "--port", "0", "--allow-host", "envcap.lab.example"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "ENVCAP_HOME": str(tmp_path)})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        port = int(found.group(1))
        # A page on evil.example whose name now resolves to 127.0.0.1 sends its own Host.
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "", "localhost.evil.example"):
            assert _status(port, host) == 400, host
        for host in (None, f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "envcap.lab.example"):
            assert _status(port, host) == 200, host
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_served_hosts() -> None:
    from envcap.cli.ui import served_hosts

    assert set(served_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "::1"}
    assert "node7.lab" in served_hosts("10.1.2.3", ("node7.lab",))
    assert "localhost" not in served_hosts("10.1.2.3")
