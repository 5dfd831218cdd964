"""Run bundles as OCI artifacts, beside the run's image in its registry (the ``oras`` library).

``envcap push RUN --registry HOST/REPO`` stores the run's bundle (:mod:`.bundle`) as an
OCI 1.1 artifact::

    manifest    artifactType  application/vnd.envcap.bundle.v1
                config        the empty descriptor (application/vnd.oci.empty.v1+json)
                layers        the bundle zip (application/vnd.envcap.bundle.v1+zip)
                subject       the run's image manifest, when the store knows one in HOST/REPO
                annotations   dev.envcap.run.id, dev.envcap.env.id, dev.envcap.record

A registry with the referrers API lists the artifact among the image's referrers by
itself (it answers with an ``OCI-Subject`` header). One without it (the distribution
registry 2.8) gets the referrers tag schema of the OCI distribution spec instead: an
image index tagged ``sha256-<image digest hex>`` that lists the artifact, read,
extended and pushed again.

``envcap rebuild oci://HOST/REPO@sha256:...`` reads the artifact back
(:func:`fetch_bundle`): the bundle is checked against its digest and then as any
bundle is, imported, and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import StoreError, UsageError
from ..store.base import StoreBackend

ARTIFACT_TYPE = "application/vnd.envcap.bundle.v1"
BUNDLE_MEDIA_TYPE = "application/vnd.envcap.bundle.v1+zip"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # of b"{}"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
ANNOTATION_RUN = "dev.envcap.run.id"
ANNOTATION_ENV = "dev.envcap.env.id"
ANNOTATION_RECORD = "dev.envcap.record"
_ACCEPT = ", ".join((MANIFEST, INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json"))


class _Client:
    """The registry of one repository, through oras' provider (plain HTTP on loopback)."""

    def __init__(self, repository: str) -> None:
        import oras.provider

        from ..builder.registry import Repository

        self.repo = Repository.parse(repository)
        self.plain = self.repo.loopback
        self.oras = oras.provider.Registry(hostname=self.repo.host, insecure=self.plain)
        self.base = f"{'http' if self.plain else 'https'}://{self.repo.host}/v2/{self.repo.path}"

    def container(self, reference: str) -> Any:
        sep = "@" if reference.startswith("sha256:") else ":"
        return self.oras.get_container(f"{self.repo}{sep}{reference}")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self.oras.do_request(f"{self.base}/{path}", method, **kwargs)
        except (requests.RequestException, ValueError) as exc:  # oras: ValueError when it cannot authenticate
            raise StoreError(f"registry {self.repo.host} did not answer: {exc}") from None

    def manifest(self, reference: str) -> tuple[dict[str, Any], bytes] | None:
        response = self.request("GET", f"manifests/{reference}", headers={"Accept": _ACCEPT})
        if response.status_code == 404:
            return None
        _check(response, f"reading {self.repo}@{reference}")
        try:
            return json.loads(response.content), response.content
        except (ValueError, RecursionError) as exc:
            raise StoreError(f"{self.repo}@{reference}: the registry's manifest is not JSON: "
                             f"{str(exc)[:200]}") from None

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> Any:
        response = self.request("PUT", f"manifests/{reference}", headers={"Content-Type": media_type}, data=body)
        _check(response, f"pushing a manifest to {self.repo}")
        return response

    def put_blob(self, path: str, media_type: str) -> dict[str, Any]:
        import oras.oci

        layer: dict[str, Any] = oras.oci.NewLayer(path, media_type=media_type)
        _check(self.oras.upload_blob(path, self.container("latest"), layer), f"pushing a blob to {self.repo}")
        return layer


def _check(response: Any, what: str) -> None:
    if response.status_code >= 300:
        detail = response.text.strip().splitlines()[0][:200] if response.text else ""
        raise StoreError(f"{what}: the registry answered {response.status_code} {detail}".rstrip())


def _descriptor(media_type: str, body: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body),
            **extra}


