"""User configuration: where the store lives, and the capture and redaction lists.

Read from ``$ENVCAP_CONFIG`` or ``$XDG_CONFIG_HOME/envcap/config.toml`` when present::

    [capture]
    env_allow = ["MY_LAB_*"]      # more variables whose values are kept
    probe_timeout = 5.0           # seconds a probe may take before it is an unknown

    [redact]
    names = ["SESSION"]           # more name fragments whose values are secret
    patterns = ["mylab_[a-z0-9]{32}"]  # more secret formats (regular expressions)

Only the environment and this file are read; nothing is written.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

from .errors import UsageError


# A NamedTuple, not a dataclass: building a dataclass costs about a millisecond at import,
# and this module is on the path of every snapshot.
class Config(NamedTuple):
    env_allow: tuple[str, ...] = ()
    probe_timeout: float = 5.0
    redact_names: tuple[str, ...] = ()
    redact_patterns: tuple[str, ...] = ()


# Paths are worked out as strings and turned into pathlib objects only for callers that
# want one: pathlib costs a snapshot a few milliseconds to import.


def config_file() -> str:
    explicit = os.environ.get("ENVCAP_CONFIG")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "envcap", "config.toml")


def config_path() -> Path:
    from pathlib import Path

    return Path(config_file())


def home_dir() -> str:
    """The store's directory: ``$ENVCAP_HOME``, else ``$XDG_DATA_HOME/envcap``."""
    explicit = os.environ.get("ENVCAP_HOME")
    if explicit:
        return explicit
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "envcap")


def home() -> Path:
    """:func:`home_dir` as a path object."""
    from pathlib import Path

    return Path(home_dir())


def load() -> Config:
    path = config_file()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise UsageError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    data: dict[str, Any] = {}
    if raw is not None:
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"the configuration file {path} is not valid TOML: {exc}") from exc
    capture = data.get("capture", {})
    redact = data.get("redact", {})
    timeout = os.environ.get("ENVCAP_PROBE_TIMEOUT") or capture.get("probe_timeout", 5.0)
    try:
        timeout_s = float(timeout)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"probe_timeout must be a number of seconds, not {timeout!r}") from exc
    env_allow = tuple(capture.get("env_allow", ()))
    extra = os.environ.get("ENVCAP_ENV_ALLOW")
    if extra:
        env_allow += tuple(p.strip() for p in extra.split(",") if p.strip())
    return Config(
        env_allow=env_allow,
        probe_timeout=timeout_s,
        redact_names=tuple(redact.get("names", ())),
        redact_patterns=tuple(redact.get("patterns", ())),
    )
