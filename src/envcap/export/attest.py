"""in-toto attestations (Statement v1) of a built image and of a run.

Written with the ``in-toto-attestation`` library (its Statement, ResourceDescriptor and
SLSA Provenance v1 messages), and parsed back through it by :func:`parse`.

- An **image**: the subject is the pushed image (its repository and registry manifest
  digest); the predicate is SLSA Provenance v1 whose resolved dependencies are the
  manifest the image was built from, the lockfiles and Dockerfile rendered from it
  (by digest), and the base image pinned by digest.
- A **run**: the subjects are the run's output files (by sha256; a directory by its
  Merkle fingerprint, digest name ``envcap-dir-sha256``) and the run record itself
  (its object id in the store); the predicate (type :data:`RUN_PREDICATE`) states the
  inputs (code commit, parameters and their id, seeds, data fingerprints, the
  environment's manifest and env id) and the outputs and metrics.

Everything comes from stored records, which were redacted when they were written; no
environment variable or command line is read here.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..core.errors import AmbiguousIdError, NotFoundError, UsageError
from .sbom import ExportError, envcap_version, need
from ..store.base import StoreBackend

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
RUN_PREDICATE = "urn:envcap:attestation:run:v1"
IMAGE_BUILD_TYPE = "urn:envcap:build:image:v1"
BUILDER_ID = "urn:envcap:builder"
DIR_DIGEST = "envcap-dir-sha256"


def _hex(oid: str) -> str:
    return oid.removeprefix("sha256:")


def _descriptor(**fields: Any) -> Any:
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    rd = ResourceDescriptor(**{k: v for k, v in fields.items() if v})
    rd.validate()
    return rd.pb


def _statement(subjects: list[Any], predicate_type: str, predicate: Mapping[str, Any]) -> str:
    need("in_toto_attestation", "in-toto-attestation")
    from google.protobuf import json_format
    from in_toto_attestation.v1.statement import Statement

    stmt = Statement(subjects, predicate_type, dict(predicate))
    try:
        stmt.validate()
    except ValueError as exc:  # pragma: no cover - a bug in envcap, not a user's mistake
        raise ExportError(f"the statement envcap made is not a valid in-toto statement: {exc}") from exc
    data = _ints(json_format.MessageToDict(stmt.pb))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _ints(value: Any) -> Any:
    """Whole numbers back as integers: a protobuf Struct holds every number as a double
    (so exit code 0 would read 0.0). JSON does not tell 1 and 1.0 apart."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


# -- images ----------------------------------------------------------------------------------


def image_statement(image: Any) -> str:
    """SLSA provenance of an image recorded by ``envcap build`` (a store ImageRecord)."""
    need("in_toto_attestation", "in-toto-attestation")
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2 as slsa

    inputs = dict(image.inputs)
    if image.status == "unchecked" or not inputs.get("manifest"):
        raise UsageError(f"{image.reference}: envcap did not record how this image was built "
                         + ("(it was found in the registry, not built here)" if image.status == "unchecked"
                            else "(it was built before envcap kept build inputs)")
                         + f"; build it here to attest it: envcap build {image.env_id} --registry "
                         f"{image.repository} --force")
    deps = [_descriptor(name="manifest", uri=f"envcap:manifest/{inputs['manifest']}",
                        digest={"sha256": _hex(inputs["manifest"])},
                        annotations={"env_id": image.env_id}, media_type="application/json")]
    if inputs.get("dockerfile"):
        deps.append(_descriptor(name="Dockerfile", digest={"sha256": _hex(inputs["dockerfile"])}))
    for name, dig in sorted((inputs.get("lockfiles") or {}).items()):
        deps.append(_descriptor(name=name, digest={"sha256": _hex(dig)}))
    base_name, _, base_digest = image.base.partition("@")
    if base_digest:
        deps.append(_descriptor(name="base-image", uri=f"docker://{base_name}",
                                digest={"sha256": _hex(base_digest)}))
    prov = slsa.Provenance()
    build = prov.build_definition
    build.build_type = IMAGE_BUILD_TYPE
    build.external_parameters.update({"env_id": image.env_id, "manifest": inputs["manifest"],
                                      "repository": image.repository, "tag": image.tag})
    build.internal_parameters.update({"engine": image.engine, "fidelity": image.status,
                                      "differences": list(image.differences)})
    build.resolved_dependencies.extend(deps)
    prov.run_details.builder.id = BUILDER_ID
    prov.run_details.builder.version["envcap"] = envcap_version()
    prov.run_details.metadata.invocation_id = f"{image.repository}@{image.digest}"
    if image.built_at:
        prov.run_details.metadata.finished_on.FromJsonString(_rfc3339(image.built_at))
    subject = _descriptor(name=image.repository, uri=f"docker://{image.reference}",
                          digest={"sha256": _hex(image.digest)}, annotations={"tag": image.tag})
    return _statement([subject], SLSA_PROVENANCE, json_format.MessageToDict(prov))


def _rfc3339(stamp: str) -> str:
    return stamp.replace("+00:00", "Z")


# -- runs ------------------------------------------------------------------------------------


