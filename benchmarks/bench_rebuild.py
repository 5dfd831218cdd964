"""What ``envcap rebuild`` adds beyond the script's own run time, with the image present.

    python benchmarks/bench_rebuild.py [--rounds 5] [--seconds 2] [--editable]

Needs the test bed (scripts/testbed.sh up). Set-up, untimed: a container of the bookworm
base image with git installed; a git repository with a seeded script that draws 200,000
random numbers and then sleeps ``--seconds`` (it uses envcap's API: seeds, a named child seed, metrics; it writes
an output file); the run recorded with ``envcap run`` inside that container (envcap
mounted read-only at /.envcap/lib, as the rebuild e2e test does); its env built with
``envcap build`` and pushed to the test registry, then pulled, so that the image is
present in the Docker daemon.

Timed: ``envcap rebuild RUN --json`` as a user runs it (a fresh interpreter each time),
``--rounds`` times. The script's own run time is measured inside the container (around
the command, by the launcher); the figure is the command's wall time minus that. Its
parts come from the report's timings: start-up (interpreter, imports, store), loading
the run, checking the data, the image (a daemon look-up), preparing the workspace (git
clone + checkout + diff + untracked), recording the run's start, the container beyond
the script (create, start, the environment capture it waits for, stop, remove), and
finishing the record and comparing. Target: at most 3 s.

``--editable``: the run's repository is a package of its own (``pyproject.toml``,
setuptools), installed editable (``pip install -e .``) in a venv of the container the run
is recorded in, and the script imports it: each rebuild installs it again from the
workspace in the container (its part is measured there: "editable install").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TESTBED_ENV = Path(os.environ.get("ENVCAP_TESTBED_DIR", "/var/tmp/envcap-testbed")) / "env"
LIB = "/.envcap/lib"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_SCRIPT = """set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends git
rm -rf /var/lib/apt/lists/*
"""
TRAIN = '''\
import random, time
import envcap

with envcap.start_run(defaults={"seconds": SECONDS, "draws": 200_000}) as run:
    seeds = run.seed_everything()
    rng = random.Random(seeds.child("shuffle"))
    total = sum(rng.random() for _ in range(run.params["draws"]))   # seeded work: the result
    time.sleep(run.params["seconds"])                                 # and the rest of its run time
    run.log_metric("mean", total / run.params["draws"])
    with open("out.txt", "w") as fh:
        fh.write(repr(rng.random()))
'''
PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "benchpkg"
version = "0.1"

[tool.setuptools]
packages = ["benchpkg"]
"""
EDITABLE_SCRIPT = f"""set -euo pipefail
python3 -m venv /opt/venv
cd "$PROJ" && PIP_CONFIG_FILE=/dev/null PIP_CERT={HOST_CA} PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install -q -e .
"""
CLI = "import sys; from envcap.cli import main; sys.argv[0] = 'envcap'; main()"


def testbed() -> dict[str, str]:
    if not TESTBED_ENV.is_file():
        raise SystemExit("the test bed is not up: run scripts/testbed.sh up")
    return dict(line.split("=", 1) for line in TESTBED_ENV.read_text().splitlines() if "=" in line)


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def lib_dir(dest: Path) -> None:
    import envcap

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(envcap.__file__).resolve().parent, dest / "envcap", ignore=ignore)
    for name in ("click", "rfc8785", "distro"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        if spec.submodule_search_locations:
            shutil.copytree(Path(spec.origin).parent, dest / name, ignore=ignore)
        else:
            shutil.copy2(spec.origin, dest / Path(spec.origin).name)


def set_up(tmp: Path, facts: dict[str, str], seconds: float, client: Any, made: list[str],
           editable: bool = False) -> tuple[str, str]:
    """The recorded run and its image's reference (present in the daemon)."""
    import docker

    from envcap.builder.pipeline import BuildOptions, build
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    proj, lib, home = tmp / "proj", tmp / "lib", tmp / "home"
    proj.mkdir()
    train = TRAIN.replace("SECONDS", repr(seconds))
    if editable:
        train = train.replace("import envcap\n", "import envcap\nfrom benchpkg import mean\n").replace(
            "total / run.params[\"draws\"]", "mean(total, run.params[\"draws\"])")
        (proj / "pyproject.toml").write_text(PYPROJECT)
        (proj / "benchpkg").mkdir()
        (proj / "benchpkg" / "__init__.py").write_text("def mean(total, n):\n    return total / n\n")
    (proj / "train.py").write_text(train)
    (proj / ".gitignore").write_text("out.txt\n__pycache__/\n*.egg-info/\nbuild/\n")
    git(proj, "init", "-q", "-b", "main")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "bench")
    base = facts["ENVCAP_TEST_BASE_BOOKWORM"]
    source = f"localhost/envcap-bench-rebuild-source:{uuid.uuid4().hex[:8]}"
    script = SOURCE_SCRIPT + (EDITABLE_SCRIPT if editable else "")
    mounts = [docker.types.Mount(str(HOST_CA), str(HOST_CA), type="bind", read_only=True),
              docker.types.Mount(str(proj), str(proj), type="bind")] if editable else []
    container = client.containers.run(base, ["/bin/bash", "-c", script], detach=True, network_mode="host",
                                      mounts=mounts, environment={"PROJ": str(proj)})
    try:
        if container.wait(timeout=900)["StatusCode"] != 0:
            raise SystemExit(container.logs().decode()[-2000:])
        container.commit(*source.split(":"))
        made.append(source)
    finally:
        container.remove(force=True)
    lib_dir(lib)
    home.mkdir()
    mounts = [docker.types.Mount(str(proj), str(proj), type="bind"),
              docker.types.Mount(LIB, str(lib), type="bind", read_only=True),
              docker.types.Mount(str(home), str(home), type="bind")]
    python = "/opt/venv/bin/python" if editable else "python3"
    argv = [python, "-m", "envcap", "run", "--seed", "11", "--output", "out.txt", "--", python, "train.py"]
    container = client.containers.run(source, argv, detach=True, network_mode="host", mounts=mounts,
                                      working_dir=str(proj),
                                      environment={"ENVCAP_HOME": str(home), "PYTHONPATH": LIB,
                                                   "PATH": ("/opt/venv/bin:" if editable else "") + PATH})
    try:
        if container.wait(timeout=600)["StatusCode"] != 0:
            raise SystemExit(container.logs().decode()[-2000:])
        err = container.logs(stdout=False).decode()
    finally:
        container.remove(force=True)
    run_id = next(line.split()[2] for line in err.splitlines()
                  if line.startswith("envcap: run ") and "recorded" not in line)
    repository = f"{facts.get('ENVCAP_TEST_REGISTRY', '127.0.0.1:5000')}/envcap-bench-rebuild-{uuid.uuid4().hex[:8]}"
    with Store(home) as store:
        manifest = store.get(runs_store.load(store, run_id).manifest)
        result = build(manifest, BuildOptions(registry=repository, base=base, ca_bundle=HOST_CA), store=store)
    made += [result.reference, f"{repository}:{result.record.tag}"]
    client.images.pull(result.reference)  # the image is present: that is the case measured
    os.environ["ENVCAP_HOME"] = str(home)
    return run_id, result.reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the script sleeps after its work")
    parser.add_argument("--editable", action="store_true",
                        help="the run's repository is a package installed editable (pip install -e .)")
    args = parser.parse_args()
    facts = testbed()
    import docker

    client = docker.from_env(timeout=600)
    made: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="envcap-bench-rebuild-") as tmp:
            run_id, reference = set_up(Path(tmp), facts, args.seconds, client, made, args.editable)
            env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
            rows = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                extra = ["--ca-bundle", str(HOST_CA)] if args.editable else []
                proc = subprocess.run([sys.executable, "-c", CLI, "rebuild", run_id, *extra, "--json"],
                                      capture_output=True,
                                      text=True, env=env, timeout=600, check=False)
                wall = time.perf_counter() - start
                report = json.loads(proc.stdout)
                if proc.returncode != 0:
                    raise SystemExit(f"the rebuild did not reproduce: {report.get('reasons')}\n{proc.stderr}")
                failed = [c for c in report.get("caveats") or () if "the editable install" in c]
                if args.editable and failed:
                    raise SystemExit(f"the package was not installed: {failed}\n{proc.stderr[-3000:]}")
                if args.editable and not report["environment"].get("same") and not rows:
                    print("note: the environment in the container differs from the run's:",
                          "; ".join(report["environment"].get("software") or ())[:600])
                if report["image"].get("pulled"):
                    raise SystemExit("the image was pulled: it should have been present")
                rows.append((wall, report["timings"]))
        medians = summarize(rows)
        print(f"envcap rebuild of a run whose script works, then sleeps {args.seconds:g} s; image present "
              f"({reference.split('@')[0]}), {args.rounds} rounds, medians:")
        for name, value in medians.items():
            print(f"  {name:<46} {value:7.3f} s")
        print(f"time envcap rebuild adds beyond the script's own run time: median {medians['overhead (wall - script)']:.2f} s, "
              f"max {max(w - t['script'] for w, t in rows):.2f} s  (target <= 3 s)")
    finally:
        for name in made:
            try:
                client.images.remove(name, force=True)
            except docker.errors.APIError:
                pass
        client.close()
    return 0


def summarize(rows: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    t = [timing for _, timing in rows]
    return {
        "wall (the whole command)": med([w for w, _ in rows]),
        "script (measured inside the container)": med([x["script"] for x in t]),
        "overhead (wall - script)": med([w - x["script"] for w, x in rows]),
        "  start-up: interpreter, imports, store": med([w - x["total"] for w, x in rows]),
        "  load the run and its manifest": med([x["load"] for x in t]),
        "  check the data": med([x["data"] for x in t]),
        "  GPU pre-flight": med([x["gpu"] for x in t]),
        "  image (daemon look-up)": med([x["image"] for x in t]),
        "  workspace (clone, checkout, diff, untracked)": med([x["workspace"] for x in t]),
        "  record the run's start": med([x["record_start"] for x in t]),
        "  container beyond the script (+ capture)": med([x["container"] - x["script"] for x in t]),
        **({"    of which: editable install (in the container)": med([x["editable_install"] for x in t])}
           if all("editable_install" in x for x in t) else {}),
        **({"  build backend (resolved once, then cached)": med([x["backend"] for x in t])}
           if all("backend" in x for x in t) else {}),
        "  finish the record, compare": med([x["total"] - sum(x[k] for k in (
            "load", "data", "gpu", "image", "workspace", "record_start", "container", "backend") if k in x)
            for x in t]),
    }


if __name__ == "__main__":
    sys.exit(main())
