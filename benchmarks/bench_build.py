"""Build figures: a cold envcap build against a hand-written Dockerfile, a build of an env
already in the registry, and rendering a 1,000-package manifest with hashes cached.

    python benchmarks/bench_build.py [--render-only] [--rounds 20]

The first two need the test bed (scripts/testbed.sh up): the source environment is made
as in tests/build/test_build_e2e.py (bookworm base, apt install jq, pip install two
packages into a venv) and captured from outside. Then, on the same Docker engine, with
no layer cache for either (one untimed warm-up build, then one timed run each):

- hand-written: a Dockerfile a person would write for the same installs, built with the
  docker SDK and pushed to the test registry;
- envcap: ``envcap build`` of the captured manifest (lock, render, build, fidelity check,
  push, record), with a fresh store and hash cache.

Targets: envcap / hand-written <= 1.10; a build of an env already pushed <= 2 s (the
command as a user runs it, interpreter start included); render <= 50 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TESTBED_ENV = Path(os.environ.get("ENVCAP_TESTBED_DIR", "/var/tmp/envcap-testbed")) / "env"

SOURCE_SCRIPT = f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends jq
rm -rf /var/lib/apt/lists/*
python3 -m venv /opt/venv
PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} /opt/venv/bin/pip install -q --no-cache-dir \\
    --index-url https://pypi.org/simple six==1.17.0 packaging==24.2
"""
HAND_WRITTEN = """FROM {base}
COPY ca.crt /tmp/ca.crt
RUN apt-get update && apt-get install -y --no-install-recommends jq={jq} && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
RUN PIP_CONFIG_FILE=/dev/null PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install --no-cache-dir \\
    --index-url https://pypi.org/simple six==1.17.0 packaging==24.2
"""
CLI = "import sys; from envcap.cli import main; main(sys.argv[1:], prog_name='envcap')"


def testbed() -> dict[str, str]:
    if not TESTBED_ENV.is_file():
        raise SystemExit("the test bed is not up: run scripts/testbed.sh up")
    return dict(line.split("=", 1) for line in TESTBED_ENV.read_text().splitlines() if "=" in line)


def bench_render(rounds: int) -> float:
    from envcap.pins.hashes import IndexHashes
    from envcap.builder.lock import lock
    from envcap.builder.dockerfile import render
    from envcap.core.manifest import Manifest

    def fetch(url: str) -> tuple[int, str, bytes]:
        name = url.rstrip("/").rsplit("/", 1)[1]
        files = [f"{name.replace('-', '_')}-1.0.{i}-py3-none-any.whl" for i in range(3)] + [f"{name}-1.0.0.tar.gz"]
        body = {"files": [{"filename": f, "hashes": {"sha256": hashlib.sha256(f.encode()).hexdigest()}}
                          for f in files]}
        return 200, "application/vnd.pypi.simple.v1+json", json.dumps(body).encode()

    packages = [{"name": f"pkg-{i:04d}", "version": "1.0.0", "installer": "pip", "requested": i % 7 == 0,
                 "origin": {"kind": "index"}} for i in range(1000)]
    debs = [{"name": f"lib{i:04d}", "version": f"1.{i}-1+deb12u1", "arch": "amd64"} for i in range(300)]
    sections = {
        "os": {"id": "debian", "version_id": "12", "version_codename": "bookworm"},
        "system": {"manager": "dpkg", "packages": debs},
        "python": {"version": "3.11.2", "implementation": "CPython", "executable": "/opt/venv/bin/python",
                   "prefix": "/opt/venv", "base_prefix": "/usr", "build": {}, "paths": [], "packages": packages},
        "environment": {"variables": {"PATH": "/opt/venv/bin:/usr/bin:/bin"}},
    }
    manifest = Manifest.create(sections, {"software": list(sections)})
    base = "127.0.0.1:5000/envcap-base/debian@sha256:" + "0" * 64
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "hashes.sqlite"
        warm = IndexHashes(cache, fetch=fetch)
        lock(manifest, hashes=warm)  # fills the cache
        warm.close()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            hashes = IndexHashes(cache, offline=True)
            result = lock(manifest, hashes=hashes)
            render(manifest, result, base, tag="env-bench")
            hashes.close()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_source(engine, base: str):  # type: ignore[no-untyped-def]
    import docker

    from envcap.builder import fidelity
    from envcap.core.manifest import Manifest

    mount = docker.types.Mount(str(HOST_CA), str(HOST_CA), type="bind", read_only=True)
    container = engine.client.containers.run(base, ["/bin/bash", "-c", SOURCE_SCRIPT], detach=True,
                                             network_mode="host", mounts=[mount])
    image = f"localhost/envcap-bench-source:{uuid.uuid4().hex[:8]}"
    try:
        if container.wait(timeout=600)["StatusCode"] != 0:
            raise SystemExit(container.logs().decode()[-2000:])
        container.commit(*image.split(":"))
    finally:
        container.remove(force=True)
    hint = Manifest.create({"python": {"executable": "/opt/venv/bin/python", "base_prefix": "/usr"}},
                           {"software": ["python"]})
    try:
        return fidelity.capture_image(engine, image, hint)
    finally:
        engine.client.images.remove(image, force=True)


