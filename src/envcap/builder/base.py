"""Which base image an environment is rebuilt on, through a mapping each site can change.

The manifest says what the base must be (OS and release, a CUDA toolkit, where Python
came from); a mapping says which image that is here, since every site has its own
registry. Keys are tried from the most specific to the least::

    conda/debian:bookworm          Python from conda
    python-3.11/debian:bookworm    an official-python-image style /usr/local Python
    cuda-12.4/ubuntu:jammy         a CUDA toolkit (then cuda-12/ubuntu:jammy)
    debian:bookworm                the OS release (then debian:12)

The mapping is ``images/base-map.toml`` (the defaults), with a site's file laid over
it: the file named by ``ENVCAP_BASE_MAP``, else ``[build] base_map`` in envcap's
configuration file. ``--base REF`` overrides all of it for one build. A reference
should name its image by digest; a tag is resolved to its digest by the engine before
the Dockerfile is written, so a rendered Dockerfile always names a digest.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import config
from ..core.errors import UsageError
from ..core.manifest import Manifest
from ..ecosystems.conda.record import CondaSection
from ..ecosystems.python.record import PythonSection
from ..pins.errors import BuildError

# The distribution reference grammar, reduced to what a FROM line needs.
_REF = re.compile(
    r"^(?:(?P<host>[A-Za-z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def images_dir() -> Path:
    """The folder of Dockerfile templates and the default base map (``Dockerfile.base`` is
    beside it): ``ENVCAP_IMAGES_DIR``, else the copy an installed wheel carries in this
    package (setup.py puts it there), else the top of a source or editable checkout."""
    explicit = os.environ.get("ENVCAP_IMAGES_DIR")
    candidates = [Path(explicit)] if explicit else []
    here = Path(__file__).resolve()
    candidates += [here.parent / "images", here.parents[3] / "images"]
    for candidate in candidates:
        if (candidate / "base-map.toml").is_file():
            return candidate
    raise BuildError("envcap's image templates (images/base-map.toml) are not installed; "
                     "set ENVCAP_IMAGES_DIR to the images/ folder of an envcap checkout")


def check_ref(ref: str, what: str) -> str:
    if not isinstance(ref, str) or not _REF.match(ref):
        raise UsageError(f"{what} {ref!r} is not an image reference (registry/name[:tag][@sha256:...])")
    return ref


def has_digest(ref: str) -> bool:
    match = _REF.match(ref)
    return bool(match and match.group("digest"))


@dataclass(frozen=True, slots=True)
class BaseChoice:
    key: str  # the mapping key that matched ("--base" for an override)
    ref: str
    tried: tuple[str, ...]


def base_keys(manifest: Manifest) -> list[str]:
    """Mapping keys for this manifest's base, most specific first."""
    sections = manifest.sections
    os_section = sections.get("os") or {}
    os_id = _token(os_section.get("id")) or "linux"
    releases = [r for r in (_token(os_section.get("version_codename")), _token(os_section.get("version_id"))) if r]
    platforms = [f"{os_id}:{r}" for r in releases] or [os_id]
    keys: list[str] = []
    python = manifest.record(PythonSection)
    flavour = python_flavour(python, manifest.record(CondaSection))
    if flavour == "conda":
        keys += [f"conda/{p}" for p in platforms] + ["conda"]
    elif flavour == "official" and python is not None:
        full = _token(python.version) or ""
        short = ".".join(full.split(".")[:2])
        for version in dict.fromkeys((full, short)):
            keys += [f"python-{version}/{p}" for p in platforms] + [f"python-{version}"]
    cuda = sections.get("cuda") or {}
    cuda_version = _token(cuda.get("version"))
    if cuda_version:
        major = cuda_version.split(".")[0]
        keys += [f"cuda-{cuda_version}/{p}" for p in platforms] + [f"cuda-{major}/{p}" for p in platforms]
    keys += platforms
    return list(dict.fromkeys(keys))


def python_flavour(python: PythonSection | None, conda: CondaSection | None) -> str | None:
    """Where the interpreter came from: the distribution ("system"), a /usr/local build
    as official Python images have ("official"), or conda; ``None`` without Python."""
    if python is None:
        return None
    return python.flavour(conda.prefix if conda is not None else None)


def _token(value: Any) -> str | None:
    from ..pins import validate

    token = validate.plain(value)
    return token.lower() if token and "+" not in token else None


def load_map(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The default mapping with the site's laid over it."""
    env = os.environ if env is None else env
    merged = _read_map(images_dir() / "base-map.toml")
    site = env.get("ENVCAP_BASE_MAP") or _configured_map()
    if site:
        merged.update(_read_map(Path(site)))
    return merged


def _configured_map() -> str | None:
    data = _toml(config.config_path(), missing_ok=True)
    value = (data.get("build") or {}).get("base_map")
    return str(value) if value else None


def _read_map(path: Path) -> dict[str, str]:
    data = _toml(path, missing_ok=False)
    bases = data.get("bases")
    if not isinstance(bases, dict):
        raise UsageError(f"{path}: a base map has a [bases] table of key = \"image reference\"")
    return {str(k): check_ref(val, f"{path}: bases.{k}") for k, val in bases.items()}


def _toml(path: Path, *, missing_ok: bool) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise UsageError(f"base map {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        return dict(tomllib.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc


def choose_base(manifest: Manifest, *, override: str | None = None, mapping: Mapping[str, str] | None = None) -> BaseChoice:
    keys = base_keys(manifest)
    if override:
        return BaseChoice("--base", check_ref(override, "--base"), tuple(keys))
    table = load_map() if mapping is None else mapping
    for key in keys:
        if key in table:
            return BaseChoice(key, table[key], tuple(keys))
    raise BuildError(f"no base image is mapped for this environment (tried {', '.join(keys)}); add one of "
                     "these keys to the file named by ENVCAP_BASE_MAP, or pass --base REF")
