"""The one place envcap starts other programs.

Every command runs with an argument list (never a shell), no standard input unless the
caller hands its own on, and a C locale so that its output parses the same everywhere
(a command the user asked for keeps its own locale: ``c_locale=False``).

- :func:`run` and :func:`run_bytes` wait for a command, with a timeout, and return what
  it printed (text, or bytes kept as bytes);
- :func:`start` is the streaming variant: it returns the running process, for a command
  whose output is streamed as it comes or that is handed signals (``envcap run``'s
  child, a rebuild's container);
- :func:`git` is the one way envcap runs git.

No other module imports :mod:`subprocess` (tests/test_architecture.py holds that).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Mapping, NamedTuple, Sequence, overload

if TYPE_CHECKING:
    import subprocess
    from typing import IO

    Child = subprocess.Popen[bytes]
    Stream = int | IO[bytes] | None

# subprocess's own values, so that callers need not import it (a test checks they agree).
PIPE = -1
STDOUT = -2
DEVNULL = -3


# NamedTuples, not dataclasses: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Output(NamedTuple):
    """What a command printed, as the bytes it wrote."""

    returncode: int
    stdout: bytes
    stderr: bytes


def _has_password(url: str) -> bool:
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        return bool(parts.password) or any(k.lower() == "password" for k, _ in parse_qsl(parts.query))
    except ValueError:
        return True  # unreadable: not passed on


def _env(env: Mapping[str, str] | None, c_locale: bool) -> dict[str, str]:
    run_env = dict(os.environ if env is None else env)
    store = run_env.get("ENVCAP_STORE", "")
    if "@" in store and _has_password(store):
        # No program envcap starts gets the store's password; one that needs the store is
        # handed it without (envcap.store.childenv.child_store_env).
        del run_env["ENVCAP_STORE"]
    if c_locale:
        run_env["LC_ALL"] = "C"
    return run_env


def run_bytes(
    argv: Sequence[str],
    *,
    timeout: float = 10.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    c_locale: bool = True,
) -> Output | None:
    """Run ``argv`` and keep its output as bytes; ``None`` when the program does not exist.

    A timeout raises ``subprocess.TimeoutExpired``, which probes let through to the
    runner so that it is reported as an unknown rather than mistaken for absence.
    """
    # Imported here: a snapshot whose program answers all come from the cache never
    # starts a program, and need not pay for the module.
    import subprocess

    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=_env(env, c_locale),
            cwd=cwd,
            check=False,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    return Output(proc.returncode, proc.stdout, proc.stderr)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 10.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    c_locale: bool = True,
) -> Result | None:
    """Run ``argv``; its output decoded as UTF-8. ``None`` when the program does not exist."""
    out = run_bytes(argv, timeout=timeout, env=env, cwd=cwd, c_locale=c_locale)
    if out is None:
        return None
    return Result(out.returncode, out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace"))


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: Stream = DEVNULL,
    stdout: Stream = None,
    stderr: Stream = None,
    c_locale: bool = True,
) -> Child:
    """Start ``argv`` and return the running process (the caller waits for it).

    The streams take what :class:`subprocess.Popen` takes (``None`` inherits envcap's own;
    :data:`PIPE`, :data:`STDOUT`, :data:`DEVNULL`, a descriptor or a file). A program that
    cannot be started raises :class:`OSError`, as Popen does: the caller says why.
    """
    import subprocess

    return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd,
                            env=_env(env, c_locale))


GIT_TIMEOUT = 60.0


@overload
def git(args: Sequence[str], cwd: str, *, text: Literal[False] = ..., check: bool = ...,
        env: Mapping[str, str] | None = ..., timeout: float = ...) -> Output | None: ...
@overload
def git(args: Sequence[str], cwd: str, *, text: Literal[True], check: bool = ...,
        env: Mapping[str, str] | None = ..., timeout: float = ...) -> Result | None: ...
def git(args: Sequence[str], cwd: str, *, text: bool = False, check: bool = False,
        env: Mapping[str, str] | None = None, timeout: float = GIT_TIMEOUT) -> Output | Result | None:
    """Run ``git ARGS`` in ``cwd``; ``None`` when git is not installed.

    Output is bytes unless ``text`` (a diff of a Latin-1 file must be stored as it is, not
    as decoded text). git never prompts for a password: it would wait on a terminal no
    one watches. ``check`` turns a failure into a :class:`StoreError` naming the command.
    """
    run_env = dict(os.environ if env is None else env)
    run_env["GIT_TERMINAL_PROMPT"] = "0"
    out = run_bytes(["git", *args], timeout=timeout, env=run_env, cwd=cwd)
    if out is None:
        return None
    if check and out.returncode != 0:
        import shlex

        from .errors import StoreError

        message = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StoreError(f"git {shlex.join(args)} failed: {message[-1] if message else out.returncode}")
    if text:
        return Result(out.returncode, out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace"))
    return out


def git_bounded(args: Sequence[str], cwd: str, *, env: Mapping[str, str] | None = None,
                timeout: float = GIT_TIMEOUT) -> Output | None:
    """``git ARGS`` in ``cwd`` as :func:`git` runs it; ``None`` when git is not installed
    or did not finish within ``timeout`` (a remote that never answers is not there)."""
    import subprocess

    try:
        return git(args, cwd, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
