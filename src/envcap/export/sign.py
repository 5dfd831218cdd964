"""Signing files with a local ed25519 key, and verifying them: no network, no keyring.

Keys (written with ``cryptography``) live beside envcap's configuration file, in
``keys/`` (``~/.config/envcap/keys``, or beside ``$ENVCAP_CONFIG``)::

    envcap-ed25519.pem      the private key, PKCS#8 PEM, mode 0600 (directory 0700)
    envcap-ed25519.pub      its public key, SubjectPublicKeyInfo PEM: give this to reviewers

``--key`` may name any unencrypted ed25519 key in PEM (PKCS#8 or public) or OpenSSH
form (``~/.ssh/id_ed25519``, ``id_ed25519.pub``).

A signature is a small JSON file (``FILE.sig``)::

    {"format": "envcap.signature/1", "algorithm": "ed25519", "file": "bundle.zip",
     "size": 1234, "sha256": "sha256:…", "key_id": "sha256:…", "signature": "<base64>"}

The signed message is the UTF-8 text ``envcap.signature/1\\nsha256:<hex of FILE>\\n``:
the file is hashed as it streams (a bundle may be gigabytes) and the domain prefix
keeps the signature from meaning anything else. ``key_id`` is the sha256 of the raw
32-byte public key. Verification trusts only the key it is given (or the local one),
never a key named in the signature file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import EnvcapError, NotFoundError, UsageError
from ..core.files import write_text_atomic
from .sbom import need

FORMAT = "envcap.signature/1"
PRIVATE = "envcap-ed25519.pem"
PUBLIC = "envcap-ed25519.pub"


class SignatureError(EnvcapError):
    """A file does not verify against its signature: changed, or signed by another key."""

    exit_code = 1


def key_dir() -> Path:
    from ..core.config import config_file

    return Path(config_file()).parent / "keys"


def default_key() -> Path:
    return key_dir() / PRIVATE


def _crypto() -> Any:
    need("cryptography", "cryptography")
    from cryptography.hazmat.primitives import serialization

    return serialization


def key_id(public: Any) -> str:
    serialization = _crypto()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    private: Path
    public: Path
    key_id: str


def keygen(path: str | os.PathLike[str] | None = None, *, force: bool = False) -> NewKey:
    """Make a new ed25519 key pair at ``path`` (default :func:`default_key`) and its
    ``.pub`` beside it. An existing key is kept unless ``force``."""
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Path(path) if path else default_key()
    public = private.with_suffix(".pub") if private.suffix == ".pem" else private.with_name(private.name + ".pub")
    if private.exists() and not force:
        raise UsageError(f"{private} exists: keep it, or make a new one with --force (what it signed will "
                         "then verify only with its old public key)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(private, pem)
    except OSError as exc:
        raise UsageError(f"cannot write the key {private}: {exc.strerror}") from exc
    write_text_atomic(public, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"))
    return NewKey(private, public, key_id(key.public_key()))


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret through a temporary file that is 0600 from its first byte."""
    tmp = path.with_name(f".{path.name}.envcap-tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_key_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"no key at {path}" + (" (make one with: envcap keygen)" if path == default_key()
                                                    or path == default_key().with_suffix(".pub") else "")) from exc
    except OSError as exc:
        raise UsageError(f"cannot read the key {path}: {exc.strerror}") from exc


def check_private_mode(where: Path) -> None:
    """Refuse a private key others can read or replace, as ssh does ("UNPROTECTED PRIVATE
    KEY FILE"): a key file with any group or other permission, owned by someone else, or
    in a directory that others may write to."""
    import stat

    try:
        st = os.stat(where)
    except OSError:
        return  # reading it says what is wrong
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UsageError(f"{where}: the private key is open to others (mode {mode:04o}); envcap signs only with a "
                         f"key only you can read: chmod 600 {where}")
    if st.st_uid not in (os.getuid(), 0):
        raise UsageError(f"{where}: the private key belongs to another user (uid {st.st_uid}); envcap signs only "
                         "with a key of your own")
    directory = where.resolve().parent
    try:
        dmode = stat.S_IMODE(os.stat(directory).st_mode)
    except OSError:
        return
    if dmode & 0o022:
        raise UsageError(f"{where}: the key's directory {directory} can be written by others (mode {dmode:04o}), "
                         f"who could replace the key: chmod go-w {directory} (0700 is best), or move the key")


