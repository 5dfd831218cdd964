"""`envcap attest RUN|IMAGE`: in-toto Statement v1, read back with the in-toto-attestation
library, stating what a run or an image build took in and put out, checked against the
files, the git repository and the store themselves."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import H200_TREE, git, run_envcap
from export_helpers import record_run

pytest.importorskip("in_toto_attestation")

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from envcap.builder.dockerfile import render
from envcap.builder.lock import lock
from envcap.builder.pipeline import build_inputs, tag_for
from envcap.export import attest
from envcap.store import images as image_store
from envcap.store import runs as runs_store
from envcap.store.embedded import Store, load_manifest

BASE = "docker.io/library/ubuntu:noble@sha256:" + "1" * 64
REPO = "127.0.0.1:5000/envs"
IMAGE_DIGEST = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()


def read_back(text: str) -> Statement:
    """The statement as the library reads it, validated by the library."""
    stmt = Statement.copy_from_pb(json_format.Parse(text, statement_pb2.Statement()))
    stmt.validate()
    return stmt


def test_a_run_statement_states_its_inputs_and_outputs(tmp_path: Path) -> None:
    run = record_run(tmp_path)
    out = tmp_path / "run.intoto.json"
    proc = run_envcap("attest", run.id[:10], "-o", str(out), check=True)
    assert f"run {run.id}" in proc.stdout
    stmt = read_back(out.read_text())
    assert stmt.pb.type == "https://in-toto.io/Statement/v1"
    assert stmt.pb.predicate_type == attest.RUN_PREDICATE
    subjects = {s.name: dict(s.digest) for s in stmt.pb.subject}
    # The output, by the sha256 of its bytes, and the run record, by its id in the store.
    assert subjects["model.bin"] == {"sha256": run.sha256("model.bin").removeprefix("sha256:")}
    with Store() as store:
        oid = runs_store.record_id(store, run.id)
        record_bytes = store.get_object(oid)
    assert subjects[f"envcap-run/{run.id}"] == {"sha256": hashlib.sha256(record_bytes).hexdigest()}

    _, predicate = attest.parse(out.read_text())
    inputs = predicate["inputs"]
    assert inputs["code"]["commit"] == git(run.repo, "rev-parse", "HEAD")
    assert inputs["code"]["dirty"] is False and inputs["code"]["branch"] == "main"
    assert inputs["params_id"] == run.view["params_id"]
    assert {p["name"]: p["value"] for p in inputs["params"]} == {"lr": 0.01, "epochs": 3}
    assert inputs["seeds"]["global"] == 7
    assert [(d["path"], d["fingerprint"]) for d in inputs["data"]] == [("train.csv", run.sha256("train.csv"))]
    assert inputs["environment"]["env_id"] == run.view["env_id"]
    assert inputs["environment"]["manifest"] == run.view["manifest"]
    assert [o["fingerprint"] for o in predicate["outputs"]] == [run.sha256("model.bin")]
    assert predicate["metrics"] == run.view["metrics"] and predicate["metrics"]["acc"] == 0.75
    assert predicate["run"]["exit_code"] == 0 and isinstance(predicate["run"]["exit_code"], int)
    assert predicate["run"]["status"] == "ok"


def test_a_run_statement_to_standard_output_is_the_same(tmp_path: Path) -> None:
    run = record_run(tmp_path)
    first = run_envcap("attest", run.id, check=True).stdout
    assert first == run_envcap("attest", run.id, check=True).stdout
    read_back(first)


def record_image(store: Store, manifest_path: Path, tmp_path: Path) -> tuple[image_store.ImageRecord, Path]:
    """What `envcap build` records for an image of the manifest: the real lock, render
    and inputs (no engine: the image digest stands for the registry's)."""
    manifest = load_manifest(manifest_path)
    rendered = render(manifest, lock(manifest, hashes=None), BASE, tag=tag_for(manifest.env_id))
    context = tmp_path / "context"
    rendered.write(context)
    record = image_store.record(store, image_store.ImageRecord(
        env_id=manifest.env_id, repository=REPO, tag=tag_for(manifest.env_id), digest=IMAGE_DIGEST,
        status="complete", engine="docker", base=BASE, inputs=build_inputs(manifest, rendered)))
    return record, context


@pytest.fixture()
def h200_manifest(tmp_path: Path) -> Path:
    out = tmp_path / "h200.json"
    run_envcap("snapshot", "--root", str(H200_TREE), "-o", str(out), check=True)
    return out


def test_an_image_statement_is_slsa_provenance_of_its_inputs(h200_manifest: Path, tmp_path: Path) -> None:
    manifest = load_manifest(h200_manifest)
    with Store() as store:
        image, context = record_image(store, h200_manifest, tmp_path)
    assert image.inputs["manifest"] == manifest.id
    texts = {ref: run_envcap("attest", ref, check=True).stdout
             for ref in (image.reference, f"{REPO}:{image.tag}", IMAGE_DIGEST[:19], manifest.env_id[:15])}
    assert len(set(texts.values())) == 1, "every way of naming the image gives the same statement"
    text = texts[image.reference]
    stmt = read_back(text)
    assert stmt.pb.predicate_type == "https://slsa.dev/provenance/v1"
    [subject] = stmt.pb.subject
    assert subject.name == REPO and dict(subject.digest) == {"sha256": IMAGE_DIGEST.removeprefix("sha256:")}
    provenance = json_format.ParseDict(json_format.MessageToDict(stmt.pb.predicate), provenance_pb2.Provenance())
    build = provenance.build_definition
    assert build.build_type == attest.IMAGE_BUILD_TYPE
    assert dict(build.external_parameters)["env_id"] == manifest.env_id
    deps = {d.name: d for d in build.resolved_dependencies}
    assert dict(deps["manifest"].digest) == {"sha256": manifest.id.removeprefix("sha256:")}
    assert dict(deps["base-image"].digest) == {"sha256": "1" * 64}
    # Each lockfile by the sha256 of the very bytes the build context held.
    for name in ("apt.txt", "requirements.txt", "Dockerfile"):
        assert dict(deps[name].digest) == {"sha256": hashlib.sha256((context / name).read_bytes()).hexdigest()}
    assert provenance.run_details.builder.id == attest.BUILDER_ID


def test_an_image_found_in_the_registry_is_not_attested(tmp_path: Path) -> None:
    with Store() as store:
        image_store.record(store, image_store.ImageRecord(
            env_id="sha256:" + "e" * 64, repository=REPO, tag=tag_for("sha256:" + "e" * 64),
            digest="sha256:" + "f" * 64, status="unchecked", engine="registry", base=""))
    proc = run_envcap("attest", f"{REPO}@sha256:" + "f" * 64)
    assert proc.returncode == 2 and "found in the registry, not built here" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_store_from_before_build_inputs_reads_and_is_still_written_the_old_way(tmp_path: Path) -> None:
    with Store(create=True) as store:
        path = store.path
    db = sqlite3.connect(Path(path) / "index.sqlite")
    # The images table as an envcap from before inputs made it, and a row as it wrote one.
    db.executescript("""CREATE TABLE images (env_id TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL,
        digest TEXT NOT NULL, status TEXT NOT NULL, engine TEXT NOT NULL, base TEXT NOT NULL,
        differences TEXT NOT NULL, built_at TEXT NOT NULL, PRIMARY KEY (repository, digest));""")
    old_insert = "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    db.execute(old_insert, ("sha256:" + "e" * 64, REPO, "env-x", "sha256:" + "d" * 64, "complete", "docker", BASE,
                            "[]", "2026-01-01T00:00:00+00:00"))
    db.commit()
    with Store() as store:
        [old] = image_store.images(store)
        assert old.inputs == {} and old.digest == "sha256:" + "d" * 64
        image_store.record(store, image_store.ImageRecord(
            env_id="sha256:" + "c" * 64, repository=REPO, tag="env-c", digest="sha256:" + "c" * 64,
            status="complete", engine="docker", base=BASE, inputs={"manifest": "sha256:" + "a" * 64}))
    # An older envcap can still record images in the store this one has written to.
    db.execute(old_insert, ("sha256:" + "b" * 64, REPO, "env-b", "sha256:" + "b" * 64, "complete", "docker", BASE,
                            "[]", "2026-01-02T00:00:00+00:00"))
    db.commit()
    db.close()
    with Store() as store:
        assert {i.digest[-1]: dict(i.inputs) for i in image_store.images(store)} == {
            "d": {}, "b": {}, "c": {"manifest": "sha256:" + "a" * 64}}
    proc = run_envcap("attest", "sha256:dddd")
    assert proc.returncode == 2 and "built before envcap kept build inputs" in proc.stderr, proc.stderr


def test_unknown_references_are_clear_errors() -> None:
    for ref in ("ZZZZZZZZ", "sha256:abcd", f"{REPO}:nosuchtag"):
        proc = run_envcap("attest", ref)
        assert proc.returncode == 2 and proc.stderr.startswith("envcap: error: "), proc.stderr
        assert "Traceback" not in proc.stderr


def test_parse_refuses_what_is_not_a_statement() -> None:
    from envcap.core.errors import UsageError

    with pytest.raises(UsageError, match="not an in-toto statement"):
        attest.parse(json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [],
                                 "predicateType": "x", "predicate": {"a": 1}}))
