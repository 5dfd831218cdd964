"""envcap diff: what differs between two manifests, by layer and section."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import H200_TREE, run_envcap

from envcap.capture.collect import snapshot
from envcap.compare.diff import (
    NUMERICS,
    Change,
    diff_manifests,
    package_sensitivity,
    path_sensitivity,
    render_text,
)
from envcap.store.resolve import resolve_manifest
from envcap.core.errors import ManifestError, NotFoundError
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store

# Written by scripts/testbed.sh (the autouse fixture keeps ENVCAP_TEST_*).
BOOKWORM = os.environ.get("ENVCAP_TEST_BASE_BOOKWORM") or "127.0.0.1:5000/envcap-base/debian:bookworm"
TRIXIE = os.environ.get("ENVCAP_TEST_BASE_TRIXIE") or "127.0.0.1:5000/envcap-base/debian:trixie"

def envcap(*args: str) -> subprocess.CompletedProcess[str]:
    return run_envcap(*args)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("envcap: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def h200() -> Manifest:
    return snapshot(root=str(H200_TREE))


def variant(base: Manifest, edit: Callable[[dict[str, Any]], None], **observed: Any) -> Manifest:
    """BASE with its sections edited by EDIT and its observations replaced."""
    sections = copy.deepcopy(dict(base.sections))
    edit(sections)
    layers = {k: [n for n in v if n in sections] for k, v in base.layers.items()}
    for name in sections:
        if not any(name in v for v in layers.values()):
            layers["software"].append(name)
    return Manifest.create(sections, layers, observed={**base.observed, **observed}, labels=dict(base.labels))


def package(sections: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    return next(p for p in sections[section]["packages"] if p["name"] == name)


def write(path: Path, m: Manifest) -> str:
    path.write_text(m.to_json())
    return str(path)


# -- identical ---------------------------------------------------------------------------


def test_identical_content_with_other_hosts_and_times_is_identical(h200: Manifest, tmp_path: Path) -> None:
    other = variant(h200, lambda s: None, hostname="elsewhere", time="2030-01-01T00:00:00+00:00")
    assert other.id == h200.id and other.observed != h200.observed
    d = diff_manifests(h200, other)
    assert d.identical and d.changes == ()
    proc = envcap("diff", write(tmp_path / "a.json", h200), write(tmp_path / "b.json", other))
    assert proc.returncode == 0, proc.stderr
    assert "identical" in proc.stdout


# -- packages ----------------------------------------------------------------------------


def edit_packages(s: dict[str, Any]) -> None:
    package(s, "python", "numpy")["version"] = "1.26.4"
    package(s, "python", "scipy")["origin"] = {"kind": "vcs", "vcs": "git", "url": "https://example.invalid/scipy.git",
                                              "commit": "0123456789abcdef0123", "requested_revision": None}
    package(s, "python", "accelerate")["installer"] = "conda"
    s["python"]["packages"] = [p for p in s["python"]["packages"] if p["name"] != "aiofiles"]
    s["python"]["packages"].append({"name": "zz-new", "version": "0.1", "installer": "pip", "requested": True,
                                    "origin": {"kind": "index"}})


def test_python_packages_added_removed_changed_with_versions_and_origin(h200: Manifest, tmp_path: Path) -> None:
    b = variant(h200, edit_packages)
    d = diff_manifests(h200, b)
    by_package = {c.package: c for c in d.changes}
    assert set(by_package) == {"numpy", "scipy", "accelerate", "aiofiles", "zz-new"}
    assert all(c.layer == "software" and c.section == "python" for c in d.changes)
    numpy = by_package["numpy"]
    assert (numpy.kind, numpy.fields) == ("changed", ("version",))
    assert (numpy.before["version"], numpy.after["version"]) == ("2.5.2", "1.26.4")
    assert numpy.sensitive == "numerical library"
    scipy = by_package["scipy"]
    assert scipy.fields == ("origin",) and scipy.after["origin"]["kind"] == "vcs"
    assert scipy.sensitive == "numerical library"
    assert by_package["accelerate"].fields == ("installer",) and by_package["accelerate"].sensitive is None
    assert (by_package["aiofiles"].kind, by_package["zz-new"].kind) == ("removed", "added")
    assert by_package["zz-new"].sensitive is None

    text = "\n".join(render_text(d))
    assert "numpy 2.5.2 → 1.26.4" in text
    assert "origin index → vcs https://example.invalid/scipy.git@0123456789ab" in text
    proc = envcap("diff", "--json", write(tmp_path / "a.json", h200), write(tmp_path / "b.json", b))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["identical"] is False
    assert data["layers"]["software"]["same"] is False and data["layers"]["platform"]["same"] is True
    assert [c["package"] for c in data["changes"]] == [c.package for c in d.changes]
    assert data["summary"]["sensitive"] == 2


def test_system_packages_are_keyed_by_name_and_architecture(h200: Manifest) -> None:
    def two_arches(s: dict[str, Any]) -> None:
        s["system"]["packages"] += [{"name": "libzz", "version": "1.0", "arch": "amd64"},
                                    {"name": "libzz", "version": "1.0", "arch": "i386"}]

    a = variant(h200, two_arches)

    def bump_i386(s: dict[str, Any]) -> None:
        two_arches(s)
        s["system"]["packages"][-1]["version"] = "1.1"

    d = diff_manifests(a, variant(h200, bump_i386))
    assert [(c.section, c.package, c.kind, c.fields) for c in d.changes] == [
        ("system", "libzz:i386", "changed", ("version",))
    ]


def test_a_package_moved_in_the_list_is_no_change(h200: Manifest) -> None:
    d = diff_manifests(h200, variant(h200, lambda s: s["python"]["packages"].reverse()))
    assert not d.identical  # the order is hashed...
    assert all(c.package is None for c in d.changes)  # ...but no package differs


# -- any section -------------------------------------------------------------------------


def test_sections_envcap_does_not_know_are_compared_by_path(h200: Manifest) -> None:
    def add(s: dict[str, Any]) -> None:
        s["widget"] = {"a": {"b": 1, "c": [1, 2]}, "flags": ["x", "y"], "g++": {"v": "1"}}

    def change(s: dict[str, Any]) -> None:
        s["widget"] = {"a": {"b": 2, "c": [1, 2, 3]}, "flags": ["y", "z"], "g++": {"v": "2"}}

    d = diff_manifests(variant(h200, add), variant(h200, change))
    assert sorted((c.path, c.kind, c.before, c.after) for c in d.changes) == sorted([
        ("a.b", "changed", 1, 2),
        ("a.c", "added", None, 3),
        ("flags", "added", None, "z"),
        ("flags", "removed", "x", None),
        ('["g++"].v', "changed", "1", "2"),
    ])
    assert {c.layer for c in d.changes} == {"software"}


def test_a_section_on_one_side_only_is_one_change_in_its_layer(h200: Manifest) -> None:
    no_gpu = variant(h200, lambda s: s.pop("gpu"))
    d = diff_manifests(no_gpu, h200)
    assert [(c.layer, c.section, c.path, c.kind) for c in d.changes] == [("platform", "gpu", "", "added")]
    assert d.changes[0].sensitive == "GPU driver"
    assert "only in B" in "\n".join(render_text(d))


# -- the test machine against the H200 ---------------------------------------------------


def test_h200_fixture_against_this_machine_puts_gpu_driver_and_cuda_in_their_layers(h200: Manifest) -> None:
    live = snapshot()
    d = diff_manifests(live, h200)
    layer_of = {name: layer for m in (live, h200) for layer, names in m.layers.items() for name in names}
    for c in d.changes:
        assert c.layer == layer_of[c.section], c
    # What is expected depends on this machine (with or without a GPU, a CUDA toolkit,
    # torch): it is read from the two manifests, independently of the diff.
    gpu = [c for c in d.changes if c.section == "gpu"]
    live_gpu, fixture_gpu = live.sections.get("gpu"), h200.sections["gpu"]
    assert bool(gpu) == (live_gpu != fixture_gpu)
    assert all(c.layer == "platform" for c in gpu)
    if live_gpu is None:
        assert [(c.path, c.kind, c.sensitive) for c in gpu] == [("", "added", "GPU driver")]
        assert gpu[0].after["driver_version"] == "580.159.04"
    elif live_gpu.get("driver_version") != fixture_gpu["driver_version"]:
        assert any(c.path == "driver_version" and c.sensitive == "GPU driver" for c in gpu)
    cuda = [c for c in d.changes if c.section == "cuda"]
    assert bool(cuda) == (live.sections.get("cuda") != h200.sections["cuda"])
    assert all(c.layer == "software" and c.sensitive == "CUDA" for c in cuda)
    live_packages = {p["name"]: p for p in (live.sections.get("python") or {}).get("packages", [])}
    fixture_packages = {p["name"]: p for p in h200.sections["python"]["packages"]}
    for name in ("torch", "nvidia-cudnn-cu13", "nvidia-nccl-cu13", "numpy"):
        changes = [c for c in d.changes if c.section == "python" and c.package == name]
        assert bool(changes) == (live_packages.get(name) != fixture_packages[name]), name
        assert all(c.layer == "software" and c.sensitive for c in changes), name
    assert not d.identical
    text = "\n".join(render_text(d))
    assert "software: differs" in text
    assert ("platform: differs" in text) == (live.platform_id != h200.platform_id)


# -- the numerically sensitive stack -----------------------------------------------------


@pytest.mark.parametrize("name, reason", [
    ("openblas", "BLAS/LAPACK"), ("libopenblas0-pthread", "BLAS/LAPACK"), ("libblas3", "BLAS/LAPACK"),
    ("liblapack3", "BLAS/LAPACK"), ("mkl", "BLAS/LAPACK"), ("scipy-openblas32", "BLAS/LAPACK"),
    ("libblis4", "BLAS/LAPACK"), ("nvidia-cublas-cu12", "CUDA library"), ("nvidia-cudnn-cu13", "CUDA library"),
    ("nvidia-nccl-cu13", "CUDA library"), ("libcudnn9-cuda-13", "CUDA library"), ("libnccl2", "CUDA library"),
    ("cudatoolkit", "CUDA library"), ("torch", "numerical library"), ("numpy", "numerical library"),
    ("scipy", "numerical library"), ("jax", "numerical library"), ("jaxlib", "numerical library"),
    ("tensorflow", "numerical library"), ("python3-numpy", "numerical library"),
    ("requests", None), ("nvidia-ml-py", None), ("curl", None), ("blessed", None), ("numpyro", None),
])
def test_package_sensitivity(name: str, reason: str | None) -> None:
    assert package_sensitivity(name) == reason


@pytest.mark.parametrize("section, path, reason", [
    ("gpu", "driver_version", "GPU driver"), ("gpu", "cuda_driver_version", "GPU driver"),
    ("gpu", "devices[0].name", "GPU model"), ("gpu", "count", None), ("cuda", "cudnn_version", "CUDA"),
    ("compilers", "flags.CFLAGS", "compiler flags"), ("compilers", 'tools["g++"].version', None),
    ("environment", "variables.OMP_NUM_THREADS", "numerics setting"), ("environment", "variables.LANG", None),
    ("environment", "variables.NCCL_ALGO", "numerics setting"), ("environment", "variables.NCCL_VERSION", None),
    ("os", "version_id", None),
])
def test_path_sensitivity(section: str, path: str, reason: str | None) -> None:
    assert path_sensitivity(section, path) == reason


def test_the_sensitive_stack_is_one_table() -> None:
    reasons = {r.reason for r in NUMERICS}
    assert {"BLAS/LAPACK", "CUDA library", "numerical library", "CUDA", "GPU driver", "compiler flags"} <= reasons


def test_driver_change_is_marked(h200: Manifest) -> None:
    d = diff_manifests(h200, variant(h200, lambda s: s["gpu"].update(driver_version="550.54.15")))
    assert [(c.layer, c.section, c.path, c.sensitive) for c in d.changes] == [
        ("platform", "gpu", "driver_version", "GPU driver")
    ]
    assert d.a.env_id == d.b.env_id
    assert any(line.startswith("  ! ~ driver_version: 580.159.04 → 550.54.15") for line in render_text(d))


# -- references and hostile inputs -------------------------------------------------------


def test_ids_and_prefixes_from_the_store(h200: Manifest) -> None:
    b = variant(h200, edit_packages)
    with Store() as store:
        store.add(h200)
        store.add(b)
    assert resolve_manifest(h200.id[7:19]).id == h200.id
    proc = envcap("diff", h200.id, b.id[7:20])
    assert proc.returncode == 1, proc.stderr
    assert "numpy 2.5.2 → 1.26.4" in proc.stdout


def test_a_missing_reference_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        resolve_manifest(str(tmp_path / "nope.json"))
    proc = envcap("diff", str(tmp_path / "nope.json"), "zzzz")
    assert_clean_error(proc, "nope.json: no such file")


@pytest.mark.parametrize("mangle, fragment", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: text.replace('"schema_version": "1.', '"schema_version": "9.'), "schema version 9."),
    (lambda text: text.replace('"driver_version": "580.159.04"', '"driver_version": "580.159.05"'),
     "changed after it was written"),
    (lambda text: "\x00\xff garbage", "not"),
    (lambda text: "[]", "a manifest is a JSON object"),
])
def test_hostile_inputs_exit_2_without_a_traceback(h200: Manifest, tmp_path: Path,
                                                   mangle: Callable[[str], str], fragment: str) -> None:
    good = write(tmp_path / "good.json", h200)
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(h200.to_json()), encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ManifestError):
        resolve_manifest(str(bad))
    assert_clean_error(envcap("diff", good, str(bad)), "bad.json", fragment)
    assert_clean_error(envcap("diff", "--json", str(bad), good), "bad.json")


# -- two real Debian releases --------------------------------------------------------------


def export_rootfs(image: str, dest: Path) -> None:
    """Unpack IMAGE's file system into DEST (docker create + export), or skip the test."""
    try:
        import docker
    except ImportError:
        docker = None
    if docker is not None:
        try:
            client = docker.from_env()
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure here means "no daemon"
            pytest.skip(f"the docker daemon is not reachable ({type(exc).__name__}); start it with scripts/testbed.sh up")
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.skip(f"image {image} is not present; scripts/testbed.sh up builds it")
        container = client.containers.create(image, command=["/bin/true"], network_mode="host")
        try:
            untar = subprocess.Popen(["tar", "-x", "-C", str(dest), "--exclude=dev/*"], stdin=subprocess.PIPE)
            assert untar.stdin is not None
            for chunk in container.export():
                untar.stdin.write(chunk)
            untar.stdin.close()
            assert untar.wait(timeout=300) == 0
        finally:
            container.remove(force=True)
        return
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("the docker daemon is not reachable; start it with scripts/testbed.sh up")
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"image {image} is not present; scripts/testbed.sh up builds it")
    cid = subprocess.run(["docker", "create", "--network", "host", image, "/bin/true"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(f"docker export {cid} | tar -x -C {dest} --exclude='dev/*'", shell=True, check=True)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


@pytest.mark.testbed
def test_debian_bookworm_against_trixie_is_a_change_of_os_libc_and_python(tmp_path: Path) -> None:
    manifests = []
    for name, image in (("bookworm", BOOKWORM), ("trixie", TRIXIE)):
        root = tmp_path / name
        root.mkdir()
        export_rootfs(image, root)
        proc = run_envcap("snapshot", "--root", str(root), "--json", "--no-store", check=True)
        (tmp_path / f"{name}.json").write_text(proc.stdout)
        manifests.append(Manifest.from_json(proc.stdout))
    d = diff_manifests(*manifests)
    fields = {(c.section, c.path): c for c in d.changes if c.package is None}
    assert (fields[("os", "version_id")].before, fields[("os", "version_id")].after) == ("12", "13")
    assert fields[("os", "version_codename")].after == "trixie"
    libc = fields[("libc", "version")]
    assert libc.before.startswith("2.36") and libc.after.startswith("2.41")
    python = fields[("python", "version")]
    assert python.before.startswith("3.11") and python.after.startswith("3.13")
    assert {c.layer for c in d.changes} == {"software"}
    assert any(c.section == "system" and c.package and c.package.startswith("libc6:") for c in d.changes)
    proc = envcap("diff", str(tmp_path / "bookworm.json"), str(tmp_path / "trixie.json"))
    assert proc.returncode == 1, proc.stderr
    assert "version_id: 12 → 13" in proc.stdout


def test_change_is_a_plain_record() -> None:
    c = Change(layer="software", section="os", path="version_id", kind="changed", before="12", after="13")
    assert json.loads(json.dumps(c.to_dict()))["after"] == "13"


# -- what the command loads ---------------------------------------------------------------

# Runs the console script's click group and writes, at exit, every module it loaded.
_MODULES_AT_EXIT = (
    "import atexit, os, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "from envcap.cli import main\n"
    "main(prog_name='envcap')\n"
)


def modules_loaded_by(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", _MODULES_AT_EXIT, *args], capture_output=True, text=True,
                          env={**os.environ, "MODULES_OUT": str(out), "ENVCAP_HOME": str(tmp_path / "home")},
                          timeout=120)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    return set(out.read_text().split())


def test_diff_of_two_files_loads_no_store_and_no_sqlalchemy(h200: Manifest, tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", h200)
    b = write(tmp_path / "b.json", variant(h200, lambda s: package(s, "system", "libc6").update(version="9")))
    loaded = modules_loaded_by(tmp_path, "diff", a, b)
    assert "envcap.compare.diff" in loaded  # the scan sees what the command used
    # Two files are two manifests: no store is opened, so neither SQLite, nor a store
    # backend, nor SQLAlchemy (which the shared store may use) is loaded; nor the probes.
    for module in ("sqlalchemy", "sqlite3", "envcap.store.embedded", "envcap.store.factory",
                   "envcap.probes", "envcap.capture.collect", "pathlib"):
        assert module not in loaded, f"envcap diff A.json B.json imports {module}"
    # Nor click: two files alone on the command line are run before click is imported.
    assert "click" not in loaded, "envcap diff A.json B.json imports click"
    # Nor inspect, which dataclasses imports (a tenth of the command's time).
    assert "inspect" not in loaded, "envcap diff A.json B.json imports inspect"
    # A stored id does open the store: the same scan sees it.
    Store(tmp_path / "home").add(h200)
    assert {"sqlite3", "click"} <= modules_loaded_by(tmp_path, "diff", h200.id[7:19], a)


_CLICK_GROUP = "from envcap.cli.main import main\nmain(prog_name='envcap')\n"


def test_a_diff_of_two_files_without_click_is_the_click_command(h200: Manifest, tmp_path: Path) -> None:
    """The click-free path prints, says and exits exactly as the click command does."""
    a = write(tmp_path / "a.json", h200)
    b = write(tmp_path / "b.json", variant(h200, lambda s: package(s, "system", "libc6").update(version="9")))
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": "1.2.0", "id": ')
    tampered = tmp_path / "tampered.json"
    tampered.write_text(Path(b).read_text().replace('"9"', '"10"'))
    cases = [("diff", a, b), ("diff", "--json", a, b), ("diff", a, "--json", a), ("diff", a, a),
             ("diff", a, str(broken)), ("diff", str(tampered), a, "--json"), ("diff", a, str(tmp_path / "nope")),
             ("diff", a), ("diff", "-x", a, b)]
    env = {**os.environ, "ENVCAP_HOME": str(tmp_path / "home")}
    for args in cases:
        quick, group = (subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=env,
                                       timeout=120)
                        for entry in (["-m", "envcap"], ["-c", _CLICK_GROUP]))
        assert (quick.returncode, quick.stdout, quick.stderr) == (group.returncode, group.stdout, group.stderr), args
        assert "Traceback" not in quick.stderr
    codes = [subprocess.run([sys.executable, "-m", "envcap", *args], capture_output=True, env=env,
                            timeout=120).returncode for args in cases[:7]]
    assert codes == [1, 1, 0, 0, 2, 2, 2]
