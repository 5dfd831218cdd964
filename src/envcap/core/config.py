"""User configuration: where the store lives, and the capture and redaction lists.

Read from ``$ENVCAP_CONFIG`` or ``$XDG_CONFIG_HOME/envcap/config.toml`` when present::

    [capture]
    env_allow = ["MY_LAB_*"]      # more variables whose values are kept
    probe_timeout = 5.0           # seconds a probe may take before it is an unknown

    [redact]
    names = ["SESSION"]           # more name fragments whose values are secret
    patterns = ["mylab_[a-z0-9]{32}"]  # more secret formats (regular expressions)

    [store]
    url = "postgresql://envcap@db.example.org/envcap"   # a shared store (default: embedded)

    [node.labels]
    cluster = "a"                 # labels of this node: every snapshot it takes carries them

Only ``envcap config set`` writes this file (:func:`set_value`).
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
    # The node's own labels ([node.labels]), as (key, value) pairs.
    labels: tuple[tuple[str, str], ...] = ()


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


def cache_dir() -> str:
    """This machine's cache (program answers, MLflow's empty database), safe to delete:
    ``$ENVCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/envcap``."""
    explicit = os.environ.get("ENVCAP_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "envcap")


def home() -> Path:
    """:func:`home_dir` as a path object."""
    from pathlib import Path

    return Path(home_dir())


def _read() -> dict[str, Any]:
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
    return data


def store_url() -> str | None:
    """The store named in the configuration file (``[store] url``), if any."""
    value = _read().get("store", {}).get("url")
    if value is not None and not isinstance(value, str):
        raise UsageError(f"store.url in {config_file()} must be a string")
    return value or None


# The keys `envcap config set` knows: a dotted name and the TOML table and key it lands in.
# ``label.KEY`` is a label of this node: ``[node.labels] KEY``.
SETTABLE = {"store": ("store", "url")}
LABEL_PREFIX = "label."
# What a label's name may be (``--label k=v``, ``[node.labels]``).
LABEL_KEY = r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}"


def _setting(name: str) -> tuple[tuple[str, ...], str]:
    if name in SETTABLE:
        return (SETTABLE[name][0],), SETTABLE[name][1]
    if name.startswith(LABEL_PREFIX):
        import re

        key = name[len(LABEL_PREFIX):]
        if not re.fullmatch(LABEL_KEY, key):
            raise UsageError(f"label {key!r}: a label name is letters, digits, . _ - / (up to 63)")
        return ("node", "labels"), key
    raise UsageError(f"unknown setting {name!r}; known: {', '.join(sorted(SETTABLE))}, {LABEL_PREFIX}KEY")


def set_value(name: str, value: str | None) -> str:
    """Set (or, with ``None``, remove) one setting in the configuration file; return its path.

    The file is rewritten whole, atomically, with tomlkit so that the user's comments
    and layout stay as they were.
    """
    import tomlkit

    from .files import write_text_atomic

    tables, key = _setting(name)
    path = config_file()
    _read()  # A file that is not TOML is reported, never overwritten.
    try:
        with open(path, encoding="utf-8") as fh:
            doc = tomlkit.parse(fh.read())
    except FileNotFoundError:
        doc = tomlkit.document()
    parent: Any = doc
    for table in tables:
        if table not in parent:
            if value is None:
                break
            parent[table] = tomlkit.table(is_super_table=table != tables[-1])
        parent = parent[table]
    else:
        if value is None:
            parent.pop(key, None)
        else:
            parent[key] = value
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_text_atomic(path, tomlkit.dumps(doc))
    os.chmod(path, 0o600)  # A store URL may carry a password.
    return path


def load() -> Config:
    data = _read()
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
    labels = (data.get("node") or {}).get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise UsageError(f"node.labels in {config_file()} must map label names to strings")
    return Config(
        labels=tuple(sorted(labels.items())),
        env_allow=env_allow,
        probe_timeout=timeout_s,
        redact_names=tuple(redact.get("names", ())),
        redact_patterns=tuple(redact.get("patterns", ())),
    )