def hand_written(engine, base: str, jq: str, repository: str) -> float:  # type: ignore[no-untyped-def]
    from envcap.builder.registry import Repository

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(HAND_WRITTEN.format(base=base, jq=jq))
        (Path(tmp) / "ca.crt").write_bytes(HOST_CA.read_bytes())
        start = time.perf_counter()
        engine.build(Path(tmp), "localhost/envcap-bench-hand:latest", {}, lambda line: None, nocache=True)
        engine.push("localhost/envcap-bench-hand:latest", Repository.parse(repository), "hand", lambda line: None)
        elapsed = time.perf_counter() - start
    engine.remove("localhost/envcap-bench-hand:latest")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render-only", action="store_true", help="only the rendering figure (no test bed)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    render_s = bench_render(args.rounds)
    print(f"render Dockerfile + lockfiles, 1,000 pip + 300 dpkg packages, hashes cached: "
          f"median {render_s * 1000:.1f} ms over {args.rounds}  (target <= 50 ms)")
    if args.render_only:
        return 0

    facts = testbed()
    base = facts["ENVCAP_TEST_BASE_BOOKWORM"]
    repository = f"{facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ENVCAP_HOME"] = str(Path(tmp) / "home")
        from envcap.engines.docker import DockerEngine
        from envcap.builder.pipeline import BuildOptions, build
        from envcap.store.embedded import Store

        engine = DockerEngine()
        source = make_source(engine, base)
        jq = next(p["version"] for p in source.sections["system"]["packages"] if p["name"] == "jq")
        # One untimed build first, so that neither timed one pays for a cold mirror or proxy.
        hand_written(engine, base, jq, repository + "-warm")
        hand_s = hand_written(engine, base, jq, repository + "-hand")
        start = time.perf_counter()
        with Store() as store:
            result = build(source, BuildOptions(registry=repository, base=base, ca_bundle=HOST_CA, nocache=True),
                           store=store, engine=engine)
        envcap_s = time.perf_counter() - start
        engine.close()
        print(f"engine: Docker {facts.get('ENVCAP_TEST_REGISTRY')} test bed, classic builder, no layer cache")
        print(f"  hand-written Dockerfile, build + push: {hand_s:6.1f} s")
        print(f"  envcap build (lock, render, build, fidelity, push, record): {envcap_s:6.1f} s  "
              f"{json.dumps(result.timings)}  fidelity {result.record.status}")
        print(f"ratio envcap / hand-written: {envcap_s / hand_s:.2f}  (target <= 1.10)")

        manifest_file = Path(tmp) / "m.json"
        manifest_file.write_text(source.to_json())
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        times = []
        for _ in range(5):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CLI, "build", str(manifest_file), "--registry", repository],
                                  capture_output=True, text=True, env=env, timeout=60, check=False)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0 or "already in the registry" not in proc.stderr:
                raise SystemExit(f"rebuild did not find the image: {proc.stderr}")
        print(f"envcap build of an env already in the registry: median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s over 5  (target <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
