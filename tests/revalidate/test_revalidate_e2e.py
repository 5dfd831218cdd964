"""End to end on the test bed: key runs revalidated through the one-node Slurm cluster,
a job cancelled with ``scancel`` mid-run and resumed, a bisect over eight real package
changes, and a package change that ``envcap drift`` (and its page in ``envcap ui``) reports.

The runs are recorded with ``envcap run`` inside a container (a venv of eight local
wheels; see reval_support.py), pushed to a PostgreSQL database of this module's own on
the test bed's server, and the env's image built once with ``envcap build``. Every
command then uses that shared store; Slurm's jobs reach it with the URL without its
password and a 0600 password file.

The tests run in file order: the drift test changes the env's image last.

Needs scripts/testbed.sh up (PostgreSQL, registry, dockerd, Slurm). Slow: the source
container and one image build for the module (about 3 minutes), then a few seconds per
rebuild.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reval_support import RevalBed, envcap

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

TESTBED_SLURM_CONF = Path(os.environ.get("ENVCAP_TESTBED_DIR", "/var/tmp/envcap-testbed")) / "slurm" / "slurm.conf"


def slurm_conf() -> str:
    """The test bed's Slurm configuration; skipped (or failed, where the test bed is required)
    when the cluster does not answer."""
    conf = os.environ.get("SLURM_CONF") or (str(TESTBED_SLURM_CONF) if TESTBED_SLURM_CONF.is_file() else "")
    ok = False
    if conf:
        try:
            ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "SLURM_CONF": conf}, check=False)
            ok = "is UP" in ping.stdout
        except (OSError, subprocess.TimeoutExpired):
            ok = False
    if not ok:
        message = "no Slurm test bed (scripts/testbed.sh up starts it)"
        if os.environ.get("ENVCAP_TEST_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return conf


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from conftest import pg_admin_url

    conf = slurm_conf()
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL test bed (ENVCAP_TEST_PG)")
    psycopg = pytest.importorskip("psycopg")
    name = f"envcap_reval_{os.getpid()}_{os.urandom(3).hex()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    partition = os.environ.get("ENVCAP_TEST_SLURM_PARTITION", "envcap")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    b = RevalBed(tmp_path_factory.mktemp("reval-bed"), url)
    try:
        ids = b.record()
        image = b.push_and_build(ids["a"])
        yield {"bed": b, "ids": ids, "image": image, "url": url, "partition": partition,
               "env": {**b.env, "SLURM_CONF": conf}}
    finally:
        b.close()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(bed: dict[str, Any], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return envcap(*args, env=bed["env"], cwd=cwd)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"not JSON ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}") from exc


def password_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).password or ""


def open_store(bed: dict[str, Any]) -> Any:
    from envcap.store.postgres import PostgresStore

    return PostgresStore(bed["url"])


def test_key_runs_revalidate_through_slurm_a_cancelled_job_and_resume(bed: dict[str, Any]) -> None:
    ids, b = bed["ids"], bed["bed"]
    a, bb, c = ids["a"], ids["b"], ids["c"]
    proc = run(bed, "key", a, bb, c, "--note", "the paper's table 2")
    assert proc.returncode == 0, proc.stderr
    # The mark is in the shared store, shown by runs and show.
    listed = {v["id"]: v for v in as_json(run(bed, "runs", "--json"))}
    assert [r for r, v in listed.items() if v.get("key")] == sorted([a, bb, c])
    assert "key" in run(bed, "runs").stdout.splitlines()[0]
    assert "key run" in run(bed, "show", a).stdout

    # Round 1 through Slurm; the job of run B is cancelled while its container runs.
    partition = bed["partition"]
    started = subprocess.Popen([sys.executable, "-m", "envcap", "revalidate", "--slurm", partition, "--round", "r1",
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **bed["env"]})
    deadline = time.monotonic() + 300
    while not b.containers_of(bb):
        assert started.poll() is None, started.communicate()
        assert time.monotonic() < deadline, "run B's rebuild container never started"
        time.sleep(0.2)
    from envcap.store import revalidations

    with open_store(bed) as store:
        job_b = next(j for j in revalidations.jobs(store, "r1") if j.run_id == bb)
    assert job_b.state == "running" and job_b.job_id and job_b.scheduler == "slurm"
    # The job reached the store without the password: the script exports a URL without it
    # and a 0600 password file, removed once the round has ended; no record keeps it.
    secret = password_of(bed["url"])
    script = next((Path(b.home) / "revalidate" / "r1").glob("job-*.sh")).read_text()
    assert secret and secret not in script
    passfile = re.search(r"export PGPASSFILE=(\S+)", script)
    assert passfile and os.stat(passfile.group(1)).st_mode & 0o777 == 0o600
    subprocess.run(["scancel", job_b.job_id], check=True, timeout=60)
    out, err = started.communicate(timeout=600)
    assert started.returncode == 1, err[-3000:]
    round1 = json.loads(out)
    jobs = {j["run"]: j for j in round1["jobs"]}
    assert jobs[bb]["state"] == "cancelled" and jobs[bb]["verdict"] is None, jobs[bb]
    assert "scancel" in jobs[bb]["detail"]
    assert f"{bb}: job {job_b.job_id} cancelled" in err
    for r in (a, c):
        assert jobs[r]["state"] == "done" and jobs[r]["verdict"] == "reproduced", jobs[r]
    # Its container was stopped (it belongs to the daemon, not to the job), and no verdict written.
    assert b.containers_of(bb) == []
    shown = as_json(run(bed, "show", bb, "--json"))
    stopped = [as_json(run(bed, "show", r["run"], "--json")) for r in shown.get("reproduced_by", [])]
    assert stopped and all(s["reproduction"]["verdict"] is None for s in stopped)
    assert stopped[-1]["signal"] == "SIGTERM"

    assert not os.path.exists(passfile.group(1))
    for r in (a, c):
        text = run(bed, "show", jobs[r]["rebuild"], "--json").stdout
        assert secret not in text
        rep = json.loads(text)["reproduction"]
        assert rep["revalidation"] == "r1" and rep["node"] == socket.gethostname()
        assert rep["platform_id"].startswith("sha256:") and rep["verdict"] == "reproduced"

    # Idempotent: the same command again submits nothing, and says what --resume would do.
    again = run(bed, "revalidate", "--slurm", partition, "--round", "r1", "--json")
    assert again.returncode == 1
    assert as_json(again)["submitted"] == []
    assert any(s["run"] == bb and "--resume" in s["why"] for s in as_json(again)["skipped"])
    # --resume completes the round with run B alone.
    resumed = run(bed, "revalidate", "--slurm", partition, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = as_json(resumed)
    assert done["round"] == "r1" and done["submitted"] == [bb]
    assert all(j["state"] == "done" and j["verdict"] == "reproduced" for j in done["jobs"])
    quiet = run(bed, "drift")
    assert quiet.returncode == 0 and "0 of 3 key run(s) drifted" in quiet.stdout


def test_bisect_names_the_package_in_five_runs_and_pins_back(bed: dict[str, Any], tmp_path: Path) -> None:
    ids, b = bed["ids"], bed["bed"]
    c, bad = ids["c"], ids["c_bad"]
    from envcap.store import images as image_store

    with open_store(bed) as store:
        images_before = len(image_store.images(store))
        copies_before = len(as_json(run(bed, "show", c, "--json")).get("reproduced_by", []))
    plan = run(bed, "bisect", c, "--good", c, "--bad", bad, "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = as_json(plan)
    assert [ch["name"] for ch in planned["changes"]] == [f"rv-{x}" for x in "abcdefgh"]
    assert {ch["name"]: ch["needs"] for ch in planned["changes"]}["rv-e"] == ["rv-d"]
    assert planned["planned_runs"] == 5 and planned["runs"] == 0
    text = run(bed, "bisect", c, "--good", c, "--bad", bad, "--dry-run")
    assert "at most 5 runs" in text.stdout and "rv-e 1.0 → 2.0  (needs rv-d)" in text.stdout

    proc = run(bed, "bisect", c, "--good", c, "--bad", bad, "--json", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    answer = as_json(proc)
    # Every image built and run counts: the two checks, the steps, any skipped subset.
    assert answer["runs"] <= 5, answer["steps"]
    assert [s["what"] for s in answer["steps"][:2]] == ["check good", "check bad"]
    assert [(k["name"], k["good"], k["bad"]) for k in answer["culprits"]] == [("rv-c", "1.0", "2.0")]
    # Each step's verdict is in the store, as a reproduction of the run with its step.
    shown = as_json(run(bed, "show", c, "--json"))
    new = list(shown["reproduced_by"][copies_before:])
    assert len(new) == sum(1 for s in answer["steps"] if s["verdict"])
    steps = [as_json(run(bed, "show", r["run"], "--json"))["reproduction"] for r in new]
    assert sorted(s["bisect"]["step"] for s in steps) == [s["number"] for s in answer["steps"] if s["verdict"]]
    # Intermediate images belong to no env, and are gone.
    with open_store(bed) as store:
        assert len(image_store.images(store)) == images_before
    for s in answer["steps"][1:]:
        assert s["image"] is None or not b.client.images.list(name=s["image"])
    # Rollback: the last good image by digest, a lockfile with the culprit held back.
    lock = Path(answer["lockfile"]).read_text()
    assert "rv-c==1.0" in lock and "rv-a==2.0" in lock and "rv-c==2.0" not in lock
    assert answer["good_image"] == bed["image"] and "@sha256:" in answer["good_image"]
    assert answer["pin_command"].startswith(f"docker pull {bed['image']}")
    assert answer["pin_command"].endswith(f"-r {answer['lockfile']}")
    people = run(bed, "bisect", c, "--good", c, "--bad", bad, "-o", str(tmp_path))
    assert people.returncode == 0
    assert people.stdout.rstrip().splitlines()[-1].strip() == answer["pin_command"]
    assert "culprit: rv-c 1.0 → 2.0" in people.stdout


def test_a_subset_pip_cannot_install_is_skipped(bed: dict[str, Any]) -> None:
    """rv-e 2.0 needs rv-d>=2.0: ENV_A's image + rv-e alone is refused by pip, and said so."""
    from envcap.engines import make_engine
    from envcap.revalidate import layers
    from envcap.revalidate.changes import between
    from envcap.store.resolve import resolve_manifest

    with open_store(bed) as store:
        good = resolve_manifest(bed["ids"]["c"], store=store)
        bad = resolve_manifest(bed["ids"]["c_bad"], store=store)
    changes = {c.name: c for c in between(good, bad)}
    engine = make_engine(False)
    try:
        step = layers.build(engine, bed["image"], "/opt/venv/bin/python", [changes["rv-e"]], progress=lambda _: None)
    finally:
        engine.close()
    assert step.image is None
    assert step.error and "rv" in step.error and "d" in step.error, step.error


