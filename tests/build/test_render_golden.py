"""The same manifest renders the same Dockerfile and lockfiles, byte for byte (golden files).

Set ENVCAP_UPDATE_GOLDEN=1 (read at import, before the test fixtures clear ENVCAP_*)
to rewrite tests/build/golden/ after an intended change, and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from buildtest_support import (
    BOOKWORM_INDEX,
    BOOKWORM_SECTIONS,
    CONDA_SECTIONS,
    TORCH_INDEX,
    fake_sha,
    manifest_from,
)

from envcap.builder.base import choose_base
from envcap.pins.hashes import IndexHashes
from envcap.builder.lock import lock
from envcap.builder.dockerfile import render

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("ENVCAP_UPDATE_GOLDEN") == "1"
BASES = {
    "debian:bookworm": "registry.example/base/debian@sha256:" + "1" * 64,
    "conda/ubuntu:jammy": "registry.example/base/conda@sha256:" + "2" * 64,
}
PYPI = "https://pypi.org/simple"
TORCH = "https://download.pytorch.org/whl/cu124"
CASES = {"bookworm-venv": BOOKWORM_SECTIONS, "conda-jammy": CONDA_SECTIONS}


def _fetch(url: str) -> tuple[int, str, bytes]:
    """Index pages without a network: the fixture's files under fixed index URLs."""
    index = TORCH_INDEX if url.startswith(TORCH) else BOOKWORM_INDEX
    name = url.rstrip("/").rsplit("/", 1)[1]
    if name not in index:
        return 404, "", b""
    files = [{"filename": f, "hashes": {"sha256": fake_sha(f)}} for f in index[name]]
    return 200, "application/vnd.pypi.simple.v1+json", json.dumps({"files": files}).encode()


def _render_all(sections: dict, cache: Path) -> dict[str, str]:
    manifest = manifest_from(sections)
    result = lock(manifest, hashes=IndexHashes(cache, fetch=_fetch), index_url=PYPI, extra_index_urls=[TORCH])
    base = choose_base(manifest, mapping=BASES)
    rendered = render(manifest, result, base.ref, tag="env-golden")
    return {"Dockerfile": rendered.dockerfile, **{f"context/{k}": v for k, v in rendered.files.items()},
            **{f"lock/{k}": v for k, v in result.files.items()},
            "notes.txt": "".join(n + "\n" for n in rendered.notes)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_the_golden_files(case: str, tmp_path: Path) -> None:
    out = _render_all(CASES[case], tmp_path / "cache.sqlite")
    folder = GOLDEN / case
    if UPDATE:
        for name, text in out.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
    expected = {str(p.relative_to(folder)): p.read_text(encoding="utf-8")
                for p in sorted(folder.rglob("*")) if p.is_file()}
    assert sorted(expected) == sorted(out)
    for name in out:
        assert out[name] == expected[name], f"{case}/{name} differs from its golden file"


def test_two_renderings_are_byte_identical(tmp_path: Path) -> None:
    # A fresh cache each time: identical output whether the hashes came from the index or the cache.
    a = _render_all(BOOKWORM_SECTIONS, tmp_path / "a.sqlite")
    b = _render_all(BOOKWORM_SECTIONS, tmp_path / "b.sqlite")
    c = _render_all(BOOKWORM_SECTIONS, tmp_path / "a.sqlite")
    assert a == b == c


def test_dockerfile_shape(tmp_path: Path) -> None:
    text = _render_all(BOOKWORM_SECTIONS, tmp_path / "c.sqlite")["Dockerfile"]
    instructions = [line.split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert instructions[0] == "FROM" and text.count("FROM ") == 1
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    assert runs and all(line.startswith('RUN ["/bin/bash", "/usr/share/envcap/steps/') for line in runs)
    # Slow, stable layers first: OS packages, then the venv, then pip.
    order = [line.split("/steps/")[1].split(".sh")[0] for line in runs]
    assert order == ["apt", "venv", "pip"]
    # Only allow-listed variables become ENV; LD_PRELOAD does not.
    assert 'ENV PATH="/opt/venv/bin:/usr/bin:/bin"' in text and "LD_PRELOAD" not in text
    assert f'dev.envcap.env-id="{manifest_from(BOOKWORM_SECTIONS).env_id}"' in text
    assert 'org.opencontainers.image.base.digest="sha256:' in text


REPO = Path(__file__).resolve().parents[2]
TEMPLATES = ["Dockerfile.base", "images/base-map.toml",
             *sorted(str(p.relative_to(REPO)) for p in (REPO / "images" / "steps").glob("*.sh"))]


def test_templates_ship_inside_the_package(tmp_path: Path) -> None:
    # images/ and Dockerfile.base live at the top of the repository only; a wheel built
    # from it carries them in envcap/builder/, where an installed envcap finds them.
    import shutil
    import subprocess
    import sys
    import zipfile

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "Dockerfile.base"):
        shutil.copy(REPO / name, tree / name)
    for name in ("src", "images"):
        shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(tree)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("envcap-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for name in TEMPLATES:
            assert zf.read(f"envcap/builder/{name}") == (REPO / name).read_bytes(), name
        zf.extractall(tmp_path / "installed")
    # Installed, the package finds its own copies (not the checkout's).
    found = subprocess.run([sys.executable, "-c", "from envcap.builder.base import images_dir; print(images_dir())"],
                           capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "installed"), "PYTHONNOUSERSITE": "1"})
    assert found.stdout.strip() == str(tmp_path / "installed" / "envcap" / "builder" / "images")


def test_a_checkout_finds_the_templates_at_its_top() -> None:
    from envcap.builder.base import images_dir

    assert not (REPO / "src" / "envcap" / "builder" / "images").exists()
    assert images_dir() == REPO / "images"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_golden_sections_round_trip_through_their_records(case: str) -> None:
    # Every origin kind pip records (index, vcs, file, editable with its git state,
    # unknown), dpkg states other than installed, conda records with null fields.
    from envcap.core.canonical import canonical_bytes
    from envcap.ecosystems import ECOSYSTEMS, record_type

    sections = CASES[case]
    present = [eco for eco in ECOSYSTEMS if eco in sections]
    assert len(present) >= 2
    for eco in present:
        record = record_type(eco).from_dict(sections[eco])
        assert canonical_bytes(record.to_dict()) == canonical_bytes(sections[eco]), eco
