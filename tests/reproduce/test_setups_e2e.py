"""End to end on the real test bed: the set-ups researchers use (issue 21 items 1, 2 and 4).

One environment, recorded inside a container of the test bed's bookworm base image as a
user makes it: a venv with numpy from the index, a wheel installed from a local file, a
package installed from a local git repository (``pip install git+file:///...``), one from
the lab's git server (``pip install git+http://...``, a loopback server of git's dumb HTTP
protocol), a sibling library installed editable (``pip install -e ../siblinglib``), and the
research repository itself installed editable (``pip install -e .``). Its training script
imports all three and logs a loss (exact), a timing declared not to reproduce, and an
undeclared timing. The run is exported (its bundle carries the wheel and git bundles of the
two repositories and of the sibling checkout), the wheel, the repository and the sibling are
then removed from this machine and the git server stopped, the bundle is imported
into an empty store, and the run rebuilt from a fresh clone: the image is built once from
what the bundle carried (nothing of this env is in the registry before), the package is
installed editable in the container, and the run reproduces bit for bit, with the same
env_id. Where nothing carries what is gone, ``lock``, ``build``, ``rebuild``, ``export`` and
``push`` refuse it, naming the package, before any build step.

Needs scripts/testbed.sh up (skipped otherwise). Slow: one source container, one build.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git_first_commit
from rebuild_support import LIB, NUMPY, VENV_PATH, Bed, envcap, report_of

from buildtest_support import HOST_CA, GitServer  # importable once rebuild_support is (it adds tests/build)

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

TRAIN = '''\
"""Seeded SGD on a CSV file, with the lab's own package, a local wheel and a git dependency."""
import time

import numpy as np

import envcap
from carrywheel import scale
from gitdep import center
from remotedep import shift
from siblinglib import offset
from research.data import load

start = time.perf_counter()
with envcap.start_run(defaults={"epochs": 3, "lr": 0.05, "batch": 8}) as run:
    seeds = run.seed_everything()
    p = run.params
    X, y = load(p["data"])
    X = offset(shift(center(X)))
    order = np.random.default_rng(seeds.child("shuffle"))
    w = np.zeros(X.shape[1])
    for epoch in range(p["epochs"]):
        t0 = time.perf_counter()
        idx = order.permutation(len(X))
        for s in range(0, len(X), p["batch"]):
            b = idx[s:s + p["batch"]]
            w -= scale(p["lr"]) * X[b].T @ (X[b] @ w - y[b]) / len(b)
        run.log_metric("loss", float(np.mean((X @ w - y) ** 2)), step=epoch)
        run.log_metric("epoch_time_s", time.perf_counter() - t0, step=epoch)
    run.log_metric("train_time_s", time.perf_counter() - start, reproducible=False)
    with open("model.bin", "wb") as fh:
        fh.write(w.astype("<f8").tobytes())
    print("trained; loss", float(np.mean((X @ w - y) ** 2)))
'''

RESEARCH_DATA = '''\
import numpy as np


def load(path):
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1]
'''

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"

[tool.setuptools]
{what}
'''


def make_wheel(folder: Path) -> Path:
    """A pure-Python wheel, as a lab builds one and keeps it on a file share."""
    folder.mkdir(parents=True)
    path = folder / "carrywheel-0.1-py3-none-any.whl"
    files = {
        "carrywheel.py": b"def scale(x):\n    return 2 * x\n",
        "carrywheel-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: carrywheel\nVersion: 0.1\n",
        "carrywheel-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                          b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={h},{len(data)}")
    record.append("carrywheel-0.1.dist-info/RECORD,,")
    files["carrywheel-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return path


def make_git_dependency(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name="gitdep", version="0.3",
                                                          what='py-modules = ["gitdep"]'))
    (root / "gitdep.py").write_text("def center(x):\n    return x - x.mean(axis=0)\n")
    git_first_commit(root, "gitdep 0.3")
    return root


