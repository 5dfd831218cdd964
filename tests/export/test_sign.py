"""`envcap keygen`, `envcap sign FILE` and `envcap verify --signature SIG FILE`: a local
ed25519 key; a flipped byte, a wrong key or a changed signature fails verification;
a missing key is a clear error; `envcap verify` alone still verifies the store."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import run_envcap

pytest.importorskip("cryptography")

from envcap.export import sign as signing


@pytest.fixture()
def signed(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "bundle.zip"
    target.write_bytes(os.urandom(4096))
    proc = run_envcap("sign", str(target), check=True)
    assert "made a new signing key" in proc.stderr, "the first signature makes the local key"
    return target, tmp_path / "bundle.zip.sig"


def test_the_first_signature_makes_a_private_key_only_its_owner_reads(signed: tuple[Path, Path]) -> None:
    key = signing.default_key()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.with_suffix(".pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # Beside the (test's own) configuration file, not in the real home directory.
    assert key.parent == Path(os.environ["ENVCAP_CONFIG"]).parent / "keys"
    doc = json.loads(signed[1].read_text())
    assert doc["format"] == "envcap.signature/1" and doc["algorithm"] == "ed25519"
    assert doc["key_id"] == signing.key_id(signing.load_public(key.with_suffix(".pub")))


def test_a_signed_file_verifies(signed: tuple[Path, Path]) -> None:
    target, sig = signed
    for args in (["--signature", str(sig), str(target)], [str(target)]):
        proc = run_envcap("verify", *args)
        assert proc.returncode == 0 and "verified" in proc.stdout, proc.stderr


def test_a_flipped_byte_fails(signed: tuple[Path, Path]) -> None:
    target, sig = signed
    data = bytearray(target.read_bytes())
    data[1000] ^= 0x01
    target.write_bytes(bytes(data))
    proc = run_envcap("verify", "--signature", str(sig), str(target))
    assert proc.returncode == 1 and "changed after it was signed" in proc.stderr, proc.stderr


def test_a_changed_signature_fails(signed: tuple[Path, Path]) -> None:
    target, sig = signed
    doc = json.loads(sig.read_text())
    raw = bytearray(__import__("base64").b64decode(doc["signature"]))
    raw[0] ^= 0x80
    doc["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))
    proc = run_envcap("verify", "--signature", str(sig), str(target))
    assert proc.returncode == 1 and "does not verify" in proc.stderr, proc.stderr
    # A signature file claiming another file's hash does not verify either.
    doc = json.loads(sig.read_text())
    doc["sha256"] = "sha256:" + "0" * 64
    sig.write_text(json.dumps(doc))
    assert run_envcap("verify", "--signature", str(sig), str(target)).returncode == 1


def test_a_wrong_key_fails(signed: tuple[Path, Path], tmp_path: Path) -> None:
    target, sig = signed
    run_envcap("keygen", "--key", str(tmp_path / "other.pem"), check=True)
    proc = run_envcap("verify", "--signature", str(sig), "--key", str(tmp_path / "other.pub"), str(target))
    assert proc.returncode == 1 and "not by the key trusted here" in proc.stderr, proc.stderr
    # Signed with the other key, it verifies with that key and not with the local one.
    run_envcap("sign", str(target), "--key", str(tmp_path / "other.pem"), "-o", str(tmp_path / "other.sig"),
               check=True)
    assert run_envcap("verify", "--signature", str(tmp_path / "other.sig"), "--key", str(tmp_path / "other.pub"),
                      str(target)).returncode == 0
    assert run_envcap("verify", "--signature", str(tmp_path / "other.sig"), str(target)).returncode == 1


def test_a_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("{}")
    proc = run_envcap("sign", str(target), "--key", str(tmp_path / "nokey.pem"))
    assert proc.returncode == 2 and f"no key at {tmp_path / 'nokey.pem'}" in proc.stderr, proc.stderr
    assert not (tmp_path / "f.json.sig").exists()
    proc = run_envcap("verify", "--signature", str(tmp_path / "f.json.sig"), str(target))
    assert proc.returncode == 2 and "no such signature file" in proc.stderr
    (tmp_path / "f.json.sig").write_text(json.dumps({"format": "envcap.signature/1", "algorithm": "ed25519",
                                                     "sha256": "x", "key_id": "y", "signature": "z"}))
    proc = run_envcap("verify", str(target))
    assert proc.returncode == 2 and "make one with: envcap keygen" in proc.stderr, proc.stderr
    for p in (proc,):
        assert "Traceback" not in p.stderr


def test_keygen_keeps_an_existing_key(tmp_path: Path) -> None:
    run_envcap("keygen", check=True)
    first = signing.default_key().read_bytes()
    proc = run_envcap("keygen")
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert signing.default_key().read_bytes() == first
    run_envcap("keygen", "--force", check=True)
    assert signing.default_key().read_bytes() != first


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")
def test_an_openssh_key_signs_and_its_public_key_verifies(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    target = tmp_path / "a.json"
    target.write_text('{"a": 1}\n')
    run_envcap("sign", str(target), "--key", str(tmp_path / "id"), check=True)
    proc = run_envcap("verify", str(target), "--key", str(tmp_path / "id.pub"))
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "rsa")], check=True)
    proc = run_envcap("sign", str(target), "--key", str(tmp_path / "rsa"))
    assert proc.returncode == 2 and "not ed25519" in proc.stderr, proc.stderr


def test_verify_without_a_file_still_verifies_the_store() -> None:
    run_envcap("snapshot", "--select", "memory", check=True)
    proc = run_envcap("verify")
    assert proc.returncode == 0 and "store verified" in proc.stdout
    proc = run_envcap("verify", "--signature", "x.sig")
    assert proc.returncode == 2 and "checks a FILE" in proc.stderr


def test_without_the_export_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import sys

    from click.testing import CliRunner

    from envcap.cli.main import main

    target = tmp_path / "f"
    target.write_text("x")
    monkeypatch.setitem(sys.modules, "cryptography", None)  # As if it were not installed.
    result = CliRunner().invoke(main, ["sign", str(target)])
    assert result.exit_code == 2
    assert "pip install 'envcap[export]'" in result.output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_verifies_what_envcap_signed(signed: tuple[Path, Path], tmp_path: Path) -> None:
    # Ground truth from another implementation: the signed message is documented, so
    # openssl checks an envcap signature with the public key file alone.
    import base64
    import hashlib

    target, sig = signed
    doc = json.loads(sig.read_text())
    (tmp_path / "msg").write_text(f"envcap.signature/1\nsha256:{hashlib.sha256(target.read_bytes()).hexdigest()}\n")
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(doc["signature"]))
    argv = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(signing.default_key().with_suffix(".pub")),
            "-rawin", "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig.bin")]
    assert subprocess.run(argv, capture_output=True).returncode == 0
    (tmp_path / "msg").write_text("envcap.signature/1\nsha256:" + "0" * 64 + "\n")
    assert subprocess.run(argv, capture_output=True).returncode != 0
