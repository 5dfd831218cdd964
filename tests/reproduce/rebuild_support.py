"""Shared pieces of the rebuild tests: the real CLI with ``rebuild``, and the test bed's runs.

:class:`Bed` records real runs with ``envcap run`` INSIDE a container of the test bed's
bookworm base image (git, and a venv with a pinned numpy from PyPI), in a real git
repository mounted at the same path as on the host. envcap itself is mounted
read-only with the few packages its CLI needs beside it (no ``*.dist-info``, so that
nothing of envcap's is captured as part of the environment), on the container's
``PYTHONPATH`` at ``/.envcap/lib``: the place ``envcap rebuild`` mounts envcap's
package for scripts that use its API.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build"))

from buildtest_support import HOST_CA, bed_facts
from conftest import git

NUMPY = "numpy==2.2.6"
VENV_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIB = "/.envcap/lib"
CLI_DEPS = ("click", "rfc8785", "distro", "threadpoolctl")
SOURCE_SCRIPT = f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends git
rm -rf /var/lib/apt/lists/*
python3 -m venv /opt/venv
PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} /opt/venv/bin/pip install -q --no-cache-dir \\
    --index-url https://pypi.org/simple {NUMPY}
"""

TRAIN = '''\
"""A small seeded training run: linear regression by minibatch SGD on a CSV file."""
import os

# A site may choose the BLAS kernel of its jobs where no record sees it: here a variable
# outside the allow-list, which the script turns into OPENBLAS_CORETYPE before numpy loads.
if os.environ.get("SITE_BLAS_KERNEL"):
    os.environ["OPENBLAS_CORETYPE"] = os.environ["SITE_BLAS_KERNEL"]

import numpy as np

import envcap
from helpers import load

EPOCHS = 3

with envcap.start_run(defaults={"epochs": EPOCHS, "lr": 0.05, "batch": 8}) as run:
    seeds = run.seed_everything()                    # envcap run --seed, or the rebuild's
    p = run.params
    X, y = load(p["data"])
    # An environment variable that no record keeps: a run that depends on it cannot
    # be rebuilt, and the rebuild must say so.
    lr = p["lr"] * float(os.environ.get("LR_SCALE", "1"))
    order = np.random.default_rng(seeds.child("shuffle"))
    w = np.zeros(X.shape[1])
    for epoch in range(p["epochs"]):
        idx = order.permutation(len(X))
        for start in range(0, len(X), p["batch"]):
            b = idx[start:start + p["batch"]]
            w -= lr * 2 * X[b].T @ (X[b] @ w - y[b]) / len(b)
        run.log_metric("loss", float(np.mean((X @ w - y) ** 2)), step=epoch)
    run.log_metric("w_norm", float(np.linalg.norm(w)))
    with open("model.bin", "wb") as fh:
        fh.write(w.astype("<f8").tobytes())
    print("trained", p["epochs"], "epochs; loss", float(np.mean((X @ w - y) ** 2)))
'''

HELPERS = '''\
import numpy as np


def load(path):
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1]
'''


def rebuild_argv() -> list[str]:
    """The real ``envcap`` entry point, in a child process."""
    return [sys.executable, "-m", "envcap"]


def envcap(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rebuild_argv(), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)


