"""End to end on the real test bed: a workstation's run, whose Python no base image has and
whose OS holds a version the mirror no longer serves, rebuilt from its bundle alone.

The "workstation" is a container of the test bed's bookworm base image set up as people
set up theirs: more OS packages than the run needs (git), a security update the base
images' mirror lacks (the test bed's dated archive holds it: libexpat1 at its
bookworm-security version), and a CPython of its own where pyenv puts one
(``$HOME/.pyenv/versions/X.Y.Z``: the test bed's CPython build, the archive its uv download
list names, checked against the list's sha256, unpacked there as ``pyenv install`` leaves
it) with a venv made from it and numpy from PyPI. The base image has no interpreter there. A
seeded numpy run is recorded there with ``envcap run``, exported, imported into an
empty store, and rebuilt with ``envcap rebuild --registry`` into a repository that holds
no image of it: the build pins what the run needs (the libraries its compiled code and
its interpreter link: libexpat1 among them), falls back to the dated archive for the
version the mirror lacks, installs the recorded CPython with uv where it was, and the
run reproduces bit for bit. The same run, when no CPython 3.11 build can be had, is
refused before any build step, naming the interpreter, and nothing is pushed.

Needs scripts/testbed.sh up (skipped otherwise). Slow: one workstation container, one
image build.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rebuild_support import Bed, envcap, report_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build"))

from buildtest_support import HOST_CA, TESTBED_ENV

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

NUMPY = "numpy==2.2.6"
PYENV_ROOT = "/root/.pyenv"
WORKSTATION = f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# The base images' mirror lacks the version the workstation has (else this test shows nothing).
if apt-get install -s -q "$ARCHIVE_PACKAGE" >/dev/null 2>&1; then
    echo "the mirror serves $ARCHIVE_PACKAGE: the test bed's archive is no test" >&2; exit 9
fi
cp /.envcap-test/archive.sources /etc/apt/sources.list.d/security.sources
apt-get update -q
apt-get install -y -q --no-install-recommends git "$ARCHIVE_PACKAGE"
rm /etc/apt/sources.list.d/security.sources
rm -rf /var/lib/apt/lists/*
# CPython where pyenv installs it ($PYENV_ROOT/versions/X.Y.Z), and a venv made from it.
mkdir -p "{PYENV_ROOT}/versions/$PYTHON_VERSION"
tar -xzf /.envcap-test/python.tar.gz -C "{PYENV_ROOT}/versions/$PYTHON_VERSION" --strip-components=1
python={PYENV_ROOT}/versions/$PYTHON_VERSION/bin/python
"$python" -m venv /opt/venv
PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} /opt/venv/bin/pip install -q --no-cache-dir \\
    --index-url https://pypi.org/simple {NUMPY}
"""


def _facts(bed: Bed) -> dict[str, str]:
    values = dict(bed.facts)
    if "ENVCAP_TEST_PYTHON_DOWNLOADS" not in values and TESTBED_ENV.is_file():
        for line in TESTBED_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values.setdefault(key.strip(), value.strip())
    if "ENVCAP_TEST_PYTHON_DOWNLOADS" not in values:
        pytest.skip("the test bed has no dated archive or CPython builds yet: run scripts/testbed.sh up")
    return values