def test_a_package_change_drifts_and_drift_says_why(bed: dict[str, Any], tmp_path: Path) -> None:
    """The env's image is rebuilt with rv-c 2.0 (a package change, as an index serving a new
    release would do); the next round finds run C drifted, and says why."""
    ids, b = bed["ids"], bed["bed"]
    from envcap.builder.registry import Repository
    from envcap.engines import make_engine
    from envcap.revalidate import layers
    from envcap.revalidate.changes import between
    from envcap.store import images as image_store
    from envcap.store.resolve import resolve_manifest

    with open_store(bed) as store:
        good = resolve_manifest(ids["c"], store=store)
        bad = resolve_manifest(ids["c_bad"], store=store)
        current = next(i for i in image_store.images(store, good.env_id) if i.reference == bed["image"])
    changes = {c.name: c for c in between(good, bad)}
    engine = make_engine(False)
    try:
        step = layers.build(engine, bed["image"], "/opt/venv/bin/python", [changes["rv-c"]], progress=lambda _: None)
        assert step.image is not None, step.error
        repository = Repository.parse(b.repository)
        digest = engine.push(step.image, repository, current.tag, lambda _: None)
        engine.remove(step.image)
    finally:
        engine.close()
    b.made.append(f"{repository}@{digest}")
    with open_store(bed) as store:
        image_store.record(store, image_store.ImageRecord(
            env_id=good.env_id, repository=str(repository), tag=current.tag, digest=digest, status="complete",
            engine="docker", base=current.base, built_at="2999-01-01T00:00:00+00:00"))

    proc = run(bed, "revalidate", "--slurm", bed["partition"], "--round", "r2", "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    jobs = {j["run"]: j for j in as_json(proc)["jobs"]}
    assert jobs[ids["c"]]["verdict"] == "not reproduced"
    assert jobs[ids["a"]]["verdict"] == jobs[ids["b"]]["verdict"] == "reproduced"

    drift = run(bed, "drift")
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert ids["c"] in drift.stdout and ids["a"] not in drift.stdout and ids["b"] not in drift.stdout
    # (The recording's 1.0 is kept as canonical JSON, which writes it 1.)
    assert re.search(r"- metric score differs: 1(\.0)? → 2\.0\n", drift.stdout), drift.stdout
    assert re.search(r"- environment: python rv-c 1\.0 → 2\.0", drift.stdout), drift.stdout
    assert "verdict changed since the revalidation before" in drift.stdout
    found = as_json(run(bed, "drift", "--json"))
    assert [k["run"] for k in found] == [ids["c"]] and found[0]["status"] == "drifted"
    assert found[0]["previous"]["verdict"] == "reproduced" and found[0]["latest"]["round"] == "r2"
    check_ui(bed, tmp_path)


def check_ui(bed: dict[str, Any], tmp_path: Path) -> None:
    """The drift page and the key mark in a real browser (Debian's chromium through Playwright)."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs Debian's chromium (scripts/testbed.sh up installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ids = bed["ids"]
    server = subprocess.Popen([sys.executable, "-m", "envcap", "ui", "--port", "0"], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True, env={**os.environ, **bed["env"]})
    try:
        assert server.stderr is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = found.group(0) if found else None
            assert line or server.poll() is None, "envcap ui exited"
        assert url, "envcap ui did not start"
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(url + "drift")
            assert "1 of 3 key run(s) drifted" in page.inner_text("#drift-summary")
            row = page.locator(f"tr[data-run='{ids['c']}']")
            assert row.get_attribute("class") == "drift"
            assert re.search(r"metric score differs: 1(\.0)? → 2\.0", row.inner_text())
            assert page.locator(f"tr[data-run='{ids['a']}']").get_attribute("class") == "steady"
            page.screenshot(path=str(tmp_path / "drift.png"))
            row.locator("a").first.click()
            page.wait_for_url(re.compile(ids["c"]))
            assert page.inner_text("#key-mark") == "key run"
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
