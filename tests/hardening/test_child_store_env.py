"""Issue 20 item 4: a shared store's password is never handed to a process envcap starts."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

from conftest import run_envcap

from envcap.store.childenv import child_store_env, strip_password

CHILD = """
import json, os, stat, sys
from envcap.store.factory import open_store
from envcap.store.runs import count
env = dict(os.environ)
pf = env.get("PGPASSFILE")
info = {"env": env, "passfile_mode": oct(stat.S_IMODE(os.stat(pf).st_mode)) if pf else None,
        "dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(pf)).st_mode)) if pf else None}
with open_store() as store:                # the child reaches the store with what it was given
    info["runs"] = count(store)
print("CHILD" + json.dumps(info))
"""


def test_the_command_reaches_the_store_without_its_password(pg_url: str, tmp_path: Path) -> None:
    password = urlsplit(pg_url).password
    assert password, "the test bed's URL carries a password"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = run_envcap("--store", pg_url, "run", "--", sys.executable, str(script),
                      env={"ENVCAP_STORE": pg_url})
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("CHILD"))
    info = json.loads(line[len("CHILD"):])
    env = info["env"]
    # (The test bed's own coordinates, ENVCAP_TEST_*, come from the test, not from envcap.)
    leaked = [k for k, v in env.items() if password in v and not k.startswith("ENVCAP_TEST_")]
    assert not leaked, f"the password is in the child's environment: {leaked}"
    assert env["ENVCAP_STORE"].startswith("postgresql://") and "@" in env["ENVCAP_STORE"]
    assert info["passfile_mode"] == "0o600" and info["dir_mode"] == "0o700"
    assert info["runs"] >= 1
    # The passfile is gone once the run is over, and the record holds no password.
    assert not Path(env["PGPASSFILE"]).exists()
    shown = run_envcap("--store", pg_url, "runs", "--json")
    assert shown.returncode == 0, shown.stderr
    assert password not in shown.stdout


def test_child_store_env_forms(tmp_path: Path) -> None:
    env = child_store_env("postgresql://u:p%3Aw%40d@db.example:5433/envcap?sslmode=require", tmp_path / "p")
    assert env["ENVCAP_STORE"] == "postgresql://u@db.example:5433/envcap?sslmode=require"
    passfile = Path(env["PGPASSFILE"])
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text() == "db.example:5433:envcap:u:p\\:w@d\n"
    assert strip_password("postgresql://u@h/db?password=s3&sslmode=x") == ("postgresql://u@h/db?sslmode=x", "s3")
    assert child_store_env("postgresql://u@h/db", tmp_path / "q") == {"ENVCAP_STORE": "postgresql://u@h/db"}
