"""End to end on the real test bed: a captured container rebuilt into an identical env.

In a container of the bookworm base image, install real packages (apt, and pip into a
venv), capture it from outside (envcap mounted read-only, run by the container's own
Python), build from that manifest, push, capture the built image: the same env_id.
Needs scripts/testbed.sh up; each image build costs real time, so these are few.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buildtest_support import HOST_CA, bed_facts
from click.testing import CliRunner

from envcap.builder import fidelity
from envcap.store import images as image_store
from envcap.pins.errors import LockError
from envcap.builder.pipeline import BuildOptions, BuildResult, build, tag_for
from envcap.builder.registry import Registry, Repository
from envcap.cli.main import _Group
from envcap.cli.build import build as build_cmd
from envcap.cli.build import images as images_cmd
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

APT_PACKAGES = ["jq"]
PIP_PACKAGES = ["six==1.17.0", "packaging==24.2"]
SOURCE_SCRIPT = f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends {' '.join(APT_PACKAGES)}
rm -rf /var/lib/apt/lists/*
python3 -m venv /opt/venv
PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} /opt/venv/bin/pip install -q --no-cache-dir \\
    --index-url https://pypi.org/simple {' '.join(PIP_PACKAGES)}
"""


class Bed:
    def __init__(self, facts: dict[str, str], tmp: Path) -> None:
        import docker

        from envcap.engines.docker import DockerEngine

        self.facts = facts
        self.docker = docker
        self.engine = DockerEngine()
        self.repository = f"{facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-e2e-{uuid.uuid4().hex[:8]}"
        self.base = facts["ENVCAP_TEST_BASE_BOOKWORM"]
        self.tmp = tmp
        self.source_image = f"localhost/envcap-e2e-source:{uuid.uuid4().hex[:8]}"

    def make_source(self) -> Manifest:
        """The source environment: a container of the base image with real installs."""
        # The host's CA bundle is mounted (not copied) for pip; the host's pip
        # configuration is not, and PIP_CONFIG_FILE=/dev/null keeps any other out.
        mount = self.docker.types.Mount(str(HOST_CA), str(HOST_CA), type="bind", read_only=True)
        container = self.engine.client.containers.run(self.base, ["/bin/bash", "-c", SOURCE_SCRIPT], detach=True,
                                                      network_mode="host", mounts=[mount])
        try:
            status = container.wait(timeout=600)
            assert status["StatusCode"] == 0, container.logs().decode()[-2000:]
            container.commit(*self.source_image.split(":"))
        finally:
            container.remove(force=True)
        probe_source = Manifest.create({"python": {"executable": "/opt/venv/bin/python", "base_prefix": "/usr"}},
                                       {"software": ["python"]})
        return fidelity.capture_image(self.engine, self.source_image, probe_source)

    def close(self) -> None:
        try:
            self.engine.client.images.remove(self.source_image, force=True)
        finally:
            self.engine.close()


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    b = Bed(bed_facts(), tmp_path_factory.mktemp("bed"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def source(bed: Bed) -> Manifest:
    return bed.make_source()


@pytest.fixture(scope="module")
def built(bed: Bed, source: Manifest) -> tuple[BuildResult, Path]:
    store_path = bed.tmp / "store"
    lines: list[str] = []
    with Store(store_path) as store:
        result = build(source, BuildOptions(registry=bed.repository, base=bed.base, ca_bundle=HOST_CA),
                       store=store, progress=lines.append)
    assert any(line.startswith("Step ") for line in lines)
    return result, store_path


def test_source_capture_sees_the_installs(source: Manifest) -> None:
    python = source.sections["python"]
    assert python["prefix"] == "/opt/venv" and python["base_prefix"] == "/usr"
    names = {p["name"]: p["version"] for p in python["packages"]}
    assert names["six"] == "1.17.0" and names["packaging"] == "24.2"
    assert "jq" in {p["name"] for p in source.sections["system"]["packages"]}


def test_rebuilt_image_captures_as_the_same_env(bed: Bed, source: Manifest, built: tuple[BuildResult, Path]) -> None:
    result, store_path = built
    assert result.fidelity is not None and result.fidelity.complete, "\n".join(result.fidelity.lines())
    assert result.record.status == "complete"
    # Captured again, independently, from what the registry serves.
    pulled = bed.engine.client.images.pull(result.reference)
    again = fidelity.capture_image(bed.engine, pulled.id, source)
    assert again.env_id == source.env_id
    # The registry's manifest digest is what the store holds, under the env's tag.
    registry = Registry(Repository.parse(bed.repository))
    assert registry.manifest_digest(tag_for(source.env_id)) == result.record.digest
    with Store(store_path) as store:
        assert [r.digest for r in image_store.images(store, source.env_id)] == [result.record.digest]
    labels = pulled.attrs["Config"]["Labels"]
    assert labels["dev.envcap.env-id"] == source.env_id
    assert labels["org.opencontainers.image.version"] == source.env_id
    assert labels["org.opencontainers.image.base.digest"] == bed.base.split("@")[1]


def test_a_source_read_as_a_file_tree_is_checked_as_one(bed: Bed, built: tuple[BuildResult, Path]) -> None:
    # The same source container, unpacked and captured with --root: the built image,
    # read files-only from inside, matches it (a live capture would add compilers,
    # environment variables and build flags that no tree shows).
    from test_diff import export_rootfs

    from envcap.capture.collect import snapshot

    root = bed.tmp / "source-tree"
    root.mkdir()
    export_rootfs(bed.source_image, root)
    tree = snapshot(root=root, select=["os", "libc", "python", "system"])
    assert {p["name"] for p in tree.sections["python"]["packages"]} >= {"six", "packaging"}
    result, _ = built
    checked, captured = fidelity.check(bed.engine, result.reference, tree)
    assert captured.observed["probes"]["python"]["status"] == "ok"
    assert checked.complete, "\n".join(checked.lines())


def test_the_ca_bundle_is_in_no_layer(bed: Bed, built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    image = bed.engine.client.images.get(result.reference)
    history = json.dumps(image.history())
    host_certs = _certs(HOST_CA.read_bytes())
    names: list[str] = []
    blobs: list[bytes] = []
    with tarfile.open(fileobj=_Stream(image.save()), mode="r|") as archive:
        for member in archive:
            if member.name.endswith("layer.tar"):
                layer = archive.extractfile(member).read()  # type: ignore[union-attr]
                blobs.append(layer)
                with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
                    names += inner.getnames()
    layers = b"".join(blobs)
    # The certificates the host has and Debian's bundle has not (the proxy's CA, which
    # pip needed during the build) appear in no layer of the image.
    debian = bed.engine.run(bed.base, ["cat", "/etc/ssl/certs/ca-certificates.crt"], []).encode()
    proxy = [c for c in host_certs if c not in debian]
    assert proxy, "the host's CA bundle has no certificate beyond Debian's to look for"
    assert not [c for c in proxy if c in layers]
    assert not [n for n in names if n.endswith("ca.pem") or "tmp/tmp." in n]
    assert "BEGIN CERTIFICATE" not in history
    # The build step that used it says so only by its hash, in the history.
    assert re.search(r"ENVCAP_CA_SHA256=[0-9a-f]{64}", history)


def test_building_again_returns_at_once(bed: Bed, source: Manifest, built: tuple[BuildResult, Path],
                                        tmp_path: Path) -> None:
    result, _ = built
    manifest_file = tmp_path / "m.json"
    manifest_file.write_text(source.to_json())
    group = _Group(name="envcap")
    group.add_command(build_cmd)
    group.add_command(images_cmd)
    start = time.monotonic()
    out = CliRunner().invoke(group, ["build", str(manifest_file), "--registry", bed.repository])
    elapsed = time.monotonic() - start
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1] == result.reference
    assert "already in the registry" in out.output
    assert elapsed < 2.0
    listing = json.loads(CliRunner().invoke(group, ["images", "--json"]).output)
    assert [r["reference"] for r in listing] == [result.reference]


def test_the_built_image_attests_its_inputs(source: Manifest, built: tuple[BuildResult, Path]) -> None:
    pytest.importorskip("in_toto_attestation")
    from envcap.export.attest import find_image, image_statement, parse

    result, store_path = built
    with Store(store_path) as store:
        [image] = image_store.images(store, source.env_id)
    assert image.inputs["manifest"] == source.id
    assert {"apt.txt", "requirements.txt"} <= set(image.inputs["lockfiles"])
    statement, provenance = parse(image_statement(find_image([image], result.reference)))
    assert dict(statement.pb.subject[0].digest) == {"sha256": result.record.digest.removeprefix("sha256:")}
    deps = {d["name"]: d for d in provenance["buildDefinition"]["resolvedDependencies"]}
    assert deps["manifest"]["digest"]["sha256"] == source.id.removeprefix("sha256:")
    assert deps["apt.txt"]["digest"]["sha256"] == image.inputs["lockfiles"]["apt.txt"].removeprefix("sha256:")
    assert "sha256:" + deps["base-image"]["digest"]["sha256"] == image.base.partition("@")[2]


def test_a_version_the_mirror_lacks_fails_and_records_nothing(bed: Bed, source: Manifest, tmp_path: Path) -> None:
    data: dict[str, Any] = json.loads(source.to_json())
    for package in data["sections"]["system"]["packages"]:
        if package["name"] == "jq":
            package["version"] = "1.6-2.1+deb12u99"
    changed = Manifest.create(data["sections"], data["layers"], observed=data["observed"])
    steps: list[str] = []
    with Store(tmp_path / "store") as store:
        # Neither the mirror nor the dated archive serves it: refused before any build step.
        with pytest.raises(LockError, match=r"jq=1\.6-2\.1\+deb12u99.*ENVCAP_APT_ARCHIVE"):
            build(changed, BuildOptions(registry=bed.repository, base=bed.base), store=store, progress=steps.append)
        assert not any(line.startswith("base image:") for line in steps), steps
        assert image_store.images(store) == []
    assert Registry(Repository.parse(bed.repository)).manifest_digest(tag_for(changed.env_id)) is None


def test_reproducible_builds_from_clean_storage_give_one_digest(bed: Bed, source: Manifest, tmp_path: Path) -> None:
    import shutil

    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (scripts/testbed.sh up installs it)")
    digests = []
    for n in range(2):
        storage = tmp_path / f"storage-{n}"
        with Store(tmp_path / f"store-{n}") as store:
            result = build(source, BuildOptions(registry=f"{bed.repository}-r{n}", base=bed.base, reproducible=True,
                                                ca_bundle=HOST_CA, buildah_storage=storage), store=store)
        assert result.record.status == "complete", result.record.differences
        digests.append(result.record.digest)
        from envcap.engines.buildah import BuildahEngine

        BuildahEngine(storage).remove_all()
    assert digests[0] == digests[1]


def _certs(bundle: bytes) -> list[bytes]:
    """One distinctive body line of each certificate in a PEM bundle."""
    out = []
    for block in bundle.split(b"-----BEGIN CERTIFICATE-----")[1:]:
        lines = [line for line in block.split(b"-----END")[0].split() if len(line) == 64]
        if len(lines) > 3:
            out.append(lines[3])
    return out


class _Stream(io.RawIOBase):
    """A file over docker's chunked image.save() generator, read once, in order."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self.buffer:
            try:
                self.buffer = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n
