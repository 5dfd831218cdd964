"""The store: objects verified on every read, index safe under concurrent writers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap.core.errors import NotFoundError, StoreError
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store


def manifest(version: str = "12", host: str = "node-1") -> Manifest:
    return Manifest.create(
        {"os": {"id": "debian", "version_id": version}, "cpu": {"model": "x"}},
        {"software": ["os"], "platform": ["cpu"]},
        observed={"hostname": host, "time": f"2026-11-26T00:00:0{len(host) % 10}+00:00"},
        labels={"cluster": "a"},
    )


def test_add_then_get_by_prefix(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    m = manifest()
    store.add(m)
    for ref in (m.id, m.id[7:19], m.env_id[7:19], m.platform_id):
        assert store.get(ref).id == m.id
    assert store.get(m.id).observed["hostname"] == "node-1"


def test_two_snapshots_of_one_manifest_share_the_manifest_object(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    a, b = manifest(host="node-1"), manifest(host="node-22")
    assert a.id == b.id
    store.add(a)
    store.add(b)
    assert len(store.snapshots()) == 2
    manifest_objects = list(store.db.execute("SELECT id FROM objects WHERE kind = 'manifest'"))
    assert manifest_objects == [(a.id,)]


def test_unknown_and_ambiguous_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.add(manifest())
    with pytest.raises(NotFoundError):
        store.get("ffffffff")
    with pytest.raises(NotFoundError, match="not an id"):
        store.get("x; rm -rf /")


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no envcap store"):
        Store(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_objects_are_read_only_and_named_by_their_hash(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    oid = store.put_object(b"hello")
    path = store.object_path(oid)
    assert path.stat().st_mode & 0o222 == 0
    assert store.get_object(oid) == b"hello"
    assert store.put_object(b"hello") == oid


@given(st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_changed_byte_is_caught_by_read_and_verify(tmp_path: Path, data: st.DataObject) -> None:
    root = tmp_path / f"s{data.draw(st.integers(0, 10**9))}"
    store = Store(root)
    m = manifest()
    record = store.add(m)
    victim_id = data.draw(st.sampled_from([m.id, record]))
    path = store.object_path(victim_id)
    raw = bytearray(path.read_bytes())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        store.get_object(victim_id)
    with pytest.raises(StoreError):
        store.get(m.id)
    problems = store.verify()
    assert any(victim_id in p for p in problems)


def test_verify_reports_a_missing_object(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    m = manifest()
    store.add(m)
    store.object_path(m.id).unlink()
    assert any(f"missing object {m.id}" in p for p in store.verify())


def test_a_clean_store_verifies(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.add(manifest())
    store.add(manifest("13"))
    assert store.verify() == []


WRITER = """
import sys
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    m = Manifest.create({"os": {"n": sys.argv[2], "i": i}}, {"software": ["os"], "platform": []},
                        observed={"time": str(i)})
    store.add(m)
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store(root).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(n), "15"]) for n in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    store = Store(root)
    assert len(store.snapshots()) == 90
    assert store.verify() == []
