"""Run bundles as OCI artifacts in the test bed's registry (distribution 2.8: no referrers API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_envcap

pytestmark = pytest.mark.testbed
REGISTRY = os.environ.get("ENVCAP_TEST_REGISTRY")
BASE = os.environ.get("ENVCAP_TEST_BASE_BOOKWORM")


@pytest.fixture
def image_repo() -> tuple[str, str]:
    """A repository of its own holding one real image (the test bed's Debian base), and its digest."""
    if not REGISTRY or not BASE:
        pytest.skip("no container test bed: run scripts/testbed.sh up")
    repo = f"{REGISTRY}/envcap-test/oci-{os.urandom(4).hex()}"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{BASE}", f"docker://{repo}:image"], check=True, timeout=300, capture_output=True)
    from envcap.builder.registry import Registry, Repository

    digest = Registry(Repository.parse(repo)).manifest_digest("image")
    assert digest
    return repo, digest


def test_a_bundle_is_an_artifact_of_the_image_and_rebuild_reads_it_back(image_repo: tuple[str, str],
                                                                        tmp_path: Path) -> None:
    from envcap.runs import oci
    from envcap.store import images
    from envcap.store.embedded import Store

    repo, image_digest = image_repo
    proc = run_envcap("run", "--param", "lr=0.1", "--", sys.executable, "-c", "print(1)", check=True)
    run_id = proc.stderr.split("run ", 1)[1].split()[0]
    with Store() as store:
        env_id = json.loads(run_envcap("show", run_id, "--json", check=True).stdout)["env_id"]
        # As `envcap build` records the image it pushed.
        images.record(store, images.ImageRecord(env_id, repo, "image", image_digest, "complete", "docker", "debian"))
    pushed = run_envcap("push", run_id, "--registry", repo, check=True)
    ref = pushed.stdout.strip()
    assert ref.startswith(f"{repo}@sha256:") and "no referrers API" in pushed.stderr
    assert run_envcap("push", run_id, "--registry", repo, check=True).stdout.strip() == ref  # Same bytes, same id.

    client = oci._Client(repo)
    manifest, _ = client.manifest(ref.split("@")[1])
    assert manifest["artifactType"] == oci.ARTIFACT_TYPE
    assert manifest["subject"]["digest"] == image_digest
    assert manifest["annotations"][oci.ANNOTATION_RUN] == run_id
    assert manifest["annotations"][oci.ANNOTATION_ENV] == env_id
    assert [layer["mediaType"] for layer in manifest["layers"]] == [oci.BUNDLE_MEDIA_TYPE]
    # The referrers tag schema: the index tagged sha256-<hex> lists the artifact once.
    listed = oci.referrers(repo, image_digest)
    assert [m["digest"] for m in listed] == [ref.split("@")[1]]
    assert listed[0]["artifactType"] == oci.ARTIFACT_TYPE

    # Another machine with an empty store: the registry alone is enough to plan the rebuild.
    other = {"ENVCAP_HOME": str(tmp_path / "elsewhere")}
    plan = run_envcap("rebuild", f"oci://{ref}", "--dry-run", "--json", env=other)
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)
    assert report["original"] == run_id
    assert report["image"]["reference"] == f"{repo}@{image_digest}"
    shown = json.loads(run_envcap("show", run_id, "--json", env=other, check=True).stdout)
    assert shown["env_id"] == env_id and shown["params"][0]["value"] == 0.1
    assert run_envcap("audit", run_id, env=other).returncode == 0


def test_a_reference_that_is_no_bundle_is_a_clear_error(image_repo: tuple[str, str]) -> None:
    repo, image_digest = image_repo
    proc = run_envcap("rebuild", f"oci://{repo}@{image_digest}", "--dry-run")
    assert proc.returncode == 2 and "is not an envcap run bundle" in proc.stderr
    proc = run_envcap("rebuild", f"oci://{repo}:latest", "--dry-run")
    assert proc.returncode == 2 and "oci://HOST/REPO@sha256:" in proc.stderr
