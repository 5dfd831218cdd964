"""A workstation's environment: a cold ``envcap build`` against a hand-written Dockerfile.

    python benchmarks/bench_osbuild.py

Needs the test bed (scripts/testbed.sh up), with its dated archive and CPython builds.
The source environment is set up as tests/reproduce/test_rebuild_workstation_e2e.py sets
up its workstation: the bookworm base, git, libexpat1 at the version only the dated
archive serves, CPython installed by uv from the test bed's builds, a venv with numpy.
It is captured from inside with envcap's package mounted (as a run's snapshot is, with
the libraries its compiled code links). Then, on the same Docker engine, with no layer
cache for either (one untimed warm-up build of the hand-written file first):

- hand-written: the Dockerfile a person would write for the same installs (the archive's
  sources for the one package the mirror lacks, uv copied in, the venv, numpy), built
  with the docker SDK and pushed to the test registry;
- envcap: ``envcap build`` of the captured manifest with the default ``--pin-os auto``
  (lock, ask uv what it offers, render, build with the archive fallback, fidelity check,
  push, record), with a fresh store.

Target: envcap / hand-written <= 1.10. Not part of CI (.ci/run).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "reproduce"))
sys.path.insert(0, str(REPO / "tests" / "build"))
sys.path.insert(0, str(REPO / "tests"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TESTBED_ENV = Path(os.environ.get("ENVCAP_TESTBED_DIR", "/var/tmp/envcap-testbed")) / "env"

HAND_WRITTEN = """FROM {base}
COPY ca.crt uv archive.sources /tmp/
RUN cp /tmp/archive.sources /etc/apt/sources.list.d/archive.sources && apt-get update \\
    && apt-get install -y --no-install-recommends {package} \\
    && rm /etc/apt/sources.list.d/archive.sources && rm -rf /var/lib/apt/lists/*
RUN UV_PYTHON_DOWNLOADS_JSON_URL={downloads} /tmp/uv python install --no-bin {python}
RUN /root/.local/share/uv/python/cpython-{python}-linux-x86_64-gnu/bin/python3 -m venv /opt/venv
RUN PIP_CONFIG_FILE=/dev/null PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install --no-cache-dir \\
    --index-url https://pypi.org/simple {numpy}
"""
# The capture a run's snapshot makes (with the libraries the compiled code links), by the
# environment's interpreter with envcap's package mounted.
CAPTURE = """
import sys
sys.path.insert(0, "/.envcap-capture")
from envcap.capture.collect import snapshot
sys.stdout.write(snapshot(python="/opt/venv/bin/python", native=True).to_json(indent=None))
"""


def facts() -> dict[str, str]:
    if not TESTBED_ENV.is_file():
        raise SystemExit("the test bed is not up: run scripts/testbed.sh up")
    out = {}
    for line in TESTBED_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    if "ENVCAP_TEST_PYTHON_DOWNLOADS" not in out:
        raise SystemExit("the test bed has no dated archive or CPython builds: run scripts/testbed.sh up")
    return out


def main() -> int:
    import envcap
    from test_rebuild_workstation_e2e import NUMPY, Workstation

    from envcap.builder.pipeline import BuildOptions, build
    from envcap.builder.registry import Repository
    from envcap.core.manifest import Manifest
    from envcap.store.embedded import Store

    bed_facts = facts()
    for key, value in bed_facts.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ENVCAP_HOME"] = str(Path(tmp) / "home")
        bed = Workstation(Path(tmp) / "bed")
        try:
            bed.make_source()
            package = str(Path(envcap.__file__).resolve().parent)
            out = bed.engine.run(bed.source_image, ["/opt/venv/bin/python", "-c", CAPTURE],
                                 [(package, "/.envcap-capture/envcap")])
            source = Manifest.from_json(out, source="the workstation")
            kit = bed.tmp / "kit"
            repository = f"{bed_facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-bench-os-{uuid.uuid4().hex[:8]}"

            def hand_written(tag: str) -> float:
                with tempfile.TemporaryDirectory() as context:
                    folder = Path(context)
                    (folder / "Dockerfile").write_text(HAND_WRITTEN.format(
                        base=bed.base, package=bed.archive_package, downloads=bed.extra["ENVCAP_TEST_PYTHON_DOWNLOADS"],
                        python=bed.python_version, numpy=NUMPY))
                    for name in ("uv", "archive.sources"):
                        (folder / name).write_bytes((kit / name).read_bytes())
                    (folder / "uv").chmod(0o755)
                    (folder / "ca.crt").write_bytes(HOST_CA.read_bytes())
                    start = time.perf_counter()
                    bed.engine.build(folder, "localhost/envcap-bench-os-hand:latest", {}, lambda line: None,
                                     nocache=True)
                    bed.engine.push("localhost/envcap-bench-os-hand:latest", Repository.parse(repository), tag,
                                    lambda line: None)
                    elapsed = time.perf_counter() - start
                bed.engine.remove("localhost/envcap-bench-os-hand:latest")
                return elapsed

            hand_written("warm")
            hand_s = hand_written("hand")
            os.environ.update(bed.settings)
            lines: list[str] = []
            start = time.perf_counter()
            with Store() as store:
                result = build(source, BuildOptions(registry=repository, base=bed.base, ca_bundle=HOST_CA,
                                                    nocache=True), store=store, engine=bed.engine,
                               progress=lines.append)
            envcap_s = time.perf_counter() - start
            pinned = next((line for line in lines if "not pinned" in line), "")
            print("engine: Docker test bed, classic builder, no layer cache")
            print(f"  hand-written Dockerfile, build + push: {hand_s:6.1f} s")
            print(f"  envcap build --pin-os auto (lock, uv, render, build, fidelity, push, record): {envcap_s:6.1f} s  "
                  f"{json.dumps(result.timings)}  fidelity {result.record.status}")
            print(f"  {pinned[:200]}")
            print(f"ratio envcap / hand-written: {envcap_s / hand_s:.2f}  (target <= 1.10)")
            bed.made.append(result.reference)
        finally:
            bed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
