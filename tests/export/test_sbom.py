"""`envcap export ENV --format cyclonedx|spdx`: every package of the manifest, with the
purl and hashes it should have, in a document the format's own library validates and
reads back. Ground truth for the GPU machine is what its dpkg-query and pip printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import H200, H200_TREE, TESTDATA, run_envcap

from envcap.export import sbom
from envcap.export.inventory import counts
from envcap.store.embedded import load_manifest

pytest.importorskip("cyclonedx")
pytest.importorskip("spdx_tools")


def snapshot_file(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "manifest.json"
    run_envcap("snapshot", "--no-store", "-o", str(out), *args, check=True)
    return out


@pytest.fixture(scope="module")
def h200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_file(tmp_path_factory.mktemp("h200"), "--root", str(H200_TREE))


def export(ref: str, fmt: str, tmp_path: Path, **env: str) -> dict:
    out = tmp_path / f"sbom.{fmt}.json"
    proc = run_envcap("export", ref, "--format", fmt, "-o", str(out), env=env or None, check=True)
    assert str(out) in proc.stdout
    return json.loads(out.read_text())


def ground_truth_h200() -> tuple[set[str], set[str]]:
    """The purls the GPU machine's own tools imply: dpkg-query's rows, pip list's
    (spelled by packageurl-python, the purl spec's reference implementation)."""
    from packageurl import PackageURL

    debs = set()
    for line in (H200 / "dpkg.tsv").read_text().splitlines():
        name, version, arch = line.split("\t")
        debs.add(PackageURL("deb", "ubuntu", name, version, {"arch": arch, "distro": "noble"}).to_string())
    pips = {PackageURL("pypi", None, p["name"], p["version"]).to_string()
            for p in json.loads((H200 / "pip-list.json").read_text())}
    return debs, pips


def test_cyclonedx_of_the_h200_lists_what_dpkg_and_pip_list(h200: Path, tmp_path: Path) -> None:
    from cyclonedx.model.bom import Bom

    doc = export(str(h200), "cyclonedx", tmp_path)
    text = json.dumps(doc)
    assert sbom.validate_cyclonedx(text) is None
    manifest = load_manifest(h200)
    assert len(doc["components"]) == sum(counts(manifest).values()) == 197 + 439
    purls = {c["purl"] for c in doc["components"]}
    debs, pips = ground_truth_h200()
    assert {p for p in purls if p.startswith("pkg:deb/")} == debs
    assert {p for p in purls if p.startswith("pkg:pypi/")} == pips
    cudnn = next(c for c in doc["components"] if c["name"] == "nvidia-cudnn-cu13")
    assert cudnn["purl"] == "pkg:pypi/nvidia-cudnn-cu13@9.19.0.56" and cudnn["version"] == "9.19.0.56"
    libc = next(c for c in doc["components"] if c["name"] == "libc6")
    assert libc["purl"].startswith("pkg:deb/ubuntu/libc6@2.39-") and libc["purl"].endswith("?arch=amd64&distro=noble")
    assert doc["metadata"]["component"]["version"] == manifest.env_id
    # The library reads back what it wrote: the same components, by reference.
    bom = Bom.from_json(doc)  # type: ignore[attr-defined]
    assert {c.bom_ref.value for c in bom.components} == {c["bom-ref"] for c in doc["components"]}


def test_spdx_of_the_h200_validates_and_lists_every_package(h200: Path, tmp_path: Path) -> None:
    doc = export(str(h200), "spdx", tmp_path)
    assert sbom.validate_spdx(json.dumps(doc)) == []
    assert len(doc["packages"]) == 197 + 439
    purls = {ref["referenceLocator"] for p in doc["packages"] for ref in p["externalRefs"]}
    debs, pips = ground_truth_h200()
    assert purls == debs | pips
    described = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"}
    assert described == {p["SPDXID"] for p in doc["packages"]}


def test_local_versions_vcs_installs_and_archive_hashes() -> None:
    from envcap.core.manifest import Manifest
    from envcap.export.inventory import packages

    sha = "ab" * 32
    python = {"packages": [
        {"name": "torch", "version": "2.9.0+cu130", "installer": "pip", "requested": True,
         "origin": {"kind": "index"}},
        {"name": "mylib", "version": "0.1", "installer": "pip", "requested": True,
         "origin": {"kind": "vcs", "vcs": "git", "url": "https://example.org/me/mylib.git", "commit": "c0ffee"}},
        {"name": "wheelie", "version": "1.0", "installer": "pip", "requested": True,
         "origin": {"kind": "file", "url": "file:///wheels/wheelie-1.0-py3-none-any.whl", "sha256": sha}},
    ]}
    manifest = Manifest.create({"python": python}, {"software": ["python"]})
    got = {p.name: p for p in packages(manifest)}
    assert got["torch"].purl == "pkg:pypi/torch@2.9.0%2Bcu130"
    assert got["mylib"].purl == ("pkg:pypi/mylib@0.1?vcs_url=git%2Bhttps://example.org/me/mylib.git%40c0ffee")
    assert got["wheelie"].hashes == (("sha256", sha),)
    for fmt in sbom.FORMATS:
        text = sbom.sbom(manifest, fmt)
        assert (sbom.validate_cyclonedx(text) if fmt == "cyclonedx" else sbom.validate_spdx(text)) in (None, [])
        assert sha in text


def test_the_same_manifest_gives_the_same_bytes(h200: Path) -> None:
    manifest = load_manifest(h200)
    for fmt in sbom.FORMATS:
        assert sbom.sbom(manifest, fmt) == sbom.sbom(manifest, fmt)


@pytest.mark.parametrize("fixture, expected", [
    ("rpm-fedora39", "pkg:rpm/fedora/ca-certificates@2023.2.60_v7.0.306-2.fc39?arch=noarch&epoch=0"),
    ("apk-alpine319", "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64"),
], ids=["rpm", "apk"])
def test_rpm_and_apk_purls(fixture: str, expected: str, tmp_path: Path) -> None:
    tree = TESTDATA / fixture / "fstree"
    manifest_path = snapshot_file(tmp_path, "--root", str(tree))
    manifest = load_manifest(manifest_path)
    if not manifest.sections.get("os"):  # These trees hold no os-release: the vendor is unknown.
        expected = expected.replace("/fedora/", "/").replace("/alpine/", "/")
    doc = export(str(manifest_path), "cyclonedx", tmp_path)
    assert sbom.validate_cyclonedx(json.dumps(doc)) is None
    assert len(doc["components"]) == len(manifest.sections["system"]["packages"])
    assert expected in {c["purl"] for c in doc["components"]}


def test_conda_packages_carry_their_hashes_and_no_channel_token(tmp_path: Path) -> None:
    manifest_path = snapshot_file(tmp_path, "--root", str(TESTDATA / "conda-linux64" / "fstree"))
    manifest = load_manifest(manifest_path)
    records = {p["name"]: p for p in manifest.sections["conda"]["packages"]}
    doc = export(str(manifest_path), "cyclonedx", tmp_path)
    assert sbom.validate_cyclonedx(json.dumps(doc)) is None
    assert len(doc["components"]) == len(records)
    numpy = next(c for c in doc["components"] if c["name"] == "numpy")
    assert numpy["purl"] == ("pkg:conda/numpy@1.26.4?build=py311h64a7726_0&channel=conda-forge"
                             "&subdir=linux-64&type=conda")
    assert {h["alg"]: h["content"] for h in numpy["hashes"]} == {"SHA-256": records["numpy"]["sha256"],
                                                                   "MD5": records["numpy"]["md5"]}
    private = next(c for c in doc["components"] if c["name"] == "acme-kernels")
    assert "channel=acme-private" in private["purl"]
    spdx_doc = export(str(manifest_path), "spdx", tmp_path)
    assert sbom.validate_spdx(json.dumps(spdx_doc)) == []
    checksums = {p["name"]: {c["algorithm"] for c in p["checksums"]} for p in spdx_doc["packages"]}
    assert checksums["numpy"] == {"SHA256", "MD5"}


def test_a_live_snapshot_by_id(tmp_path: Path) -> None:
    out = run_envcap("snapshot", "--json", check=True)
    manifest = json.loads(out.stdout)
    doc = export(manifest["id"][:19], "cyclonedx", tmp_path)
    assert sbom.validate_cyclonedx(json.dumps(doc)) is None
    python = manifest["sections"]["python"]["packages"]
    system = (manifest["sections"].get("system") or {}).get("packages") or []
    conda = (manifest["sections"].get("conda") or {}).get("packages") or []
    assert len(doc["components"]) == len(python) + len(system) + len(conda)
    # This test's own interpreter has pytest installed: the SBOM says so.
    import pytest as installed

    assert f"pkg:pypi/pytest@{installed.__version__}" in {c["purl"] for c in doc["components"]}
    spdx_doc = export(manifest["id"], "spdx", tmp_path)
    assert sbom.validate_spdx(json.dumps(spdx_doc)) == []
    assert len(spdx_doc["packages"]) == len(doc["components"])


def test_a_run_names_the_environment_it_was_recorded_in(tmp_path: Path) -> None:
    from export_helpers import record_run

    run = record_run(tmp_path)
    doc = export(run.id[:10], "cyclonedx", tmp_path)
    assert doc["metadata"]["component"]["version"] == run.view["env_id"]
    recorded = json.loads(run_envcap("show", run.view["manifest"], "--json", check=True).stdout)
    assert len(doc["components"]) == sum(len((recorded["sections"].get(name) or {}).get("packages") or [])
                                         for name in ("python", "system", "conda"))


def test_an_sbom_goes_to_standard_output_without_o(h200: Path) -> None:
    proc = run_envcap("export", str(h200), "--format", "spdx", check=True)
    assert json.loads(proc.stdout)["spdxVersion"] == "SPDX-2.3"


def test_a_manifest_without_packages_is_still_a_valid_sbom(tmp_path: Path) -> None:
    manifest_path = snapshot_file(tmp_path, "--select", "memory")
    doc = export(str(manifest_path), "cyclonedx", tmp_path)
    assert sbom.validate_cyclonedx(json.dumps(doc)) is None and doc.get("components", []) == []


def test_bad_references_are_clear_errors(tmp_path: Path) -> None:
    for ref in ("nosuchfile.json", "sha256:" + "0" * 64):
        proc = run_envcap("export", ref, "--format", "cyclonedx")
        assert proc.returncode == 2 and proc.stderr.startswith("envcap: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
    (tmp_path / "broken.json").write_text("{not json")
    proc = run_envcap("export", str(tmp_path / "broken.json"), "--format", "spdx", "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_snapshot_path_imports_no_export_library() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom envcap.cli.main import main\n"
            "r = CliRunner().invoke(main, ['snapshot', '--no-store', '--select', 'memory'])\n"
            "assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cyclonedx', 'spdx_tools', 'in_toto_attestation', 'rocrate', 'cryptography', 'packageurl', "
            "'google', 'envcap') and not m.startswith(('envcap.core', 'envcap.probes', 'envcap.ecosystems', "
            "'envcap.capture', 'envcap.store', 'envcap.cli'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['envcap']", out


def test_two_exports_with_another_snapshot_between_them_are_the_same_bytes(tmp_path: Path) -> None:
    import time

    first = json.loads(run_envcap("snapshot", "--json", "--root", str(H200_TREE), check=True).stdout)
    exports = []
    for attempt in range(2):
        if attempt:
            time.sleep(2.1)  # the snapshot's clock ticks in whole seconds
            again = json.loads(run_envcap("snapshot", "--json", "--root", str(H200_TREE), check=True).stdout)
            assert again["id"] == first["id"] and again["observed"]["time"] != first["observed"]["time"]
        for fmt in sbom.FORMATS:
            out = tmp_path / f"{attempt}.{fmt}.json"
            run_envcap("export", first["id"], "--format", fmt, "-o", str(out), check=True)
            exports.append(out.read_bytes())
    assert exports[:2] == exports[2:]
