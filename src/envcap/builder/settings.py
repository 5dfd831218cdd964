"""A site's build settings: where its dated OS archive and its interpreter builds are.

Each setting is an environment variable, else a key of the ``[build]`` table of envcap's
configuration file; none is needed where the public services are reachable:

==============================  ============================  ===============================================
environment variable            ``[build]`` key               what
==============================  ============================  ===============================================
``ENVCAP_APT_ARCHIVE``          ``apt_archive``               the dated Debian/Ubuntu archive (a URL; ``{stamp}``
                                                              becomes the snapshot's time, ``20261203T101500Z``)
``ENVCAP_APT_ARCHIVE_KEY``      ``apt_archive_key``           the archive's signing key (an armored file), for a
                                                              site archive that Debian's keyring does not sign
``ENVCAP_APT_MIRROR``           ``apt_mirror``                the mirror the base images install from, whose index
                                                              is asked before a build whether it serves the pins
                                                              (default: deb.debian.org, archive.ubuntu.com)
``ENVCAP_PYTHON_DOWNLOADS``     ``python_downloads``          uv's list of interpreter builds (a URL or a file in
                                                              uv's ``download-metadata.json`` format)
``ENVCAP_PYTHON_MIRROR``        ``python_mirror``             a mirror of python-build-standalone's releases
                                                              (uv's ``UV_PYTHON_INSTALL_MIRROR``)
``ENVCAP_UV``                   ``uv``                        the uv executable handed to builds (default: the
                                                              one installed beside envcap, else on ``PATH``)
==============================  ============================  ===============================================
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import config
from ..core.errors import UsageError

_KEYS = {"apt_archive": "ENVCAP_APT_ARCHIVE", "apt_archive_key": "ENVCAP_APT_ARCHIVE_KEY",
         "apt_mirror": "ENVCAP_APT_MIRROR",
         "python_downloads": "ENVCAP_PYTHON_DOWNLOADS", "python_mirror": "ENVCAP_PYTHON_MIRROR", "uv": "ENVCAP_UV"}


@dataclass(frozen=True, slots=True)
class BuildSettings:
    apt_archive: str | None = None
    apt_archive_key: str | None = None
    apt_mirror: str | None = None
    python_downloads: str | None = None
    python_mirror: str | None = None
    uv: str | None = None

    @classmethod
    def load(cls) -> BuildSettings:
        table = _build_table()
        values: dict[str, str | None] = {}
        for key, variable in _KEYS.items():
            value = os.environ.get(variable) or table.get(key)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"build.{key} in {config.config_file()} must be a string")
            values[key] = value or None
        return cls(**values)

    def uv_binary(self) -> Path | None:
        """The uv executable to hand to a build, or None when there is none here."""
        if self.uv:
            path = Path(self.uv)
            if not path.is_file():
                raise UsageError(f"ENVCAP_UV {self.uv}: no such file")
            return path
        beside = Path(sys.executable).parent / "uv"
        if beside.is_file():
            return beside
        found = shutil.which("uv")
        return Path(found) if found else None

    def uv_env(self) -> dict[str, str]:
        """The environment that points uv at this site's interpreter builds."""
        env: dict[str, str] = {}
        if self.python_downloads:
            env["UV_PYTHON_DOWNLOADS_JSON_URL"] = _as_url(self.python_downloads)
        if self.python_mirror:
            env["UV_PYTHON_INSTALL_MIRROR"] = self.python_mirror
        return env


def _as_url(value: str) -> str:
    if "://" in value:
        return value
    return Path(value).resolve().as_uri()


def _build_table() -> dict[str, object]:
    from .base import _toml

    data = _toml(config.config_path(), missing_ok=True)
    table = data.get("build") or {}
    return dict(table) if isinstance(table, dict) else {}
