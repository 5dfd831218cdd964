"""Shared pieces of the build tests: manifests, a loopback package index, the test bed."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from envcap.core.manifest import Manifest

TESTBED_ENV = Path(os.environ.get("ENVCAP_TESTBED_DIR", "/var/tmp/envcap-testbed")) / "env"
# Read at import: the autouse ``isolated`` fixture clears every ENVCAP_* variable
# before each test, including those scripts/test.sh exports from the test bed.
_TESTBED_VARS = {k: v for k, v in os.environ.items() if k.startswith("ENVCAP_TEST_")}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

BOOKWORM_SECTIONS: dict[str, Any] = {
    "os": {"id": "debian", "version_id": "12", "version_codename": "bookworm",
           "pretty_name": "Debian GNU/Linux 12 (bookworm)", "name": "Debian GNU/Linux", "id_like": None,
           "debian_version": "12.11"},
    "libc": {"family": "glibc", "version": "2.36"},
    "system": {"manager": "dpkg", "packages": [
        {"name": "jq", "version": "1.6-2.1+deb12u2", "arch": "amd64"},
        {"name": "libc6", "version": "2.36-9+deb12u14", "arch": "amd64"},
        {"name": "libc6", "version": "2.36-9+deb12u14", "arch": "i386"},
        {"name": "python3", "version": "3.11.2-1+b1", "arch": "amd64"},
        {"name": "tzdata", "version": "2025b-0+deb12u1", "arch": "all"},
        {"name": "oldconf", "version": "1:0.9-1", "arch": "amd64", "status": "config-files"},
    ]},
    "python": {
        "version": "3.11.2", "implementation": "CPython", "executable": "/opt/venv/bin/python",
        "prefix": "/opt/venv", "base_prefix": "/usr", "build": {},
        "paths": ["/usr/lib/python3.11", "/opt/venv/lib/python3.11/site-packages"],
        "packages": [
            {"name": "six", "version": "1.17.0", "installer": "pip", "requested": True, "origin": {"kind": "index"}},
            {"name": "torch", "version": "2.5.0+cu124", "installer": "pip", "requested": True,
             "origin": {"kind": "index"}},
            {"name": "idna", "version": "3.10", "installer": "pip", "requested": False, "origin": {"kind": "index"}},
            {"name": "mylib", "version": "2.0.0", "installer": "pip", "requested": True,
             "origin": {"kind": "vcs", "vcs": "git", "url": "https://example.org/mylib.git",
                        "commit": "0123456789abcdef0123456789abcdef01234567", "requested_revision": "main"}},
            {"name": "localwheel", "version": "1.2.3", "installer": "pip", "requested": True,
             "origin": {"kind": "file", "url": "file:///wheels/localwheel-1.2.3-py3-none-any.whl",
                        "sha256": "a" * 64}},
            {"name": "editme", "version": "0.0.1", "installer": "pip", "requested": True,
             "origin": {"kind": "editable", "url": "file:///src/editme",
                        "git": {"commit": "fedcba9876543210fedcba9876543210fedcba98", "branch": "main",
                                "dirty": False}}},
            {"name": "debpkg", "version": "1.0", "installer": None, "requested": False, "origin": {"kind": "unknown"}},
        ],
    },
    "environment": {"variables": {"PATH": "/opt/venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                                  "LD_PRELOAD": "/x.so"}},
}

CONDA_SECTIONS: dict[str, Any] = {
    "os": {"id": "ubuntu", "version_id": "22.04", "version_codename": "jammy", "pretty_name": "Ubuntu 22.04",
           "name": "Ubuntu", "id_like": "debian", "debian_version": "bookworm/sid"},
    "cuda": {"version": "12.4"},
    "conda": {"prefix": "/opt/conda", "packages": [
        {"name": "python", "version": "3.11.9", "build": "hb806964_0_cpython", "channel": "conda-forge",
         "url": "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda",
         "sha256": "b" * 64, "md5": "c" * 32, "subdir": "linux-64"},
        {"name": "pip", "version": "24.0", "build": "pyhd8ed1ab_0", "channel": "conda-forge",
         "url": "https://conda.anaconda.org/conda-forge/noarch/pip-24.0-pyhd8ed1ab_0.conda",
         "sha256": None, "md5": "d" * 32, "subdir": "noarch"},
        {"name": "nourl", "version": "1.0", "build": "0", "channel": None, "url": None, "sha256": None,
         "md5": None, "subdir": "linux-64"},
    ]},
    "python": {
        "version": "3.11.9", "implementation": "CPython", "executable": "/opt/conda/bin/python",
        "prefix": "/opt/conda", "base_prefix": "/opt/conda", "build": {}, "paths": [],
        "packages": [
            {"name": "pip", "version": "24.0", "installer": "conda", "requested": False, "origin": {"kind": "conda"}},
            {"name": "six", "version": "1.17.0", "installer": "pip", "requested": True, "origin": {"kind": "index"}},
        ],
    },
}


def manifest_from(sections: dict[str, Any], *, platform: dict[str, Any] | None = None,
                  observed: dict[str, Any] | None = None) -> Manifest:
    sections = copy.deepcopy(sections)
    platform = copy.deepcopy(platform or {"cpu": {"architecture": "x86_64"}})
    return Manifest.create({**sections, **platform}, {"software": list(sections), "platform": list(platform)},
                           observed=observed or {"time": "2026-11-20T10:00:00+00:00"})


def fake_sha(filename: str) -> str:
    return hashlib.sha256(filename.encode()).hexdigest()


class FakeIndex:
    """A PEP 691/503 simple index on loopback, serving made-up files (or real ones)."""

    def __init__(self, projects: dict[str, list[str]], *, html: bool = False,
                 real_files: dict[str, bytes] | None = None) -> None:
        self.projects = projects
        self.html = html
        self.real_files = real_files or {}
        self.requests: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                parts = [p for p in self.path.split("/") if p]
                if len(parts) == 3 and parts[0] == "files" and parts[2] in index.real_files:
                    return self._send(index.real_files[parts[2]], "application/octet-stream")
                if len(parts) != 2 or parts[0] != "simple" or parts[1] not in index.projects:
                    self.send_error(404)
                    return None
                files = index.projects[parts[1]]
                digests = {f: (hashlib.sha256(index.real_files[f]).hexdigest() if f in index.real_files
                               else fake_sha(f)) for f in files}
                if index.html:
                    body = "".join(f'<a href="/files/{parts[1]}/{f}#sha256={digests[f]}">{f}</a><br>' for f in files)
                    return self._send(f"<html><body>{body}</body></html>".encode(), "text/html")
                data = {"meta": {"api-version": "1.0"}, "name": parts[1],
                        "files": [{"filename": f, "url": f"/files/{parts[1]}/{f}", "hashes": {"sha256": digests[f]}}
                                  for f in files]}
                return self._send(json.dumps(data).encode(), "application/vnd.pypi.simple.v1+json")

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


BOOKWORM_INDEX = {
    "six": ["six-1.17.0-py2.py3-none-any.whl", "six-1.17.0.tar.gz", "six-1.16.0.tar.gz"],
    "idna": ["idna-3.10-py3-none-any.whl", "idna-3.10.tar.gz"],
    "torch": ["torch-2.5.0-cp311-cp311-manylinux1_x86_64.whl"],
}
TORCH_INDEX = {"torch": ["torch-2.5.0+cu124-cp311-cp311-linux_x86_64.whl",
                         "torch-2.5.0+cu124-cp312-cp312-linux_x86_64.whl"]}


@contextmanager
def indexes() -> Iterator[tuple[FakeIndex, FakeIndex]]:
    """PyPI-like and PyTorch-like indexes for the bookworm fixture."""
    with FakeIndex(BOOKWORM_INDEX) as main, FakeIndex(TORCH_INDEX, html=True) as torch:
        yield main, torch


def bed_facts() -> dict[str, str]:
    """The test bed's facts, or skip: the container tests need scripts/testbed.sh up."""
    values = dict(_TESTBED_VARS)
    if "ENVCAP_TEST_BASE_BOOKWORM" not in values and TESTBED_ENV.is_file():
        for line in TESTBED_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values.setdefault(key.strip(), value.strip())
    if "ENVCAP_TEST_BASE_BOOKWORM" not in values:
        pytest.skip("the container test bed is not up (run scripts/testbed.sh up; scripts/test.sh does)")
    try:
        import docker

        docker.from_env(timeout=10).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same: no usable daemon
        pytest.skip(f"the test bed's Docker daemon does not answer ({type(exc).__name__}); "
                    "run scripts/testbed.sh up")
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{values.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/v2/", timeout=5)
    except OSError:
        pytest.skip("the test bed's registry does not answer; run scripts/testbed.sh up")
    return values


class GitServer:
    """Bare git repositories served over git's "dumb" HTTP protocol (static files, after
    ``git update-server-info``) on loopback: a remote that pip can clone
    (``git+http://127.0.0.1:PORT/NAME.git``) and a test can take away (:meth:`stop`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = _quiet_handler(str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, checkout: Path, name: str) -> str:
        """A bare clone of ``checkout`` served as NAME.git; its URL."""
        import subprocess

        bare = self.root / f"{name}.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(checkout), str(bare)], check=True)
        subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
        return f"{self.url}/{name}.git"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> GitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quiet_handler(directory: str) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