def load_private(path: str | os.PathLike[str], *, to_sign: bool = True) -> Any:
    """The ed25519 private key in ``path``; to sign with, only one no one else can read or replace."""
    serialization = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    where = Path(path)
    if to_sign:
        check_private_mode(where)
    data = _read_key_bytes(where)
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # The key is encrypted.
        raise UsageError(f"{where}: an encrypted key; envcap signs with an unencrypted local key "
                         "(envcap keygen makes one)") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{where}: not a private key envcap can read (PEM or OpenSSH ed25519)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where}: a {type(key).__name__.removesuffix('PrivateKey').removeprefix('_')} key, "
                         "not ed25519")
    return key


def load_public(path: str | os.PathLike[str]) -> Any:
    """The public key in ``path``: a public key file, or a private key (its public half)."""
    serialization = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    where = Path(path)
    data = _read_key_bytes(where)
    if b"PRIVATE KEY" in data:
        return load_private(where, to_sign=False).public_key()
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{where}: not a public key envcap can read (PEM or OpenSSH ed25519)") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where}: not an ed25519 public key")
    return key


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``sha256:<hex>`` of a file and its size, hashed as it streams."""
    try:
        # hashlib.file_digest is Python 3.11+; envcap supports 3.10.
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path}: a directory; sign a file (a bundle, an attestation, a crate's .zip)") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return "sha256:" + h.hexdigest(), size


def message(dig: str) -> bytes:
    return f"{FORMAT}\n{dig}\n".encode()


@dataclass(frozen=True, slots=True)
class Signed:
    signature: Path
    key_id: str
    digest: str
    generated: NewKey | None = None  # the key made for this signature, when there was none


def sign(path: str | os.PathLike[str], *, key: str | os.PathLike[str] | None = None,
         output: str | os.PathLike[str] | None = None) -> Signed:
    """Sign ``path`` with ``key`` (default: the local key, made on first use); write the
    signature to ``output`` (default ``PATH.sig``)."""
    target = Path(path)
    dig, size = file_digest(target)
    generated = None
    if key is None and not default_key().exists():
        generated = keygen()
    private = load_private(key if key is not None else default_key())
    public = private.public_key()
    kid = key_id(public)
    doc = {
        "format": FORMAT,
        "algorithm": "ed25519",
        "file": target.name,
        "size": size,
        "sha256": dig,
        "key_id": kid,
        "signature": base64.b64encode(private.sign(message(dig))).decode("ascii"),
    }
    out = Path(output) if output else target.with_name(target.name + ".sig")
    write_text_atomic(out, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return Signed(out, kid, dig, generated)


@dataclass(frozen=True, slots=True)
class Verified:
    path: Path
    key_id: str
    digest: str


def read_signature(path: str | os.PathLike[str]) -> dict[str, Any]:
    where = Path(path)
    try:
        doc = json.loads(where.read_bytes())
    except FileNotFoundError as exc:
        raise NotFoundError(f"{where}: no such signature file") from exc
    except (OSError, ValueError, RecursionError):
        raise UsageError(f"{where}: not an envcap signature file (JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("algorithm") != "ed25519":
        raise UsageError(f"{where}: not a signature of a format this envcap reads ({FORMAT}, ed25519)")
    for field in ("sha256", "key_id", "signature"):
        if not isinstance(doc.get(field), str):
            raise UsageError(f"{where}: field {field} is missing or not a string")
    return doc


def verify(path: str | os.PathLike[str], signature: str | os.PathLike[str], *,
           key: str | os.PathLike[str] | None = None) -> Verified:
    """Check ``path`` against ``signature`` with the trusted public ``key`` (default: the
    local key's). Raises :class:`SignatureError` when it does not verify."""
    from cryptography.exceptions import InvalidSignature

    doc = read_signature(signature)
    trusted_path = Path(key) if key is not None else default_key().with_suffix(".pub")
    if key is None and not trusted_path.exists() and default_key().exists():
        trusted_path = default_key()
    public = load_public(trusted_path)
    trusted = key_id(public)
    dig, _ = file_digest(path)
    if doc["key_id"] != trusted:
        raise SignatureError(f"{path}: signed by key {doc['key_id']}, not by the key trusted here "
                             f"({trusted}, {trusted_path})")
    if dig != doc["sha256"]:
        raise SignatureError(f"{path}: does not match its signature (signed {doc['sha256']}, the file hashes to "
                             f"{dig}): it was changed after it was signed")
    try:
        raw = base64.b64decode(doc["signature"], validate=True)
        public.verify(raw, message(dig))
    except (ValueError, InvalidSignature) as exc:
        raise SignatureError(f"{signature}: the signature does not verify with key {trusted}: "
                             "the signature file was changed or damaged") from exc
    return Verified(Path(path), trusted, dig)
