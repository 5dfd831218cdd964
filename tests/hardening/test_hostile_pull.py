"""Class 7: forged records in the shared store through `envcap pull` (issue 20 item 1).

Whoever can write the shared PostgreSQL store (any node of any cluster) can put any
record there. Each case writes a run record with hostile paths, types or nesting into
the test bed's real server, and pulls it into an empty embedded store with the real
command: refused with exit 2 and nothing copied, or copied with every path safe.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardening_support import Case, budget  # isort: skip
from hostile_support import (  # isort: skip
    HOSTILE_PATHS, WRONG_TYPES, BaseBundle, clean_refusal, cli, fresh_dir, make_base_bundle, store_state,
)

from envcap.core.canonical import digest
from envcap.core.run import RunRecord

CASE = "7. hostile records (pull)"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseBundle:
    return make_base_bundle(tmp_path_factory.mktemp("base-bundle"))


@pytest.fixture
def shared(pg_url: str, base: BaseBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared store, holding the base run (and so its snapshot)."""
    result = cli("--store", pg_url, "import", str(base.path), home=tmp_path_factory.mktemp("unused"))
    assert result.code == 0, result.output
    yield pg_url


def plant(url: str, base: BaseBundle, record: dict[str, Any], raw: bytes | None = None) -> str:
    """Write ``record`` into the shared store as a run of its own, as a hostile node could."""
    from envcap.store.factory import open_store
    from envcap.store import runs as runs_store

    run_id = "01" + "".join(_CROCKFORD[b % 32] for b in os.urandom(24))
    if isinstance(record, dict):
        record = {**record, "id": run_id}
    data = raw.replace(b"__RUN_ID__", run_id.encode()) if raw is not None else json.dumps(record).encode()
    benign = RunRecord.from_dict({**base.record, "id": run_id})
    with open_store(url) as store:
        oid = store.put_object(data)
        for i in range(3):
            store.put_object(f"planted {i}\n".encode())
        store.transaction(runs_store.record_statements(benign, oid, len(data)))
    return run_id


def _held(url: str, run_id: str) -> None:
    home = fresh_dir("envcap-pull-") / "home"
    try:
        result = cli("--store", url, "pull", run_id, home=home)
        assert not result.traceback, f"traceback: {result.exception!r}\n{result.output}"
        if result.code == 0:
            from envcap.core.files import safe_relpath
            from envcap.store import runs as runs_store
            from envcap.store.embedded import Store

            with Store(home, create=False) as store:
                for item in runs_store.load(store, run_id).git.get("untracked") or ():
                    safe_relpath(item["path"])
        else:
            clean_refusal(result)
            assert run_id not in store_state(home)[0]
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)


def _untracked(paths: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, path in enumerate(paths):
        data = f"planted {i % 3}\n".encode()
        out.append({"path": path, "size": len(data), "sha256": digest(data), "object": digest(data), "kind": "file"})
    return out


def test_pulling_a_record_whose_path_escapes_is_refused(shared: str, base: BaseBundle) -> None:
    record = copy.deepcopy(base.record)
    record["git"]["untracked"] = _untracked(["../../pulled-out"])
    run_id = plant(shared, base, record)
    home = fresh_dir("envcap-pull-") / "home"
    with Case(CASE):
        result = cli("--store", shared, "pull", run_id, home=home)
        clean_refusal(result)
        assert "untracked" in result.output and store_state(home)[0] == []


@budget(0.5, 10)
@given(paths=st.lists(HOSTILE_PATHS, min_size=1, max_size=3))
def test_generated_paths_through_pull(shared: str, base: BaseBundle, paths: list[str]) -> None:
    record = copy.deepcopy(base.record)
    record["git"]["untracked"] = _untracked(paths)
    with Case(CASE):
        _held(shared, plant(shared, base, record))


_TARGETS = [("git", "untracked"), ("git", "untracked", 0), ("git", "untracked", 0, "path"), ("git", "diff"),
            ("git", "untracked", 0, "object"), ("params_files",), ("configs",), ("outputs",), ("git",), ("cwd",)]


@budget(0.5, 10)
@given(where=st.sampled_from(_TARGETS), value=WRONG_TYPES, depth=st.sampled_from([0, 0, 100, 5000]))
def test_generated_types_and_nesting_through_pull(shared: str, base: BaseBundle, where: tuple[Any, ...],
                                                  value: Any, depth: int) -> None:
    record = copy.deepcopy(base.record)
    record["git"]["untracked"] = _untracked(["ok.txt"])
    obj: Any = record
    for key in where[:-1]:
        obj = obj[key]
    obj[where[-1]] = "__DEEP__" if depth else copy.deepcopy(value)
    raw = None
    if depth:
        raw = json.dumps({**record, "id": "__RUN_ID__"}).replace('"__DEEP__"', "[" * depth + "]" * depth).encode()
    with Case(CASE):
        _held(shared, plant(shared, base, record, raw))
