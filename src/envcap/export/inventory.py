"""A manifest's packages as an SBOM lists them: name, version, purl, hashes.

One :class:`Package` per package record in the manifest's ``python``, ``system`` and
``conda`` sections, in the manifest's order, none merged or dropped, so an SBOM's
component count is the manifest's package count. Package URLs follow the purl spec
(https://github.com/package-url/purl-spec) through ``packageurl-python``:

- ``pkg:pypi/NAME@VERSION`` (a VCS install adds ``vcs_url=git+URL@COMMIT``)
- ``pkg:deb/DISTRO_ID/NAME@VERSION?arch=ARCH&distro=CODENAME``
- ``pkg:rpm/DISTRO_ID/NAME@VERSION?arch=ARCH&epoch=N`` (the epoch moves to a qualifier)
- ``pkg:apk/DISTRO_ID/NAME@VERSION?arch=ARCH``
- ``pkg:conda/NAME@VERSION?build=B&channel=C&subdir=S&type=conda|tar.bz2``

Hashes are the ones the manifest holds (a local wheel's or archive's sha256 from
``direct_url.json``; a conda package's sha256 and md5); envcap does not invent others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from ..core.manifest import Manifest

SYSTEM_TYPES = {"dpkg": "deb", "rpm": "rpm", "apk": "apk"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    ecosystem: str  # "python", "dpkg", "rpm", "apk" or "conda"
    name: str
    version: str
    purl: str
    hashes: tuple[tuple[str, str], ...] = ()  # (algorithm, hex): ("sha256", ...), ("md5", ...)
    properties: tuple[tuple[str, str], ...] = ()  # envcap's own facts, as envcap:NAME
    ref: str = ""  # unique within one inventory: "python/3/numpy"


def packages(manifest: Manifest) -> list[Package]:
    """Every package of the manifest, Python first, then system, then conda."""
    return [*_python(manifest), *_system(manifest), *_conda(manifest)]


def purl(kind: str, namespace: str | None, name: str, version: str | None,
         qualifiers: Mapping[str, str] | None = None) -> str:
    from .sbom import need

    package_url = need("packageurl", "packageurl-python").PackageURL
    return str(package_url(kind, namespace, name, version, dict(qualifiers) if qualifiers else None).to_string())


def counts(manifest: Manifest) -> dict[str, int]:
    """How many package records each section holds: what an SBOM must list."""
    out = {}
    for name in ("python", "system", "conda"):
        section = manifest.sections.get(name) or {}
        if section.get("packages"):
            out[name] = len(section["packages"])
    return out


def _ref(ecosystem: str, i: int, name: str) -> str:
    return f"{ecosystem}/{i}/{name}"


def _props(**values: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in values.items():
        if value is None or value == "":
            continue
        out.append((f"envcap:{key}", str(value).lower() if isinstance(value, bool) else str(value)))
    return tuple(out)


def _python(manifest: Manifest) -> Iterator[Package]:
    section = manifest.sections.get("python") or {}
    for i, p in enumerate(section.get("packages") or ()):
        origin: Mapping[str, Any] = p.get("origin") or {}
        qualifiers = {}
        if origin.get("kind") == "vcs" and origin.get("url"):
            vcs_url = f"{origin.get('vcs') or 'git'}+{origin['url']}"
            qualifiers["vcs_url"] = vcs_url + (f"@{origin['commit']}" if origin.get("commit") else "")
        locator = purl("pypi", None, p["name"], p["version"], qualifiers)
        hashes = (("sha256", origin["sha256"]),) if origin.get("sha256") else ()
        yield Package(ecosystem="python", name=p["name"], version=p["version"], purl=locator, hashes=hashes,
                      properties=_props(installer=p.get("installer"), requested=p.get("requested"),
                                        origin=origin.get("kind")),
                      ref=_ref("python", i, p["name"]))


def _system(manifest: Manifest) -> Iterator[Package]:
    section = manifest.sections.get("system") or {}
    manager = section.get("manager")
    kind = SYSTEM_TYPES.get(str(manager))
    if kind is None:
        return
    os_section = manifest.sections.get("os") or {}
    vendor = os_section.get("id") or None
    distro = os_section.get("version_codename") or (
        f"{vendor}-{os_section['version_id']}" if vendor and os_section.get("version_id") else None)
    for i, p in enumerate(section.get("packages") or ()):
        version = str(p["version"])
        qualifiers: dict[str, str] = {}
        if p.get("arch"):
            qualifiers["arch"] = str(p["arch"])
        if kind == "deb" and distro:
            qualifiers["distro"] = str(distro)
        if kind == "rpm" and ":" in version:
            epoch, _, version = version.partition(":")
            qualifiers["epoch"] = epoch
        locator = purl(kind, vendor, p["name"], version, qualifiers)
        yield Package(ecosystem=str(manager), name=p["name"], version=str(p["version"]), purl=locator,
                      properties=_props(arch=p.get("arch"), status=p.get("status")),
                      ref=_ref(str(manager), i, p["name"]))


def _conda(manifest: Manifest) -> Iterator[Package]:
    section = manifest.sections.get("conda") or {}
    for i, p in enumerate(section.get("packages") or ()):
        qualifiers = {}
        if p.get("build"):
            qualifiers["build"] = p["build"]
        channel = channel_name(p.get("channel"), p.get("subdir"))
        if channel:
            qualifiers["channel"] = channel
        if p.get("subdir"):
            qualifiers["subdir"] = p["subdir"]
        url = p.get("url") or ""
        if url.endswith(".conda"):
            qualifiers["type"] = "conda"
        elif url.endswith(".tar.bz2"):
            qualifiers["type"] = "tar.bz2"
        locator = purl("conda", None, p["name"], p.get("version") or None, qualifiers)
        hashes = tuple((alg, p[alg]) for alg in ("sha256", "md5") if p.get(alg))
        yield Package(ecosystem="conda", name=p["name"], version=str(p.get("version") or ""), purl=locator,
                      hashes=hashes, properties=_props(channel=p.get("channel"), build=p.get("build")),
                      ref=_ref("conda", i, p["name"]))


def channel_name(channel: str | None, subdir: str | None) -> str | None:
    """A conda channel's name from its URL: ``https://conda.anaconda.org/conda-forge/linux-64``
    is ``conda-forge``. A token in the URL was redacted when the manifest was taken, and
    the name never holds it."""
    if not channel:
        return None
    parts = [p for p in channel.rstrip("/").split("/") if p]
    if subdir and parts and parts[-1] == subdir:
        parts = parts[:-1]
    if not parts:
        return None
    name = parts[-1]
    return None if "REDACTED" in name or name.endswith(":") else name
