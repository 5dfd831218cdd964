"""Class 9: keys others can read, deep signature files, secrets in scripts and notes
(issue 20 items 5, 8, 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_envcap
from hardening_support import Case  # isort: skip
from hostile_support import make_repo, run_id_of  # isort: skip

CASE = "9. keys, signatures and secrets"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    out = run_envcap("keygen", "--key", str(keys / "k.pem"))
    assert out.returncode == 0, out.stderr
    return keys / "k.pem"


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604])
def test_sign_refuses_a_key_others_can_read(key: Path, tmp_path: Path, mode: int) -> None:
    target = tmp_path / "f.txt"
    target.write_text("x\n")
    key.chmod(mode)
    with Case(CASE):
        out = run_envcap("sign", str(target), "--key", str(key))
        assert out.returncode == 2 and out.stderr.startswith("envcap: error: "), out.stderr
        assert str(key) in out.stderr and f"{mode:04o}" in out.stderr and "chmod 600" in out.stderr
        assert not (tmp_path / "f.txt.sig").exists()
    key.chmod(0o600)
    assert run_envcap("sign", str(target), "--key", str(key)).returncode == 0


def test_sign_refuses_a_key_in_a_directory_others_can_write(key: Path, tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("x\n")
    key.parent.chmod(0o777)
    try:
        with Case(CASE):
            out = run_envcap("sign", str(target), "--key", str(key))
            assert out.returncode == 2, out.stderr
            assert str(key.parent) in out.stderr and "0777" in out.stderr and "chmod go-w" in out.stderr
    finally:
        key.parent.chmod(0o700)


@pytest.mark.parametrize("depth", [1000, 5000, 100000])
def test_a_deep_signature_file_is_a_clear_error(tmp_path: Path, depth: int) -> None:
    target = tmp_path / "f.txt"
    target.write_text("x\n")
    sig = tmp_path / "f.txt.sig"
    sig.write_text("[" * depth + "]" * depth)
    with Case(CASE):
        out = run_envcap("verify", "--signature", str(sig), str(target))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "signature" in out.stderr


DEPLOY = """#!/bin/sh
set -e
mkdir -p build && cp -p app build/
deploy-tool push --token {canary} --env prod
curl -u admin:{canary2} https://deploy.example/hook
"""


def test_an_untracked_script_passing_a_token_is_not_stored(tmp_path: Path, isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": "print('hi')\n"})
    (repo / "deploy.sh").write_text(DEPLOY.format(canary="tokcanary8u3k29x", canary2="pwcanary77q1z"))
    (repo / "Makefile").write_text("all:\n\tmkdir -p out\n")  # no secret: kept
    proc = subprocess.run([sys.executable, "-m", "envcap", "run", "--note", "shipped: deploy --token notecanary5521",
                           "--", sys.executable, "train.py"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = run_id_of(proc)
    run_envcap("note", run_id, "later: curl -u bob:notecanary6632 https://x", check=True)
    everything = b"".join(p.read_bytes() for p in isolated.rglob("*") if p.is_file())
    with Case(CASE):
        for canary in (b"tokcanary8u3k29x", b"pwcanary77q1z", b"notecanary5521", b"notecanary6632"):
            assert canary not in everything, canary
    shown = json.loads(run_envcap("show", run_id, "--json", check=True).stdout)
    untracked = {u["path"]: u for u in shown["git"]["untracked"]}
    assert untracked["deploy.sh"]["object"] is None and "secret" in untracked["deploy.sh"]["withheld"]
    assert untracked["Makefile"]["object"]
    assert os.path.exists(repo / "deploy.sh")