def push_bundle(store: StoreBackend, run_ref: str, repository: str, *,
                progress: Callable[[str], None] = lambda _: None, carry_limit: int | None = None) -> str:
    """Push the bundle of run ``run_ref`` to ``repository``; return ``HOST/REPO@sha256:...``."""
    from ..store import images as images_store
    from ..store import runs as runs_store
    from ..runs.bundle import export_run

    client = _Client(repository)
    run_id = runs_store.resolve(store, run_ref)
    record = runs_store.load(store, run_id)
    image = images_store.find(store, record.env_id, str(client.repo)) if record.env_id else None
    subject = None
    if image is not None:
        found = client.manifest(image.digest)
        if found is None:
            raise StoreError(f"the run's image {image.reference} is not in the registry any more")
        subject = _descriptor(found[0].get("mediaType") or MANIFEST, found[1])
    else:
        progress(f"no image of env {record.env_id} in {client.repo}: the bundle is pushed without a subject")
    with tempfile.TemporaryDirectory(prefix="envcap-oci-") as tmp:
        bundle = os.path.join(tmp, f"{run_id}.zip")
        export_run(store, run_id, bundle, carry_limit=carry_limit)  # a refusal here pushes nothing
        empty = os.path.join(tmp, "empty.json")
        with open(empty, "wb") as fh:
            fh.write(b"{}")
        layer = client.put_blob(bundle, BUNDLE_MEDIA_TYPE)
        layer["annotations"] = {"org.opencontainers.image.title": f"{run_id}.zip"}
        client.put_blob(empty, EMPTY_MEDIA_TYPE)
    annotations = {ANNOTATION_RUN: run_id, ANNOTATION_ENV: record.env_id or "",
                   ANNOTATION_RECORD: runs_store.record_id(store, run_id)}
    manifest: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [layer], "annotations": annotations,
    }
    if subject is not None:
        manifest["subject"] = subject
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    own = _descriptor(MANIFEST, body, artifactType=ARTIFACT_TYPE, annotations=annotations)
    response = client.put_manifest(own["digest"], body, MANIFEST)
    if subject is not None and not response.headers.get("OCI-Subject"):
        _add_referrer(client, subject["digest"], own)
        progress(f"listed under the referrers tag sha256-{subject['digest'][7:19]}… (no referrers API)")
    return f"{client.repo}@{own['digest']}"


def _add_referrer(client: _Client, subject_digest: str, descriptor: dict[str, Any]) -> None:
    """The referrers tag schema: the index tagged ``sha256-<hex>`` lists every referrer."""
    tag = subject_digest.replace(":", "-")
    found = client.manifest(tag)
    index: dict[str, Any] = found[0] if found else {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    listed: list[dict[str, Any]] = list(index.get("manifests", []))
    if any(m.get("digest") == descriptor["digest"] for m in listed):
        return
    index["manifests"] = [*listed, descriptor]
    client.put_manifest(tag, json.dumps(index, sort_keys=True, separators=(",", ":")).encode(), INDEX)


def referrers(repository: str, subject_digest: str) -> list[dict[str, Any]]:
    """The artifacts that name ``subject_digest``: the referrers API, else the tag schema."""
    client = _Client(repository)
    response = client.request("GET", f"referrers/{subject_digest}", headers={"Accept": INDEX})
    if response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
        return list(response.json().get("manifests", []))
    found = client.manifest(subject_digest.replace(":", "-"))
    return list(found[0].get("manifests", [])) if found else []


def parse_ref(ref: str) -> tuple[str, str]:
    """``oci://HOST/REPO@sha256:HEX`` as (repository, digest)."""
    body = ref.removeprefix("oci://")
    repository, sep, digest = body.partition("@")
    if not sep or not digest.startswith("sha256:") or len(digest) != 71:
        raise UsageError(f"{ref!r}: write oci://HOST/REPO@sha256:<64 hex digits> (what `envcap push --registry` "
                         "printed)")
    return repository, digest


_DIGEST_HEX = frozenset("0123456789abcdef")
_MAX_BUNDLE = 4 << 30  # as runs/bundle.py's whole-bundle limit


def _is_digest(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 71 and value.startswith("sha256:")
            and set(value[7:]) <= _DIGEST_HEX)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A run imported from an artifact, and the image the artifact hangs from: a candidate
    only, never bound to the run's env on the artifact's word (see :func:`bind_if_captured`)."""

    run_id: str
    env_id: str | None
    subject: str | None  # HOST/REPO@sha256:... or None


def _checked_artifact(manifest: Any, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The bundle layer and the subject of an artifact manifest, every field's type and
    size checked before anything is downloaded or imported."""
    if not isinstance(manifest, dict):
        raise StoreError(f"{where}: the registry's manifest is not a JSON object")
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise UsageError(f"{where} is not an envcap run bundle (artifactType {str(manifest.get('artifactType'))[:80]!r})")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise StoreError(f"{where}: the artifact's layers are not a list of descriptors")
    bundles = [x for x in layers if x.get("mediaType") == BUNDLE_MEDIA_TYPE]
    if len(bundles) != 1:
        raise UsageError(f"{where} is not an envcap run bundle ({len(bundles)} bundle layers, not 1)")
    layer = bundles[0]
    size = layer.get("size")
    if not _is_digest(layer.get("digest")):
        raise StoreError(f"{where}: the bundle layer's digest is not sha256:<64 hex digits>")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= _MAX_BUNDLE:
        raise StoreError(f"{where}: the bundle layer declares a size of {str(size)[:40]!r} bytes "
                         f"(a bundle is 1 to {_MAX_BUNDLE} bytes)")
    annotations = manifest.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict)
                                        and all(isinstance(v, str) for v in annotations.values())):
        raise StoreError(f"{where}: the artifact's annotations are not a map of strings")
    subject = manifest.get("subject")
    if subject is not None and not (isinstance(subject, dict) and _is_digest(subject.get("digest"))):
        raise StoreError(f"{where}: the artifact's subject is not a descriptor with a sha256 digest "
                         f"({type(subject).__name__})")
    return layer, subject