def write_data(path: Path, rows: int = 96, seed: int = 0) -> None:
    import random

    rnd = random.Random(seed)
    w = [0.5, -1.25, 2.0]
    lines = []
    for _ in range(rows):
        x = [round(rnd.uniform(-1, 1), 6) for _ in w]
        y = sum(a * b for a, b in zip(w, x)) + round(rnd.gauss(0, 0.05), 6)
        lines.append(",".join(repr(v) for v in [*x, round(y, 6)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_project(root: Path) -> Path:
    """A git repository with the training script committed, an uncommitted change to it
    (the diff) and an untracked module it imports."""
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text("model.bin\n__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "training script")
    (root / "train.py").write_text(TRAIN.replace("EPOCHS = 3", "EPOCHS = 5"))  # recorded as the diff
    (root / "helpers.py").write_text(HELPERS)  # recorded as an untracked file
    return root


def lib_dir(dest: Path) -> Path:
    """envcap's package and what its CLI needs, without any *.dist-info."""
    import envcap

    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(envcap.__file__).resolve().parent, dest / "envcap", ignore=ignore)
    for name in CLI_DEPS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        if spec.submodule_search_locations:
            shutil.copytree(Path(spec.origin).parent, dest / name, ignore=ignore)
        else:
            shutil.copy2(spec.origin, dest / Path(spec.origin).name)
    return dest


def commit_image(client: Any, base: str, image: str, script: str, mounts: list[Any],
                 environment: dict[str, str] | None = None) -> None:
    """Run ``script`` in a container of ``base`` (host network) and commit it as ``image``."""
    container = client.containers.run(base, ["/bin/bash", "-c", script], detach=True, network_mode="host",
                                      mounts=mounts, environment=environment)
    try:
        status = container.wait(timeout=900)
        assert status["StatusCode"] == 0, container.logs().decode()[-3000:]
        container.commit(*image.split(":"))
    finally:
        container.remove(force=True)


class Bed:
    """The test bed, and the runs recorded in a container of its base image."""

    def __init__(self, tmp: Path) -> None:
        import docker

        from envcap.engines.docker import DockerEngine

        self.facts = bed_facts()
        self.docker = docker
        self.engine = DockerEngine()
        self.client = self.engine.client
        self.tmp = tmp
        token = uuid.uuid4().hex[:8]
        self.repository = f"{self.facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-rebuild-{token}"
        self.base = self.facts["ENVCAP_TEST_BASE_BOOKWORM"]
        self.source_image = f"localhost/envcap-rebuild-source:{token}"
        self.made: list[str] = []  # image references this bed made, removed by close()
        self.project = make_project(tmp / "proj")
        self.data = tmp / "datasets" / "train.csv"
        write_data(self.data)
        self.lib = lib_dir(tmp / "lib")
        self.store = tmp / "store-original"
        self.record_mounts: list[Path] = []  # more folders the recording container sees, read-only

    def make_source(self) -> None:
        mount = self.docker.types.Mount(str(HOST_CA), str(HOST_CA), type="bind", read_only=True)
        self.commit_source(SOURCE_SCRIPT, [mount])

    def commit_source(self, script: str, mounts: list[Any], environment: dict[str, str] | None = None) -> None:
        """Run ``script`` in the base image and keep the container as the source image."""
        commit_image(self.client, self.base, self.source_image, script, mounts, environment)
        self.made.append(self.source_image)

    def record_run(self, *, env: dict[str, str] | None = None) -> str:
        """``envcap run`` inside a container of the source image; the run's id."""
        mounts = [
            self.docker.types.Mount(str(self.project), str(self.project), type="bind"),
            self.docker.types.Mount(str(self.data.parent), str(self.data.parent), type="bind", read_only=True),
            self.docker.types.Mount(LIB, str(self.lib), type="bind", read_only=True),
            self.docker.types.Mount(str(self.store), str(self.store), type="bind"),
            *[self.docker.types.Mount(str(p), str(p), type="bind", read_only=True) for p in self.record_mounts],
        ]
        self.store.mkdir(exist_ok=True)
        argv = ["/opt/venv/bin/python", "-m", "envcap", "run", "--seed", "7", "--param", f"data={self.data}",
                "--data", str(self.data), "--output", "model.bin", "--", "python", "train.py"]
        environment = {"ENVCAP_HOME": str(self.store), "PYTHONPATH": LIB, "PATH": VENV_PATH, **(env or {})}
        container = self.client.containers.run(self.source_image, argv, detach=True, network_mode="host",
                                               mounts=mounts, environment=environment,
                                               working_dir=str(self.project))
        try:
            status = container.wait(timeout=600)
            err = container.logs(stdout=False, stderr=True).decode()
            assert status["StatusCode"] == 0, err[-3000:]
        finally:
            container.remove(force=True)
        for line in err.splitlines():
            if line.startswith("envcap: run ") and "recorded" not in line:
                return line.split()[2]
        raise AssertionError(f"no run id in:\n{err}")

    def build_image(self, run_id: str) -> Any:
        """The run's image, built once and pushed (by the original machine's store)."""
        from envcap.builder.pipeline import BuildOptions, build
        from envcap.store import runs as runs_store
        from envcap.store.embedded import Store

        with Store(self.store) as store:
            manifest = store.get(runs_store.load(store, run_id).manifest)
            # Every OS package pinned: these tests compare the environments whole (git, which
            # the run does not link, would be left to the base image by --pin-os auto).
            result = build(manifest, BuildOptions(registry=self.repository, base=self.base, ca_bundle=HOST_CA,
                                                  pin_os=("all",)), store=store)
        self.made.append(result.reference)
        self.made.append(f"{self.repository}:{result.record.tag}")
        return result

    def forget_local(self, reference: str) -> None:
        """Remove this bed's names for an image from the daemon (other tests' names stay)."""
        for name in (reference, *[m for m in self.made if m.startswith(reference.split("@")[0] + ":")]):
            try:
                self.client.images.remove(name, force=False, noprune=False)
            except self.docker.errors.APIError:
                pass

    def close(self) -> None:
        try:
            for name in self.made:
                try:
                    self.client.images.remove(name, force=True)
                except self.docker.errors.APIError:
                    pass
        finally:
            self.engine.close()


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise AssertionError(f"not JSON ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
