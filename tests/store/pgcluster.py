"""A PostgreSQL cluster of a test's own, for tests that stop and start the server.

It uses the test bed's PostgreSQL binaries (ENVCAP_TEST_PG_BIN, from scripts/testbed.sh)
and runs as the postgres user when the tests run as root (the server refuses root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _as_pg(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self) -> None:
        bindir = os.environ.get("ENVCAP_TEST_PG_BIN")
        if not bindir or not Path(bindir, "pg_ctl").exists():
            pytest.skip("no PostgreSQL binaries (ENVCAP_TEST_PG_BIN): run scripts/testbed.sh up")
        self.bin = Path(bindir)
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="envcap-pgcluster-"))
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self.data = self.dir / "data"
        self.password = "cluster-" + os.urandom(6).hex()
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        self._pg(["initdb", "-D", str(self.data), "-U", "envcap", "-A", "scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--no-locale"])
        pwfile.unlink()
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://envcap:{self.password}@127.0.0.1:{self.port}/postgres"

    def _pg(self, args: list[str]) -> None:
        proc = subprocess.run(_as_pg([str(self.bin / args[0]), *args[1:]]), capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{args[0]} failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "start",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"])

    def stop(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop()
        except AssertionError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
