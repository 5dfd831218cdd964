"""The revalidation and bisect test bed: eight local wheels at two versions, runs recorded
with ``envcap run`` inside a container of the test bed's bookworm image, the env's image
built by ``envcap build``, and a database of their own on the test bed's PostgreSQL.

The wheels are written here as the wheel format defines them (a zip with the package,
``METADATA``, ``WHEEL`` and a ``RECORD`` of hashes): pure-Python packages ``rv_a`` …
``rv_h`` whose ``VALUE`` is 1.0 at both versions, except ``rv_c`` 2.0 (``VALUE = 2.0``),
and ``rv_e`` 2.0 needs ``rv_d>=2.0``. The training script logs the ``VALUE`` of the
package its ``pkg`` parameter names, after ``hold`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reproduce"))
sys.path.insert(0, str(HERE.parent / "build"))

from buildtest_support import HOST_CA, bed_facts  # noqa: E402
from conftest import git  # noqa: E402
from rebuild_support import LIB, commit_image, lib_dir  # noqa: E402

PACKAGES = [f"rv_{c}" for c in "abcdefgh"]
VENV_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

TRAIN = '''\
"""Scores the package the run names: what a dependency upgrade can change."""
import importlib
import time

import envcap

PACKAGES = ["rv_a", "rv_b", "rv_c", "rv_d", "rv_e", "rv_f", "rv_g", "rv_h"]

with envcap.start_run(defaults={"pkg": "rv_a", "hold": 3}) as run:
    modules = {name: importlib.import_module(name) for name in PACKAGES}
    time.sleep(run.params["hold"])
    run.log_metric("score", float(modules[run.params["pkg"]].VALUE))
    print("scored", run.params["pkg"], modules[run.params["pkg"]].VERSION)
'''


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(folder: Path, name: str, version: str, value: float, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel, byte for byte the same each time."""
    dist = f"{name}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\nVERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": meta.encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: envcap-tests\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={_b64(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def write_wheels(root: Path) -> tuple[Path, Path]:
    good, bad = root / "good", root / "bad"
    for name in PACKAGES:
        write_wheel(good, name, "1.0", 1.0)
        requires = ("rv_d>=2.0",) if name == "rv_e" else ()
        write_wheel(bad, name, "2.0", 2.0 if name == "rv_c" else 1.0, requires)
    return good, bad


def make_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "scoring script")
    return root


def envcap(*args: str, env: dict[str, str] | None = None, timeout: float = 900,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)


class RevalBed:
    """Runs recorded in a container, pushed to a PostgreSQL database of this bed's own."""

    def __init__(self, tmp: Path, pg_url: str) -> None:
        import docker

        self.facts = bed_facts()
        self.docker = docker
        self.client = docker.from_env()
        self.tmp = tmp
        self.pg_url = pg_url
        token = uuid.uuid4().hex[:8]
        self.repository = f"{self.facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-reval-{token}"
        self.base = self.facts["ENVCAP_TEST_BASE_BOOKWORM"]
        self.source_image = f"localhost/envcap-reval-source:{token}"
        self.made: list[str] = []
        self.good_wheels, self.bad_wheels = write_wheels(tmp / "wheels")
        self.project = make_project(tmp / "proj")
        self.lib = lib_dir(tmp / "lib")
        self.original = tmp / "store-original"
        self.original.mkdir()
        self.home = tmp / "home"  # ENVCAP_HOME of every command (the shared store's working files)
        self.home.mkdir()
        self.env = {"ENVCAP_STORE": pg_url, "ENVCAP_HOME": str(self.home)}

    def _container(self, image: str, script: str, *, mounts: list[Any], env: dict[str, str] | None = None,
                   workdir: str | None = None) -> str:
        container = self.client.containers.run(image, ["/bin/bash", "-c", script], detach=True,
                                               network_mode="host", mounts=mounts, environment=env or {},
                                               working_dir=workdir)
        try:
            status = container.wait(timeout=900)
            logs = container.logs().decode()
            assert status["StatusCode"] == 0, logs[-4000:]
            return str(logs)
        finally:
            container.remove(force=True)

    def _mount(self, path: Path, target: str | None = None, read_only: bool = False) -> Any:
        return self.docker.types.Mount(target or str(path), str(path), type="bind", read_only=read_only)

    def record(self) -> dict[str, str]:
        """The source image (git, a venv with the good wheels), then in it: runs of rv_a, rv_b
        and rv_c; then the venv upgraded to the bad wheels and rv_c run once more (its env is
        the bad environment). Their ids, by name."""
        setup = ("set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
                 "apt-get install -y -q --no-install-recommends git >/dev/null; rm -rf /var/lib/apt/lists/*; "
                 "python3 -m venv /opt/venv; "
                 f"PIP_CONFIG_FILE=/dev/null /opt/venv/bin/pip install -q --no-index --no-deps {self.good_wheels}/*.whl")
        commit_image(self.client, self.base, self.source_image, setup,
                     [self._mount(self.good_wheels, read_only=True)])
        self.made.append(self.source_image)
        run = "/opt/venv/bin/python -m envcap run"
        script = (f"set -e; for p in rv_a rv_b rv_c; do {run} --param pkg=$p -- python train.py; done; "
                  # By file, as the good ones: pip records each wheel's file and hash (its origin).
                  f"PIP_CONFIG_FILE=/dev/null /opt/venv/bin/pip install -q --no-index {self.bad_wheels}/*.whl; "
                  f"{run} --param pkg=rv_c -- python train.py")
        logs = self._container(self.source_image, script, workdir=str(self.project),
                               mounts=[self._mount(self.project), self._mount(self.good_wheels, read_only=True),
                                       self._mount(self.bad_wheels, read_only=True),
                                       self._mount(self.lib, LIB, read_only=True), self._mount(self.original)],
                               env={"ENVCAP_HOME": str(self.original), "PYTHONPATH": LIB, "PATH": VENV_PATH})
        ids = [line.split()[2] for line in logs.splitlines()
               if line.startswith("envcap: run ") and "recorded" not in line]
        assert len(ids) == 4, logs[-3000:]
        return dict(zip(("a", "b", "c", "c_bad"), ids))

    def push_and_build(self, run_id: str) -> str:
        """Every record into the shared store; the good env's image built and pushed; its reference."""
        proc = envcap("push", env={"ENVCAP_HOME": str(self.original), "ENVCAP_STORE": self.pg_url})
        assert proc.returncode == 0, proc.stderr
        from envcap.builder.pipeline import BuildOptions, build
        from envcap.store import runs as runs_store
        from envcap.store.postgres import PostgresStore

        with PostgresStore(self.pg_url) as store:
            manifest = store.get(runs_store.load(store, run_id).manifest)
            result = build(manifest, BuildOptions(registry=self.repository, base=self.base, ca_bundle=HOST_CA),
                           store=store)
        self.made += [result.reference, f"{self.repository}:{result.record.tag}"]
        return result.reference

    def containers_of(self, run_id: str) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": f"dev.envcap.rebuild-of={run_id}"}))

    def close(self) -> None:
        for name in self.made:
            try:
                self.client.images.remove(name, force=True)
            except self.docker.errors.APIError:
                pass
        self.client.close()
