"""The numeric runtime a run's own process used (BLAS and OpenMP through threadpoolctl,
their kernels and threads, the settings that choose them), recorded as platform facts.

The kernel is made to differ with OPENBLAS_CORETYPE set in the children only: the
setting of the process running the tests is never changed, and these tests pass whether
it sets one or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runs_helpers import make_repo, run_rows, show

from envcap.runs.numerics import FIELDS, checked, libraries, observe

numpy = pytest.importorskip("numpy")
threadpoolctl = pytest.importorskip("threadpoolctl")


def child(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          env={**base, **env}, timeout=180, check=False)


def auto_kernel(tmp_path: Path) -> str:
    """The kernel OpenBLAS picks for this CPU by itself (asked of a child without any
    OPENBLAS_CORETYPE, whatever this process has)."""
    proc = child("import json, numpy, threadpoolctl; print(json.dumps(threadpoolctl.threadpool_info()))", tmp_path)
    assert proc.returncode == 0, proc.stderr
    blas = [lib for lib in json.loads(proc.stdout) if lib.get("internal_api") == "openblas"]
    if not blas:
        pytest.skip("numpy here does not use OpenBLAS")
    return str(blas[0]["architecture"])


def test_the_facts_are_threadpoolctls_own_view_of_this_process() -> None:
    numpy.ones((4, 4)) @ numpy.ones((4, 4))  # the BLAS is loaded
    truth = threadpoolctl.threadpool_info()
    facts = observe()
    assert "error" not in facts and facts["libraries"]
    # Every library threadpoolctl lists, with its own values for every kept field.
    assert len(facts["libraries"]) == len(truth)
    for lib in truth:
        kept = {k: lib[k] for k in FIELDS if lib.get(k) is not None}
        assert kept in facts["libraries"], (kept, facts["libraries"])
    assert facts["libraries"] == libraries(truth)
    assert checked(json.loads(json.dumps(facts))) == facts


def test_the_kernel_a_child_is_told_to_use_is_the_kernel_recorded(tmp_path: Path) -> None:
    auto = auto_kernel(tmp_path)
    forced = "Sandybridge" if auto != "Sandybridge" else "Nehalem"
    proc = child("""
        import json, numpy, threadpoolctl
        from envcap.runs.numerics import observe
        print(json.dumps({"facts": observe(), "truth": threadpoolctl.threadpool_info()}))
        """, tmp_path, OPENBLAS_CORETYPE=forced)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [blas] = [lib for lib in out["facts"]["libraries"] if lib["internal_api"] == "openblas"]
    [truth] = [lib for lib in out["truth"] if lib["internal_api"] == "openblas"]
    assert blas["architecture"] == truth["architecture"] == forced != auto
    assert out["facts"]["settings"]["OPENBLAS_CORETYPE"] == forced


SCRIPT = """
    import os
    from envcap.runs.api import start_run
    with start_run() as run:
        kernel = os.environ.get("WANT_KERNEL")
        if kernel:  # chosen by the script, after the environment was captured, before numpy loads
            os.environ["OPENBLAS_CORETYPE"] = kernel
        import numpy
        w = numpy.linalg.solve(numpy.eye(3) * 2.0, numpy.ones(3))
        run.log_metric("w0", float(w[0]))
    """


def test_a_run_records_the_kernel_its_process_used_and_no_id_changes(tmp_path: Path, isolated: Path) -> None:
    auto = auto_kernel(tmp_path)
    forced = "Sandybridge" if auto != "Sandybridge" else "Nehalem"
    repo = make_repo(tmp_path / "proj")
    for env in ({}, {"WANT_KERNEL": forced}):
        proc = child(SCRIPT, repo, **env)
        assert proc.returncode == 0, proc.stderr
    plain, chosen = (show(row[0]) for row in sorted(run_rows(isolated), key=lambda r: r[0]))
    kernels = []
    for view in (plain, chosen):
        [blas] = [lib for lib in view["numerics"]["libraries"] if lib["internal_api"] == "openblas"]
        kernels.append(blas["architecture"])
    assert kernels == [auto, forced]
    assert chosen["numerics"]["settings"]["OPENBLAS_CORETYPE"] == forced
    assert "OPENBLAS_CORETYPE" not in plain["numerics"]["settings"]
    # Platform facts of the process, kept in the record: neither env_id nor platform_id moves.
    assert (plain["env_id"], plain["platform_id"]) == (chosen["env_id"], chosen["platform_id"])


def test_malformed_facts_are_a_problem_not_a_record(tmp_path: Path) -> None:
    assert checked({"libraries": "x", "settings": {}}) is None
    assert checked({"libraries": [], "settings": {"OMP_NUM_THREADS": 4}}) is None
    assert checked({"error": "e", "settings": {"NOT_A_SETTING": "1"}}) == {"error": "e", "settings": {}}