def _download(client: _Client, digest: str, layer: dict[str, Any], path: str, where: str) -> None:
    """The bundle blob, no more than its declared size, checked against its digest."""
    response = client.request("GET", f"blobs/{layer['digest']}", stream=True)
    if response.status_code == 404:
        raise StoreError(f"{where}: the bundle blob {layer['digest']} is not in the registry (deleted?)")
    _check(response, f"reading the bundle blob of {where}")
    size = layer["size"]
    hasher = hashlib.sha256()
    got = 0
    with open(path, "wb") as fh:
        for chunk in response.iter_content(1 << 20):
            got += len(chunk)
            if got > size:
                raise StoreError(f"{where}: the bundle blob is larger than the {size} bytes its layer declares")
            hasher.update(chunk)
            fh.write(chunk)
    if got != size:
        raise StoreError(f"{where}: the bundle blob is {got} bytes, not the {size} its layer declares")
    if "sha256:" + hasher.hexdigest() != layer["digest"]:
        raise StoreError(f"{where}: the bundle's bytes hash to sha256:{hasher.hexdigest()}, not {layer['digest']}")


def fetch(store: StoreBackend, ref: str, *, progress: Callable[[str], None] = lambda _: None) -> Fetched:
    """Import the run bundle that ``oci://HOST/REPO@sha256:...`` names into ``store``.

    Nothing is written before the artifact's manifest, the bundle's bytes and every file
    of the bundle are checked. The artifact's subject is returned as a candidate image and
    not recorded: an image is bound to an env only when envcap built it, or ran in it and
    captured that env (:func:`bind_if_captured`).
    """
    from ..runs.bundle import read_bundle

    repository, digest = parse_ref(ref)
    where = f"{repository}@{digest}"
    client = _Client(repository)
    found = client.manifest(digest)
    if found is None:
        raise StoreError(f"{where} is not in the registry")
    manifest, body = found
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise StoreError(f"{where}: the registry's manifest does not match its digest")
    layer, subject = _checked_artifact(manifest, where)
    with tempfile.TemporaryDirectory(prefix="envcap-oci-") as tmp:
        path = os.path.join(tmp, "bundle.zip")
        _download(client, digest, layer, path, where)
        bundle = read_bundle(path)  # Every file checked before anything is written.
        run_id = bundle.write_into(store)
    claimed = (manifest.get("annotations") or {}).get(ANNOTATION_ENV)
    env_id = bundle.record.env_id
    if claimed and claimed != env_id:
        progress(f"warning: {where} claims env {claimed[:19]}…, its run's record says {str(env_id)[:19]}…: "
                 "the claim is ignored")
    progress(f"imported run {run_id} from {repository}@{digest[:19]}…")
    return Fetched(run_id=run_id, env_id=env_id,
                   subject=f"{client.repo}@{subject['digest']}" if subject and env_id else None)


def fetch_bundle(store: StoreBackend, ref: str, *, progress: Callable[[str], None] = lambda _: None) -> str:
    """:func:`fetch`, for callers that need only the run id."""
    return fetch(store, ref, progress=progress).run_id


def bind_if_captured(store: StoreBackend, reference: str, env_id: str, captured_env_id: str | None) -> bool:
    """Record ``reference`` as an image of ``env_id`` when envcap ran in it and captured
    that very env (``captured_env_id``); never on an artifact's word. Whether it was bound."""
    from ..store import images as images_store

    if not captured_env_id or captured_env_id != env_id:
        return False
    repository, _, digest = reference.partition("@")
    images_store.record(store, images_store.ImageRecord(
        env_id=env_id, repository=repository, tag="", digest=digest, status="unchecked",
        engine="captured", base=""))
    return True
