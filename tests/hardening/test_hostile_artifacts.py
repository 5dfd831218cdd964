"""Class 6: forged registry artifacts through `envcap rebuild oci://` (issue 20 items 1, 2, 5).

Each artifact is pushed to the test bed's real registry (127.0.0.1:5000) with the fields
a forger controls (subject, layer size and digest, annotations, the bundle inside) set
to hostile values, and read back by the real command. It is refused with exit 2 and an
error line, nothing imported, or taken; either way no image is ever bound to an env on
the artifact's word, and nothing is written outside the store.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hardening_support import SETTINGS, Case, budget  # isort: skip
from hostile_support import (  # isort: skip
    BaseBundle, clean_refusal, cli, files_under, forge, fresh_dir, make_base_bundle, store_state, with_untracked,
)

pytestmark = pytest.mark.testbed
REGISTRY = os.environ.get("ENVCAP_TEST_REGISTRY")
CASE = "6. hostile artifacts (rebuild oci://)"
ARTIFACT = "application/vnd.envcap.bundle.v1"
BUNDLE = "application/vnd.envcap.bundle.v1+zip"
EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FAKE_IMAGE = "sha256:" + "7" * 64


class Registry:
    """Plain HTTP to the test bed's registry: what any forger with push rights can do."""

    def __init__(self, repo: str) -> None:
        import requests

        self.http = requests.Session()
        self.repo = repo
        host, _, path = repo.partition("/")
        self.base = f"http://{host}/v2/{path}"
        self.blobs: set[str] = set()

    def blob(self, data: bytes) -> str:
        dig = "sha256:" + hashlib.sha256(data).hexdigest()
        if dig not in self.blobs:
            start = self.http.post(f"{self.base}/blobs/uploads/", timeout=30)
            assert start.status_code == 202, start.text
            location = start.headers["Location"]
            sep = "&" if "?" in location else "?"
            url = location if location.startswith("http") else f"http://{self.repo.split('/')[0]}{location}"
            put = self.http.put(f"{url}{sep}digest={dig}", data=data, timeout=60,
                                headers={"Content-Type": "application/octet-stream"})
            assert put.status_code == 201, put.text
            self.blobs.add(dig)
        return dig

    def manifest(self, body: bytes) -> str | None:
        dig = "sha256:" + hashlib.sha256(body).hexdigest()
        put = self.http.put(f"{self.base}/manifests/{dig}", data=body, headers={"Content-Type": MANIFEST}, timeout=30)
        return dig if put.status_code == 201 else None

    def delete_blob(self, dig: str) -> None:
        self.http.delete(f"{self.base}/blobs/{dig}", timeout=30)
        self.blobs.discard(dig)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseBundle:
    return make_base_bundle(tmp_path_factory.mktemp("base-bundle"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    if not REGISTRY:
        pytest.skip("no registry test bed: run scripts/testbed.sh up")
    reg = Registry(f"{REGISTRY}/envcap-test/hostile-{os.urandom(4).hex()}")
    reg.blob(b"{}")
    return reg


def artifact(reg: Registry, bundle: bytes, *, subject: Any = "absent", size: Any = "right", digest: Any = "right",
             annotations: Any = "absent", layers: Any = "one", artifact_type: str = ARTIFACT) -> str | None:
    dig = reg.blob(bundle)
    layer: dict[str, Any] = {"mediaType": BUNDLE, "digest": dig if digest == "right" else digest,
                             "size": len(bundle) if size == "right" else size}
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
                                "config": {"mediaType": EMPTY, "digest": reg.blob(b"{}"), "size": 2},
                                "layers": [layer] if layers == "one" else layers}
    if subject != "absent":
        manifest["subject"] = subject
    if annotations != "absent":
        manifest["annotations"] = annotations
    return reg.manifest(json.dumps(manifest).encode())


def _rebuild(reg: Registry, dig: str) -> tuple[Any, Path, Path]:
    work = fresh_dir("envcap-oci-")
    home = work / "home"
    before = files_under(work)
    result = cli("rebuild", f"oci://{reg.repo}@{dig}", "--dry-run", "--json", home=home)
    outside = {p for p in files_under(work) - before if not p.startswith("home")}
    assert not outside, sorted(outside)[:5]
    return result, home, work


def _images(home: Path) -> list[Any]:
    import sqlite3

    if not (home / "index.sqlite").exists():
        return []
    db = sqlite3.connect(home / "index.sqlite")
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'images'").fetchone():
            return []
        return db.execute("SELECT env_id, repository, digest FROM images").fetchall()
    finally:
        db.close()


def _held(reg: Registry, dig: str) -> None:
    result, home, work = _rebuild(reg, dig)
    try:
        assert not result.traceback, f"traceback: {result.exception!r}\n{result.output}"
        assert result.code in (0, 2), (result.code, result.output)
        if result.code == 2:
            clean_refusal(result)
        runs = store_state(home)[0]
        if runs:
            # Imported, whether or not the rebuild could then be planned: whole and safe.
            from envcap.core.files import safe_relpath
            from envcap.store import runs as runs_store
            from envcap.store.embedded import Store

            with Store(home, create=False) as store:
                for run_id in runs:
                    for item in runs_store.load(store, run_id).git.get("untracked") or ():
                        safe_relpath(item["path"])
            assert cli("verify", home=home).code == 0
        assert _images(home) == [], "an image was bound to an env on an artifact's word"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- item 2: image poisoning -----------------------------------------------------------------


def test_an_annotation_never_binds_an_image_to_an_env(base: BaseBundle, registry: Registry) -> None:
    victim_env = "sha256:" + "7" * 64
    dig = artifact(registry, base.path.read_bytes(), subject={"mediaType": MANIFEST, "digest": FAKE_IMAGE, "size": 9},
                   annotations={"dev.envcap.env.id": victim_env, "dev.envcap.run.id": base.run_id})
    assert dig
    with Case(CASE):
        result, home, _ = _rebuild(registry, dig)
        assert result.code == 0, result.output
        report = json.loads(result.output[result.output.index("{"):])
        # The subject may be tried for this rebuild, said to be unverified...
        assert report["image"]["reference"] == f"{registry.repo}@{FAKE_IMAGE}"
        assert report["image"]["status"] == "unverified"
        # ...but no env, the claimed one or the run's own, has it as its image.
        assert _images(home) == []
        again = cli("rebuild", base.run_id, "--dry-run", home=home)
        clean_refusal(again)
        assert "has no image" in again.output


@pytest.mark.parametrize("subject", ["sha256:" + "7" * 64, ["x"], 5, {}, {"digest": "md5:x"}, {"digest": 7}])
def test_a_subject_of_the_wrong_type_is_refused_before_the_import(base: BaseBundle, registry: Registry,
                                                                  subject: Any) -> None:
    dig = artifact(registry, base.path.read_bytes(), subject=subject)
    assert dig
    with Case(CASE):
        result, home, _ = _rebuild(registry, dig)
        clean_refusal(result)
        assert "subject" in result.output
        assert store_state(home) == ([], [])


# (A size that is not an integer, "12", 1.5 or true, the registry itself refuses.)
@pytest.mark.parametrize("size", [0, -1, 1, "len+1", "len-1", 10**13, None])
def test_the_layer_size_is_checked(base: BaseBundle, registry: Registry, size: Any) -> None:
    data = base.path.read_bytes()
    declared = {"len+1": len(data) + 1, "len-1": len(data) - 1}.get(size, size) if isinstance(size, str) else size
    dig = artifact(registry, data, size=declared)
    if dig is None:
        pytest.skip(f"the registry itself refuses a layer size of {size!r}")
    with Case(CASE):
        result, home, _ = _rebuild(registry, dig)
        clean_refusal(result)
        assert "size" in result.output or "bytes" in result.output
        assert store_state(home) == ([], [])


def test_a_blob_deleted_under_the_artifact_is_a_clear_error(base: BaseBundle, registry: Registry) -> None:
    data = base.path.read_bytes() + b""  # its own blob, deleted below
    forged = forge(base)  # different bytes from the base file: a blob of its own
    dig = artifact(registry, forged)
    assert dig and data
    registry.delete_blob("sha256:" + hashlib.sha256(forged).hexdigest())
    with Case(CASE):
        result, home, _ = _rebuild(registry, dig)
        clean_refusal(result)
        assert "not in the registry" in result.output or "404" in result.output
        assert store_state(home) == ([], [])


def test_an_escaping_path_from_the_registry_writes_nothing(base: BaseBundle, registry: Registry) -> None:
    record, extra = with_untracked(base, ["../../escaped-from-oci"])
    dig = artifact(registry, forge(base, record, extra=extra))
    assert dig
    with Case(CASE):
        work = fresh_dir("envcap-oci-")
        result = cli("rebuild", f"oci://{registry.repo}@{dig}", "--print", home=work / "home")
        clean_refusal(result)
        assert not list(work.parent.glob("escaped-from-oci")) and store_state(work / "home") == ([], [])


# -- generated ---------------------------------------------------------------------------------

SUBJECTS = st.sampled_from(["absent", "sha256:" + "7" * 64, 5, [], {}, {"digest": FAKE_IMAGE},
                            {"digest": FAKE_IMAGE, "mediaType": MANIFEST, "size": 5}, {"digest": "sha256:" + "g" * 64},
                            {"digest": {"k": {"k": FAKE_IMAGE}}}, None])
# Most shapes the registry refuses itself (a size that is not a number, a digest that is
# not one): those come up rarely, so that most cases reach envcap.
SIZES = st.sampled_from(["right"] * 6 + [1, 10**13, "len+1", -5, "12"])
DIGESTS = st.sampled_from(["right"] * 12 + ["sha256:" + "0" * 64])
ANNOTATIONS = st.sampled_from(["absent", {}, {"dev.envcap.env.id": "sha256:" + "7" * 64}, {"dev.envcap.env.id": 5},
                               "annotations", [], {"dev.envcap.env.id": {"x": [1]}}, None])
LAYERS = st.sampled_from(["one"] * 8 + [[], [{"mediaType": "text/plain", "digest": "sha256:" + "0" * 64, "size": 1}]])
BUNDLES = st.sampled_from(["base", "escaping", "absolute", "garbage", "wrong-type", "deep"])


def _bundle_bytes(base: BaseBundle, which: str) -> bytes:
    if which == "base":
        return base.path.read_bytes()
    if which == "garbage":
        return b"PK\x03\x04 not a zip"
    if which in ("escaping", "absolute"):
        record, extra = with_untracked(base, ["../../x" if which == "escaping" else "/etc/x"])
        return forge(base, record, extra=extra)
    record = copy.deepcopy(base.record)
    if which == "wrong-type":
        record["git"]["untracked"] = "not a list"
        return forge(base, record)
    raw = json.dumps({**record, "labels": "__DEEP__"}).replace('"__DEEP__"', "[" * 5000 + "]" * 5000)
    return forge(base, raw_run_json=raw.encode())


@settings(budget(1.0, 10), suppress_health_check=[*SETTINGS.suppress_health_check, HealthCheck.filter_too_much])
@given(subject=SUBJECTS, size=SIZES, digest=DIGESTS, annotations=ANNOTATIONS, layers=LAYERS, which=BUNDLES)
def test_generated_artifacts(base: BaseBundle, registry: Registry, subject: Any, size: Any, digest: Any,
                             annotations: Any, layers: Any, which: str) -> None:
    data = _bundle_bytes(base, which)
    size = len(data) + 1 if size == "len+1" else size
    dig = artifact(registry, data, subject=subject, size=size, digest=digest, annotations=annotations, layers=layers)
    assume(dig is not None)  # what the registry itself refuses never reaches envcap
    with Case(CASE):
        _held(registry, dig)


def test_an_image_is_bound_only_when_the_run_in_it_captured_the_env(tmp_path: Path) -> None:
    """The one way an artifact's subject becomes an env's image: a rebuild ran in it and
    the manifest captured inside has the run's env_id."""
    from envcap.reproduce.oci import bind_if_captured
    from envcap.store import images
    from envcap.store.embedded import Store

    env, other = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    ref = f"127.0.0.1:5000/x/y@{FAKE_IMAGE}"
    with Store(tmp_path / "home") as store:
        with Case(CASE):
            assert not bind_if_captured(store, ref, env, other)
            assert not bind_if_captured(store, ref, env, None)
            assert images.images(store, env) == []
        assert bind_if_captured(store, ref, env, env)
        assert [i.reference for i in images.images(store, env)] == [ref]
