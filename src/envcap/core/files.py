"""Writing user-named files whole or not at all."""

from __future__ import annotations

import os
import stat

from .errors import UsageError


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a
    reader (or a crash) never sees half a file."""
    target = os.fspath(path)
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.envcap-tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {target}: {exc.strerror}") from exc


# -- paths that come out of a record ------------------------------------------------------------

class UnsafePathError(UsageError):
    """A path from a record (a bundle, an artifact, the store) that would lead outside its root."""


def safe_relpath(path: object, *, what: str = "a path") -> str:
    """``path`` if it is a relative, normalised POSIX path that stays inside its root.

    A record names files by their path below a root (the repository, the bundle): such a
    path comes from whoever wrote the record, so before it is joined to anything it must
    be a non-empty string without NUL, not absolute, without ``.`` or ``..`` components,
    empty components or a backslash (a separator elsewhere), and under 4096 bytes.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{what}: not a path ({type(path).__name__} {str(path)[:80]!r})")
    problem = None
    if "\x00" in path:
        problem = "holds a NUL byte"
    elif len(path.encode("utf-8", "surrogateescape")) > 4096:
        problem = "is longer than 4096 bytes"
    elif path.startswith("/") or "\\" in path:
        problem = "is absolute (or holds a backslash)"
    elif any(part in ("", ".", "..") for part in path.split("/")):
        problem = "is not normalised (an empty, '.' or '..' component)"
    if problem:
        raise UnsafePathError(f"{what} {path[:200]!r} {problem}: a record's paths stay inside their root")
    return path


def safe_join(root: str | os.PathLike[str], path: object, *, what: str = "a path") -> str:
    """``root/path`` for writing, after :func:`safe_relpath`, with no symbolic link on the way.

    Every component below ``root`` that exists already must be a real directory (the last
    one: not a link either), so that a link checked out or written earlier cannot carry a
    write outside ``root``.
    """
    rel = safe_relpath(path, what=what)
    base = os.fspath(root)
    current = base
    parts = rel.split("/")
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        except OSError as exc:
            raise UnsafePathError(f"{what} {rel!r}: cannot check {current}: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{what} {rel!r}: {current} is a symbolic link: envcap writes nothing through "
                                  "a link")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"{what} {rel!r}: {current} is not a directory")
    return os.path.join(base, *parts)


def write_inside(root: str | os.PathLike[str], path: object, data: bytes, *, what: str = "a file",
                 symlink: bool = False) -> str:
    """Write ``data`` (or, with ``symlink``, a link to ``data``) at ``path`` below ``root``:
    checked by :func:`safe_join`, parents made one by one, the file opened without
    following a link. Returns the path written."""
    target = safe_join(root, path, what=what)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    # Made, then checked again: nothing may have swapped a directory for a link meanwhile.
    safe_join(root, path, what=what)
    if symlink:
        os.symlink(os.fsdecode(data), target)
        return target
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target