def run_statement(record: Any, record_oid: str) -> str:
    """The statement of a run: what went in, what came out (a stored RunRecord)."""
    need("in_toto_attestation", "in-toto-attestation")
    subjects = [_descriptor(name=f"envcap-run/{record.id}", uri=f"envcap:run/{record.id}",
                            digest={"sha256": _hex(record_oid)}, media_type="application/json",
                            annotations={"record": record_oid})]
    outputs = []
    for out in record.outputs:
        rd = _artifact(out)
        if rd is not None:
            subjects.append(rd)
            outputs.append(_artifact_json(out))
    git = dict(record.git)
    code: dict[str, Any] = {"in_repository": bool(git.get("in_repository"))}
    if git.get("in_repository"):
        diff = git.get("diff") or {}
        code.update({"commit": git.get("commit"), "branch": git.get("branch"), "dirty": bool(git.get("dirty")),
                     "remote": git.get("remote"), "diff": diff.get("object"),
                     "untracked": [{"path": u.get("path"), "sha256": u.get("object")}
                                   for u in git.get("untracked") or () if u.get("object")]})
    predicate = {
        "run": {"id": record.id, "record": record_oid, "status": record.status, "exit_code": record.exit_code,
                "command": record.command, "started_at": record.started_at, "ended_at": record.ended_at,
                "duration_s": record.duration_s, "host": record.host, "envcap_version": record.envcap_version},
        "inputs": {
            "code": code,
            "params_id": record.params_id,
            "params": [p.to_dict() for p in record.params],
            "params_files": [{"path": f.get("repo_path") or f.get("path"), "sha256": f.get("object")}
                             for f in record.params_files],
            "seeds": {"global": record.seeds.get("global"), "named": dict(record.seeds.get("named") or {})},
            "data": [_artifact_json(d) for d in record.data],
            "environment": {"manifest": record.manifest, "env_id": record.env_id,
                            "platform_id": record.platform_id},
        },
        "outputs": outputs,
        "metrics": dict(record.metrics),
    }
    return _statement(subjects, RUN_PREDICATE, predicate)


def _digest(item: Mapping[str, Any]) -> dict[str, str] | None:
    fp = str(item.get("fingerprint") or "")
    if not fp.startswith("sha256:"):
        return None
    return {"sha256" if item.get("kind") == "file" else DIR_DIGEST: _hex(fp)}


def _artifact(item: Mapping[str, Any]) -> Any:
    dig = _digest(item)
    if dig is None:
        return None
    return _descriptor(name=str(item.get("path") or item.get("name")), digest=dig,
                       annotations={"kind": item.get("kind"), "files": item.get("files"), "bytes": item.get("bytes")})


def _artifact_json(item: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("name", "path", "kind", "fingerprint", "files", "bytes", "split", "version")
    return {k: item[k] for k in keys if item.get(k) is not None}


# -- reading back ----------------------------------------------------------------------------


def parse(text: str | bytes) -> tuple[Any, dict[str, Any]]:
    """A statement read back through the library: (Statement, predicate as JSON).

    Checks the statement as the library does (type, subjects with digests, a predicate)
    and, for SLSA provenance, that the predicate parses as Provenance v1.
    """
    need("in_toto_attestation", "in-toto-attestation")
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2 as slsa
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    try:
        pb = json_format.Parse(text, statement_pb2.Statement())
        stmt = Statement.copy_from_pb(pb)
        stmt.validate()
        predicate = json_format.MessageToDict(stmt.pb.predicate)
        if stmt.pb.predicate_type == SLSA_PROVENANCE:
            json_format.ParseDict(predicate, slsa.Provenance())
    except (json_format.ParseError, ValueError) as exc:
        raise UsageError(f"not an in-toto statement envcap can read: {exc}") from exc
    return stmt, _ints(predicate)


# -- what to attest --------------------------------------------------------------------------


def attest(store: StoreBackend, ref: str) -> tuple[str, str]:
    """The statement REF names: a run (id or prefix), else an image (``REPO@DIGEST``,
    ``REPO:TAG``, an image digest, or an env id). Returns (what, statement)."""
    from ..core.run import looks_like_run_ref
    from ..store import images as image_store
    from ..store import runs as runs_store

    if "/" not in ref and ":" not in ref and looks_like_run_ref(ref):
        if runs_store.find(store, ref):
            run_id = runs_store.resolve(store, ref)
            oid = runs_store.record_id(store, run_id)
            return f"run {run_id}", run_statement(runs_store.load_object(store, oid), oid)
    image = find_image(image_store.images(store), ref)
    return f"image {image.reference}", image_statement(image)


def find_image(rows: list[Any], ref: str) -> Any:
    """The newest image REF names among ``rows``."""
    if "@" in ref:
        repo, _, dig = ref.partition("@")
        hits = [r for r in rows if r.repository == repo and r.digest == dig]
    elif "/" in ref and ":" in ref.rsplit("/", 1)[1]:
        repo, _, tag = ref.rpartition(":")
        hits = [r for r in rows if r.repository == repo and r.tag == tag]
    else:
        hexpart = ref.removeprefix("sha256:").lower()
        if len(hexpart) < 4 or any(c not in "0123456789abcdef" for c in hexpart):
            raise NotFoundError(f"{ref}: not a run, and not an image reference (REPO@DIGEST, REPO:TAG, "
                                "an image digest or an env id)")
        hits = [r for r in rows if _hex(r.digest).startswith(hexpart)]
        if len({(r.repository, r.digest) for r in hits}) > 1:
            raise AmbiguousIdError(f"{ref}: matches {len(hits)} images; give more of the digest, or REPO@DIGEST")
        # Else an env id: its newest image (rows are oldest first).
        hits = hits or [r for r in rows if _hex(r.env_id).startswith(hexpart)]
    if not hits:
        raise NotFoundError(f"{ref}: no run or built image with that id (envcap runs, envcap images)")
    return hits[-1]
