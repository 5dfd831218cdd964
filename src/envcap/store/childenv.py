"""What a process envcap starts needs to reach the store, without the store's password.

A shared store's URL may carry a password (``postgresql://user:SECRET@host/db``). A
command run by ``envcap run``, a job handed to a scheduler, or anything else envcap
starts must reach the same store, but its environment is read by everything it starts
in turn, copied into job scripts and logs, and recorded by envcap itself. So the child
gets the URL without the password and a libpq password file (``PGPASSFILE``, mode 0600,
in a directory only the user can enter) that holds it; libpq reads the file when it
connects, and nothing else ever sees the secret.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

_SECRET_QUERY = frozenset({"password"})


def strip_password(url: str) -> tuple[str, str]:
    """``(url without its password, the password)``; the password is "" when there is none."""
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    query = parse_qsl(parts.query, keep_blank_values=True)
    for key, value in query:
        if key.lower() in _SECRET_QUERY and not password:
            password = value
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        user = netloc[0].split(":", 1)[0]
        authority = f"{user}@{netloc[1]}"
    else:
        authority = parts.netloc
    kept = urlencode([(k, v) for k, v in query if k.lower() not in _SECRET_QUERY])
    return urlunsplit((parts.scheme, authority, parts.path, kept, parts.fragment)), password


def _field(value: str) -> str:
    # The password file's own quoting: a backslash or a colon is escaped with a backslash.
    return value.replace("\\", "\\\\").replace(":", "\\:")


def write_passfile(url: str, password: str, private_dir: str | os.PathLike[str]) -> Path:
    """A libpq password file in ``private_dir`` (made 0700) that gives ``password`` to ``url``'s server only."""
    parts = urlsplit(url)
    host = parts.hostname or "*"
    try:
        port = str(parts.port or 5432)
    except ValueError:
        port = "*"
    dbname = unquote(parts.path.lstrip("/")) or "*"
    user = unquote(parts.username or "") or "*"
    line = ":".join(_field(x) if x != "*" else x for x in (host, port, dbname, user)) + ":" + _field(password)
    directory = Path(private_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd, name = tempfile.mkstemp(prefix="pgpass-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return Path(name)


def child_store_env(url: str, private_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The variables a child process needs to reach the store at ``url``: ``ENVCAP_STORE``
    without a password, and where there was one, ``PGPASSFILE`` naming a 0600 file in
    ``private_dir`` that holds it. The caller removes ``private_dir`` when the child is done.
    """
    bare, password = strip_password(url)
    env = {"ENVCAP_STORE": bare}
    if password:
        env["PGPASSFILE"] = str(write_passfile(bare, password, private_dir))
    return env