class DatedArchive:
    """The test bed's archive served as a dated one, ``/archive/<stamp>/...``, on a port of
    its own (so that no build of an earlier test run is taken from the layer cache)."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.request

        self.stamps: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.split("/", 3)  # "", "archive", stamp, rest
                if len(parts) < 4 or parts[1] != "archive" or not re.fullmatch(r"\d{8}T\d{6}Z", parts[2]):
                    self.send_error(404)
                    return
                outer.stamps.append(parts[2])
                try:
                    with urllib.request.urlopen(upstream + parts[3], timeout=10) as response:
                        data = response.read()
                except OSError:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/archive/{{stamp}}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Workstation(Bed):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.extra = _facts(self)
        downloads = json.loads(_get(self.extra["ENVCAP_TEST_PYTHON_DOWNLOADS"]))
        [entry] = downloads.values()
        self.python_version = f"{entry['major']}.{entry['minor']}.{entry['patch']}"
        self.python_build = entry
        self.archive_package = self.extra["ENVCAP_TEST_ARCHIVE_PACKAGE"]
        self.archive = DatedArchive(self.extra["ENVCAP_TEST_APT_ARCHIVE"])
        self.settings = {"ENVCAP_APT_ARCHIVE": self.archive.url,
                         "ENVCAP_APT_ARCHIVE_KEY": self.extra["ENVCAP_TEST_APT_ARCHIVE_KEY"],
                         "ENVCAP_PYTHON_DOWNLOADS": self.extra["ENVCAP_TEST_PYTHON_DOWNLOADS"]}

    def close(self) -> None:
        try:
            self.archive.close()
        finally:
            super().close()

    def make_source(self) -> None:
        kit = self.tmp / "kit"
        kit.mkdir()
        # What a pyenv user has: the interpreter build, unpacked under ~/.pyenv/versions.
        import hashlib

        archive = _get_bytes(self.python_build["url"])
        assert hashlib.sha256(archive).hexdigest() == self.python_build["sha256"]
        (kit / "python.tar.gz").write_bytes(archive)
        key = Path(self.extra["ENVCAP_TEST_APT_ARCHIVE_KEY"]).read_text().strip().splitlines()
        (kit / "archive.sources").write_text(
            f"Types: deb\nURIs: {self.extra['ENVCAP_TEST_APT_ARCHIVE']}\nSuites: bookworm\nComponents: main\n"
            "Signed-By:\n" + "".join(f" {line or '.'}\n" for line in key))
        mounts = [self.docker.types.Mount(str(HOST_CA), str(HOST_CA), type="bind", read_only=True),
                  self.docker.types.Mount("/.envcap-test", str(kit), type="bind", read_only=True)]
        environment = {"ARCHIVE_PACKAGE": self.archive_package, "PYTHON_VERSION": self.python_version,
                       "DOWNLOADS": self.extra["ENVCAP_TEST_PYTHON_DOWNLOADS"]}
        self.commit_source(WORKSTATION, mounts, environment)


def _get(url: str) -> str:
    return _get_bytes(url).decode("utf-8")


def _get_bytes(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workstation]:
    b = Workstation(tmp_path_factory.mktemp("workstation-bed"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def carried(bed: Workstation) -> dict[str, Any]:
    """The workstation's run, recorded there and imported into an empty store."""
    bed.make_source()
    run_id = bed.record_run()
    bundle = bed.tmp / f"{run_id}.zip"
    proc = envcap("export", run_id, "-o", str(bundle), env={"ENVCAP_HOME": str(bed.store)})
    assert proc.returncode == 0, proc.stderr
    home = bed.tmp / "store-elsewhere"
    proc = envcap("import", str(bundle), env={"ENVCAP_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    with Store(bed.store) as store:
        original = runs_store.load(store, run_id)
        manifest = store.get(original.manifest)
    return {"run": run_id, "home": home, "original": original, "manifest": manifest}


def rebuild(bed: Workstation, carried: dict[str, Any], *args: str, repository: str,
            env: dict[str, str] | None = None) -> Any:
    return envcap("rebuild", carried["run"], "--registry", repository, "--base", bed.base, "--ca-bundle", str(HOST_CA),
                  *args,
                  env={"ENVCAP_HOME": str(carried["home"]), **bed.settings, **(env or {})}, timeout=1800)


def test_the_workstation_is_what_it_should_be(bed: Workstation, carried: dict[str, Any]) -> None:
    manifest = carried["manifest"]
    python = manifest.sections["python"]
    # pyenv's CPython, not the base image's: the environment is a venv on a base no image has.
    assert python["version"] == bed.python_version
    assert python["base_prefix"] == f"{PYENV_ROOT}/versions/{bed.python_version}"
    assert python["prefix"] == "/opt/venv"
    name, _, version = bed.archive_package.partition("=")
    dpkg = {p["name"]: p["version"] for p in manifest.sections["system"]["packages"]}
    assert dpkg[name] == version and "git" in dpkg
    # The run's snapshot says which OS packages its compiled code and interpreter link.
    native = manifest.observed["native_libs"]
    assert name in native["owners"] and "libc6" in native["owners"] and "git" not in native["owners"]


def test_a_python_that_cannot_be_had_is_refused_before_any_build_step(bed: Workstation,
                                                                      carried: dict[str, Any]) -> None:
    listing = bed.tmp / "no-311.json"
    entry = dict(next(iter(json.loads(_get(bed.extra["ENVCAP_TEST_PYTHON_DOWNLOADS"])).values())))
    entry.update(minor=12, patch=1)
    listing.write_text(json.dumps({"cpython-3.12.1-linux-x86_64-gnu": entry}))
    repository = f"{bed.repository}-refused"
    proc = rebuild(bed, carried, "--json", repository=repository, env={"ENVCAP_PYTHON_DOWNLOADS": str(listing)})
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert f"CPython {bed.python_version}" in proc.stderr and "no CPython 3.11 build is on offer" in proc.stderr
    assert "Traceback" not in proc.stderr and "Step " not in proc.stderr and "base image:" not in proc.stderr
    from envcap.builder.registry import Registry, Repository
    from envcap.builder.pipeline import tag_for

    registry = Registry(Repository.parse(repository))
    assert registry.manifest_digest(tag_for(carried["manifest"].env_id)) is None


def test_the_run_is_rebuilt_from_the_archive_and_uv_and_reproduces(bed: Workstation,
                                                                     carried: dict[str, Any]) -> None:
    original = carried["original"]
    proc = rebuild(bed, carried, "--json", repository=bed.repository)
    report = report_of(proc)
    assert proc.returncode == 0, (report.get("reasons"), proc.stderr[-4000:])
    bed.made.append(report["image"]["reference"])
    assert report["verdict"] == "reproduced" and report["reasons"] == []
    assert report["image"]["how"] == "built"
    metrics = {m["name"]: m for m in report["metrics"]}
    assert set(metrics) == {"loss", "w_norm"}
    assert all(row["how"] == "identical" and row["reproduced"] == original.metrics[name]
               for name, row in metrics.items())
    [model] = report["outputs"]
    assert model["match"]
    err = proc.stderr
    (bed.tmp / "rebuild-stderr.txt").write_text(err)
    (bed.tmp / "rebuild-report.json").write_text(proc.stdout)
    # The mirror lacked the pinned version; the build added the dated archive by itself.
    name, _, version = bed.archive_package.partition("=")
    stamp = "".join(c for c in carried["manifest"].observed["time"][:19] if c.isdigit())
    stamp = f"{stamp[:8]}T{stamp[8:]}Z"
    archive = bed.archive.url.replace("{stamp}", stamp)
    assert "envcap: adding the dated archive " + archive in err, err[-6000:]
    assert f"envcap:   E: Version '{version}' for '{name}' was not found" in err
    assert set(bed.archive.stamps) == {stamp}
    # What was pinned, and what was left to the base image (git: the run does not link it).
    assert "dpkg package(s) not pinned, left to the base image" in err
    pinned = re.search(r"fidelity: partial: (\d+) difference\(s\), (\d+) of them in OS packages the build did not "
                       r"pin \(\d+ of \d+ installed packages \(--pin-os auto: the owners of the libraries", err)
    assert pinned is not None, err[-4000:]
    # The recorded CPython, installed by uv from the site's builds where it was recorded.
    assert f"envcap: CPython {bed.python_version} at {carried['manifest'].sections['python']['base_prefix']}" in err
    assert "substituted" not in err
    # Inside the container: the same interpreter, numpy and libexpat1; what differs is only
    # what the build left to the base image (git and what it pulled in), listed apart.
    env = report["environment"]
    assert env["captured"]
    software = env["software"]
    assert any("git" in line for line in software), software
    assert not [line for line in software if (line.startswith("python") and not line.startswith("python.build."))
                or name in line], software
    # The interpreter is the same build, at the same place: uv rewrites its sysconfig data as
    # it installs it (the flags' whitespace normalised), which pyenv does not. That is all
    # that differs in the python section, and why the env_id is not the recording's.
    python_changes = [c for c in env["changes"] if c["section"] == "python"]
    assert python_changes, "uv rewrote nothing: the test's premise changed"
    assert all(c["path"].startswith("build.") and str(c["before"]).split() == str(c["after"]).split()
               for c in python_changes), python_changes
    # Pushed to the registry the rebuild names, and pulled from it by digest.
    from envcap.builder.registry import Registry, Repository

    digest = report["image"]["reference"].split("@")[1]
    assert Registry(Repository.parse(bed.repository)).manifest_digest(digest) == digest
