"""Seeds: named children derived deterministically; everything seeded is reported."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from envcap.core.errors import UsageError
from envcap.runs.seeds import (
    Seeds,
    check_seed,
    derive,
    determinism_state,
    seed_everything,
)


def test_named_children_are_stable_distinct_and_32_bit() -> None:
    assert derive(7, "shuffle") == derive(7, "shuffle")
    # Fixed forever: a run recorded today must derive the same seeds in ten years.
    assert derive(7, "shuffle") == int.from_bytes(
        __import__("hashlib").sha256(b"envcap.seed/1:7:shuffle").digest()[:4], "big")
    values = {derive(7, n) for n in ("shuffle", "augment", "sampler", "worker-0", "worker-1")}
    assert len(values) == 5 and all(0 <= v < 2**32 for v in values)
    assert derive(8, "shuffle") != derive(7, "shuffle")


def test_every_seed_set_and_derived_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # restored afterwards; seed_everything sets it
    state = random.getstate()
    events: list[tuple[str, dict]] = []
    try:
        seeds = seed_everything(12345, recorder=lambda kind, event: events.append((kind, event)))
        first = random.random()
        seed_everything(12345)
        assert random.random() == first
    finally:
        random.setstate(state)
        from envcap.runs import seeds as seeds_module

        seeds_module._HOOK.pending.clear()  # leave no import hook behind in the test process
        if seeds_module._HOOK in sys.meta_path:
            sys.meta_path.remove(seeds_module._HOOK)
    assert os.environ["PYTHONHASHSEED"] == "12345"
    kinds = [k for k, _ in events]
    assert kinds[0] == "seed_global" and "determinism" in kinds
    libraries = {e["library"] for k, e in events if k == "seed_set"}
    assert {"random", "PYTHONHASHSEED"} <= libraries
    seeds.child("shuffle")
    seeds.child("shuffle")  # asked twice, reported once
    assert [e for k, e in events if k == "seed_named"] == [{"name": "shuffle", "value": derive(12345, "shuffle"),
                                                           "from": 12345}]
    assert seeds.to_dict() == {"global": 12345, "named": {"shuffle": derive(12345, "shuffle")}}


def test_seeds_are_checked() -> None:
    assert check_seed("0x10") == 16 and check_seed(5) == 5
    for bad in (-1, 2**63, "seven", True):
        with pytest.raises(UsageError):
            check_seed(bad)
    assert int(Seeds(3)) == 3


def test_determinism_switches_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    state = determinism_state()
    assert state["env"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and state["env"]["OMP_NUM_THREADS"] == "4"
    assert state["cpu_count"] == os.cpu_count()


def test_seeding_imports_nothing_and_hash_seed_reaches_child_processes() -> None:
    code = (
        "import sys, subprocess\n"
        "from envcap.runs.seeds import seed_everything\n"
        "seed_everything(99)\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
        "out = subprocess.run([sys.executable, '-c', 'print(hash(\"envcap\"))'], capture_output=True, text=True)\n"
        "print(out.stdout.strip())\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout == second.stdout