def make_sibling(root: Path) -> Path:
    """A library of the lab's beside its research repository, installed editable
    (``pip install -e ../siblinglib``) with an uncommitted change: not the run's own code,
    so carried with the run, its change with the run's record."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name="siblinglib", version="0.2",
                                                          what='py-modules = ["siblinglib"]'))
    (root / "siblinglib.py").write_text("def offset(x):\n    return x + 1.0\n")
    (root / ".gitignore").write_text("*.egg-info/\nbuild/\n__pycache__/\n")
    git_first_commit(root, "siblinglib 0.2")
    # An uncommitted change the result depends on: the run keeps it, the build applies it.
    (root / "siblinglib.py").write_text("def offset(x):\n    return x + 0.0\n")
    return root


def make_remote_dependency(root: Path, server: GitServer) -> str:
    """A package on the lab's git server (pip install git+http://...): its URL."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name="remotedep", version="1.4",
                                                          what='py-modules = ["remotedep"]'))
    (root / "remotedep.py").write_text("def shift(x):\n    return x * 1.0\n")
    git_first_commit(root, "remotedep 1.4")
    return server.publish(root, "remotedep")


def make_research_project(root: Path) -> None:
    """The lab's repository: its package, installed editable, and the training script."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name="research-lab", version="0.1",
                                                          what='packages = ["research"]'))
    (root / "research").mkdir()
    (root / "research" / "__init__.py").write_text("")
    (root / "research" / "data.py").write_text(RESEARCH_DATA.replace("[:, :-1]", "[:, :-1] * 1.0"))
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text("model.bin\n__pycache__/\n*.egg-info/\nbuild/\n")
    git_first_commit(root, "the lab's package and training script")
    # An uncommitted change to the package itself: the rebuild must install it with the diff.
    (root / "research" / "data.py").write_text(RESEARCH_DATA)


class SetupsBed(Bed):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        shutil.rmtree(self.project)
        make_research_project(self.project)
        self.wheel = make_wheel(tmp / "share" / "wheels")
        self.gitdep = make_git_dependency(tmp / "srv" / "git" / "gitdep")
        self.sibling = make_sibling(tmp / "lab" / "siblinglib")
        self.server = GitServer(tmp / "git-server")
        self.remote = make_remote_dependency(tmp / "remote-src" / "remotedep", self.server)
        # The wheel still sits on the lab's share when the run is recorded (pip 23 records
        # no hash for a local file: the snapshot hashes it).
        self.record_mounts = [self.wheel.parent, self.sibling]

    def close(self) -> None:
        self.server.stop()
        super().close()

    def make_source(self) -> None:
        script = f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends git
rm -rf /var/lib/apt/lists/*
python3 -m venv /opt/venv
export PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
/opt/venv/bin/pip install -q --index-url https://pypi.org/simple {NUMPY}
/opt/venv/bin/pip install -q {self.wheel}
/opt/venv/bin/pip install -q git+file://{self.gitdep}
/opt/venv/bin/pip install -q git+{self.remote}
/opt/venv/bin/pip install -q -e {self.sibling}
cd {self.project} && /opt/venv/bin/pip install -q -e .
"""
        mounts = [self.docker.types.Mount(str(p), str(p), type="bind", read_only=ro)
                  for p, ro in ((HOST_CA, True), (self.wheel.parent, True), (self.gitdep, True),
                                (self.project, False), (self.sibling, False))]
        self.commit_source(script, mounts)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SetupsBed]:
    b = SetupsBed(tmp_path_factory.mktemp("setups-bed"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def carried(bed: SetupsBed) -> dict[str, Any]:
    """The run recorded in its container, exported, its wheel and repository then gone from
    this machine, imported into an empty store, rebuilt (the one build) from a fresh clone."""
    bed.make_source()
    run_id = bed.record_run()
    original = {"ENVCAP_HOME": str(bed.store)}
    tiny = envcap("export", run_id, "-o", str(bed.tmp / "tiny.zip"), "--carry-limit", "1K", env=original)
    bundle = bed.tmp / "run.zip"
    proc = envcap("export", run_id, "-o", str(bundle), env=original)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(bundle) as zf:
        members = sorted(n for n in zf.namelist() if n.startswith(("deps/", "code/editables/")))
    # The wheel and the git repository are gone from this machine (a share unmounted, a
    # server retired): only the bundle has them now.
    gone = bed.tmp / "gone"
    gone.mkdir()
    bed.wheel.parent.rename(gone / "wheels")
    bed.gitdep.rename(gone / "gitdep")
    # So are the lab's git server (a private remote, retired) and the sibling checkout.
    bed.server.stop()
    bed.sibling.rename(gone / "siblinglib")
    home = bed.tmp / "store-elsewhere"
    proc = envcap("import", str(bundle), env={"ENVCAP_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    fresh = bed.tmp / "fresh-clone"
    subprocess.run(["git", "clone", "-q", str(bed.project), str(fresh)], check=True)
    proc = envcap("rebuild", run_id, "--registry", bed.repository, "--base", bed.base, "--ca-bundle", str(HOST_CA),
                  "--repo", str(fresh),
                  "--ignore", "epoch_time_s", "--json", env={"ENVCAP_HOME": str(home)}, timeout=1800)
    report = report_of(proc)
    if report.get("image", {}).get("reference"):
        bed.made.append(report["image"]["reference"])
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    with Store(bed.store) as store:
        record = runs_store.load(store, run_id)
    return {"run": run_id, "home": home, "fresh": fresh, "tiny": tiny, "members": members, "proc": proc,
            "report": report, "original": record}


def _rebuild(bed: SetupsBed, carried: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return envcap("rebuild", carried["run"], "--registry", bed.repository, "--ca-bundle", str(HOST_CA),
                  "--repo", str(carried["fresh"]), *args, env={"ENVCAP_HOME": str(carried["home"])})


def test_item2_the_bundle_carries_what_no_index_serves_and_the_build_installs_it(carried: dict[str, Any]) -> None:
    # The sibling checkout installed editable and the remote repository are carried too (the
    # run's own repository is not: its rebuild installs it from the run's code).
    # The sibling's uncommitted change travels with the run's record.
    assert carried["members"] == ["code/editables/siblinglib.patch",
                                  f"deps/editable/siblinglib-{_gitdep_commit(carried, 'siblinglib')}.bundle",
                                  f"deps/git/gitdep-{_gitdep_commit(carried)}.bundle",
                                  f"deps/git/remotedep-{_gitdep_commit(carried, 'remotedep')}.bundle",
                                  "deps/wheels/carrywheel-0.1-py3-none-any.whl"]
    report, proc = carried["report"], carried["proc"]
    assert proc.returncode == 0, (report.get("reasons"), report.get("caveats"), proc.stderr[-4000:])
    assert report["image"]["how"] == "built", report["image"]
    # Installed as the run's pip installed them: the same origins, nothing listed as different.
    assert report["environment"]["same"] and report["environment"]["software"] == []
    assert "Traceback" not in proc.stderr
    # The limit is the user's: too small, the export is refused and names the package.
    tiny = carried["tiny"]
    assert tiny.returncode == 2 and "Traceback" not in tiny.stderr
    assert "python package gitdep 0.3" in tiny.stderr and "--carry-limit" in tiny.stderr


def _gitdep_commit(carried: dict[str, Any], name: str = "gitdep") -> str:
    from envcap.store.embedded import Store

    with Store(carried["home"]) as store:
        manifest = store.get(carried["original"].manifest)
    [pkg] = [p for p in manifest.sections["python"]["packages"] if p["name"] == name]
    if pkg["origin"]["kind"] == "editable":
        assert pkg["origin"]["git"]["dirty"] is True
        return str(pkg["origin"]["git"]["commit"])
    assert pkg["origin"]["kind"] == "vcs"
    return str(pkg["origin"]["commit"])


def test_item1_the_editable_research_package_is_installed_from_the_workspace(carried: dict[str, Any]) -> None:
    report = carried["report"]
    assert report["verdict"] == "reproduced", (report.get("reasons"), report.get("caveats"))
    env = report["environment"]
    assert env["captured"] and env["same"] and env["rebuild"] == carried["original"].env_id, env.get("software")
    assert report["code"]["diff_applied"]
    [model] = report["outputs"]
    assert model["match"] and model["reproduced"] == carried["original"].outputs[0]["fingerprint"]
    assert "installing research-lab 0.1 editable" in carried["proc"].stderr
    # Installed with the build backend envcap resolved and mounted: no index, no isolated build.
    assert "installed editable with the build backend envcap mounted (no index)" in carried["proc"].stderr
    assert "editable_install" in report["timings"]


def test_item1_a_caller_who_is_not_root_installs_the_package_into_the_images_root_owned_venv(
        bed: SetupsBed, carried: dict[str, Any]) -> None:
    """``envcap rebuild`` run by a user who is not root (uid 4242, in the docker group; Debian's
    own python3 with the shared venv's packages, for the venv's interpreter lies under /root),
    against the warm image: the package goes into the image's root-owned venv, the run runs
    as that user, and what it wrote in the workspace is theirs."""
    import os
    import tempfile

    if os.getuid() != 0 or shutil.which("setpriv") is None or not Path("/usr/bin/python3").is_file():
        pytest.skip("needs root (to become another user), setpriv and /usr/bin/python3")
    site = Path(sys.executable).parent  # the shared venv's bin (uv), not the interpreter it links to
    venv_site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    uid = 4242
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    root = Path(tempfile.mkdtemp(prefix="envcap-nonroot-"))
    try:
        root.chmod(0o755)
        shutil.copytree(carried["home"], root / "home", symlinks=True)
        shutil.rmtree(root / "home" / "rebuilds", ignore_errors=True)
        shutil.copytree(carried["fresh"], root / "clone", symlinks=True)
        shutil.copy2(bed.data, root / "train.csv")
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames, "."]:
                os.lchown(os.path.join(dirpath, name), uid, uid)
        src = Path(__file__).resolve().parents[2] / "src"
        env = {"HOME": str(root), "ENVCAP_HOME": str(root / "home"), "PYTHONPATH": f"{src}:{venv_site}",
               "PATH": f"{site}:/usr/bin:/bin", "LANG": "C.UTF-8"}
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={docker_gid}", "/usr/bin/python3", "-m",
                "envcap", "rebuild", carried["run"], "--registry", bed.repository, "--ca-bundle", str(HOST_CA),
                "--repo", str(root / "clone"), "--data", f"{bed.data}={root / 'train.csv'}",
                "--ignore", "epoch_time_s", "--json"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        report = report_of(proc)
        assert proc.returncode == 0, (report.get("reasons"), report.get("caveats"), proc.stderr[-4000:])
        assert report["image"]["how"] != "built", report["image"]
        env_report = report["environment"]
        (bed.tmp / "nonroot-report.json").write_text(proc.stdout)
        assert report["verdict"] == "reproduced" and report["caveats"] == [], (report["reasons"], report["caveats"],
                                                                                env_report.get("changes"))
        assert env_report["same"] and env_report["rebuild"] == carried["original"].env_id, env_report["software"]
        err = proc.stderr
        assert "editable from" in err and "as root, then the run as you" in err, err[-3000:]
        assert "installed editable with the build backend envcap mounted (no index)" in err, err[-3000:]
        assert "Traceback" not in err
        # Everything in the caller's store and workspace is the caller's (pip's files included).
        foreign = [os.path.join(d, n) for d, dirs, files in os.walk(root / "home") for n in [*dirs, *files]
                   if os.lstat(os.path.join(d, n)).st_uid != uid]
        assert foreign == [], foreign[:10]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_item4_declared_and_ignored_metrics_are_listed_apart(bed: SetupsBed, carried: dict[str, Any]) -> None:
    report = carried["report"]
    assert [m["name"] for m in report["metrics"]] == ["loss"]
    assert report["metrics"][0]["how"] == "identical"
    apart = {m["name"]: m["rule"]["by"] for m in report["metrics_apart"]}
    assert apart == {"train_time_s": "declared at log time", "epoch_time_s": "--ignore"}
    # Without --ignore, the undeclared timing decides (warm image: no build).
    plain = report_of(_rebuild(bed, carried, "--json"))
    assert plain["verdict"] == "not reproduced"
    assert [r.split(":")[0] for r in plain["reasons"]] == ["metric epoch_time_s differs"]
    # With its own tolerance it passes; the table says how, and lists the declared timing apart.
    table = _rebuild(bed, carried, "--tol", "epoch_time_s=1e9")
    assert table.returncode == 0, table.stdout + table.stderr[-2000:]
    text = " ".join(table.stdout.split())
    assert "within tolerance" in text and "--tol)" in text and "not expected to reproduce" in text
    assert "metric train_time_s:" in text and "(differs; declared at log time)" in text
    assert text.endswith("REPRODUCED") and "NOT REPRODUCED" not in text


def test_item2_what_is_gone_and_not_carried_is_refused_before_any_build_step(bed: SetupsBed,
                                                                              carried: dict[str, Any]) -> None:
    from envcap.builder.pipeline import tag_for
    from envcap.builder.registry import Registry, Repository
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    # On the run's own machine, whose store never imported a bundle: the repository and the
    # wheel are gone, so nothing can be had.
    original = {"ENVCAP_HOME": str(bed.store)}
    empty_repo = bed.repository + "-refused"
    with Store(bed.store) as store:
        before = runs_store.all_ids(store)
    lock = envcap("lock", carried["run"], "-o", str(bed.tmp / "lock-out"), env=original)
    build = envcap("build", carried["run"], "--registry", empty_repo, "--base", bed.base, "--ca-bundle", str(HOST_CA),
                   env=original)
    rebuild = envcap("rebuild", carried["run"], "--registry", empty_repo, "--base", bed.base, "--json", env=original)
    push = envcap("push", carried["run"], "--registry", empty_repo, env=original)
    export = envcap("export", carried["run"], "-o", str(bed.tmp / "again.zip"), env=original)
    for what, proc in (("lock", lock), ("build", build), ("rebuild", rebuild), ("push", push), ("export", export)):
        assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, what
        assert "python package carrywheel 0.1" in proc.stderr or "python package gitdep 0.3" in proc.stderr, \
            (what, proc.stderr)
        if what in ("lock", "build", "rebuild"):
            # Every package that cannot be had, named at once: the gone remote and sibling too.
            assert "python package remotedep 1.4" in proc.stderr and "the remote cannot be reached" in proc.stderr
            assert "python package siblinglib 0.2 (installed editable from" in proc.stderr
        # Refused before any build step: no base image chosen, no Dockerfile step run.
        assert "base image:" not in proc.stderr and "Step 1/" not in proc.stderr, (what, proc.stderr)
    assert not (bed.tmp / "lock-out").exists() and not (bed.tmp / "again.zip").exists()
    # Nothing pushed, nothing recorded.
    registry = Registry(Repository.parse(empty_repo))
    assert registry.manifest_digest(tag_for(carried["original"].env_id)) is None
    with Store(bed.store) as store:
        assert runs_store.all_ids(store) == before


# Keep the names the support module exports in use (they shape the recording container).
assert LIB and VENV_PATH
