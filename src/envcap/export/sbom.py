"""SBOMs of a manifest: CycloneDX 1.6 JSON and SPDX 2.3 JSON.

CycloneDX is written with ``cyclonedx-python-lib`` and SPDX with ``spdx-tools``, and
the tests check each with its library's own validator (CycloneDX's JSON schema, SPDX's
document validator; :func:`validate_cyclonedx`, :func:`validate_spdx`). Validation is
not repeated on every export: CycloneDX's schema check of a GPU machine's 600
packages takes seconds, and the serializers only write what their models hold.

The document describes the environment (its ``env_id``) with one component or package
per package record of the manifest (see :mod:`.inventory`). Its serial number or
namespace and its timestamp come from the manifest (its id, and the time the snapshot
was taken), so the same manifest always gives the same bytes.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..core.errors import EnvcapError, UsageError
from ..core.manifest import Manifest
from .inventory import Package, packages

FORMATS = ("cyclonedx", "spdx")
NAMESPACE = uuid.UUID("6b1e4f7c-3f0e-5a8e-9d7c-0e6e7663617a")  # uuid5 namespace of envcap's SBOMs


class ExportError(EnvcapError):
    """An export could not be made as asked."""


def need(module: str, package: str) -> Any:
    """Import an optional library of the export extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"this export needs {package}: pip install 'envcap[export]'") from exc


def envcap_version() -> str:
    try:
        return version("envcap")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def taken_at(manifest: Manifest) -> datetime.datetime:
    """When the snapshot was taken (UTC, whole seconds); the epoch when it does not say."""
    raw = manifest.observed.get("time")
    try:
        when = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        when = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).replace(microsecond=0)


def describe(manifest: Manifest) -> str:
    os_name = (manifest.sections.get("os") or {}).get("pretty_name")
    host = manifest.observed.get("hostname") or manifest.observed.get("root")
    return "envcap environment" + (f" ({os_name})" if os_name else "") + (f" captured on {host}" if host else "")


def sbom(manifest: Manifest, fmt: str) -> str:
    """The SBOM of ``manifest`` in ``fmt`` (``cyclonedx`` or ``spdx``), as JSON text."""
    if fmt == "cyclonedx":
        return cyclonedx(manifest)
    if fmt == "spdx":
        return spdx(manifest)
    raise UsageError(f"unknown SBOM format {fmt!r} (one of {', '.join(FORMATS)})")


# -- CycloneDX -------------------------------------------------------------------------------


def cyclonedx(manifest: Manifest) -> str:
    need("cyclonedx", "cyclonedx-python-lib")
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    algorithms = {"sha256": HashAlgorithm.SHA_256, "md5": HashAlgorithm.MD5}
    bom = Bom(serial_number=uuid.uuid5(NAMESPACE, manifest.id))
    bom.metadata.timestamp = taken_at(manifest)
    root = Component(name="envcap-environment", version=manifest.env_id, type=ComponentType.PLATFORM,
                     bom_ref=manifest.env_id, description=describe(manifest),
                     properties=[Property(name=f"envcap:{k}", value=v) for k, v in _ids(manifest)])
    bom.metadata.component = root
    bom.metadata.tools.components.add(Component(name="envcap", version=envcap_version(),
                                                type=ComponentType.APPLICATION))
    items = []
    for pkg in packages(manifest):
        items.append(Component(
            name=pkg.name, version=pkg.version, type=ComponentType.LIBRARY, bom_ref=pkg.ref, purl=_purl(pkg),
            hashes=[HashType(alg=algorithms[a], content=h) for a, h in pkg.hashes],
            properties=[Property(name="envcap:ecosystem", value=pkg.ecosystem),
                        *(Property(name=k, value=v) for k, v in pkg.properties)]))
    bom.components.update(items)
    bom.register_dependency(root, items)
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text + "\n"


def _purl(pkg: Package) -> Any:
    from packageurl import PackageURL

    return PackageURL.from_string(pkg.purl)


def _ids(manifest: Manifest) -> list[tuple[str, str]]:
    return [("manifest_id", manifest.id), ("env_id", manifest.env_id), ("platform_id", manifest.platform_id)]


def validate_cyclonedx(text: str) -> str | None:
    """What CycloneDX's own JSON schema validator finds wrong with ``text`` (None: valid)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)


# -- SPDX ------------------------------------------------------------------------------------


def spdx(manifest: Manifest) -> str:
    need("spdx_tools", "spdx-tools")
    import io

    from spdx_tools.spdx.model import (Actor, ActorType, Checksum, ChecksumAlgorithm, CreationInfo, Document,
                                       ExternalPackageRef, ExternalPackageRefCategory, Package as SpdxPackage,
                                       Relationship, RelationshipType, SpdxNoAssertion)
    from spdx_tools.spdx.writer.json import json_writer

    algorithms = {"sha256": ChecksumAlgorithm.SHA256, "md5": ChecksumAlgorithm.MD5}
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=f"envcap-environment-{manifest.env_id}",
        document_namespace=f"https://spdx.org/spdxdocs/envcap-{uuid.uuid5(NAMESPACE, manifest.id)}",
        creators=[Actor(ActorType.TOOL, f"envcap-{envcap_version()}")],
        created=taken_at(manifest).replace(tzinfo=None),
        document_comment=f"{describe(manifest)}; " + ", ".join(f"{k} {v}" for k, v in _ids(manifest)))
    pkgs = []
    for pkg in packages(manifest):
        pkgs.append(SpdxPackage(
            spdx_id="SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]", "-", pkg.ref), name=pkg.name, version=pkg.version or None,
            download_location=SpdxNoAssertion(), files_analyzed=False,
            checksums=[Checksum(algorithms[a], h) for a, h in pkg.hashes],
            external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", pkg.purl)],
            comment="; ".join(f"{k}={v}" for k, v in (("envcap:ecosystem", pkg.ecosystem), *pkg.properties))))
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, p.spdx_id) for p in pkgs]
    doc = Document(info, packages=pkgs, relationships=relationships)
    out = io.StringIO()
    json_writer.write_document_to_stream(doc, out, validate=False)
    return json.dumps(json.loads(out.getvalue()), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def validate_spdx(text: str) -> list[str]:
    """What spdx-tools' validator finds wrong with an SPDX JSON document (empty: valid)."""
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = JsonLikeDictParser().parse(json.loads(text))
    return [m.validation_message for m in validate_full_spdx_document(doc)]
