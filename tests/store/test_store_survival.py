"""Many writers on many nodes at once into one shared store: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.store.postgres import PostgresStore

psycopg = pytest.importorskip("psycopg")

# One writer process: NODE's environment (a few manifests the node's four writers share),
# SNAPSHOTS snapshots and RUNS runs, each naming what it wrote on standard output.
WRITER = r"""
import json, sys
from envcap.core.manifest import Manifest
from envcap.core.run import FINISHED, RunRecord, new_run_id
from envcap.store import runs
from envcap.store.factory import open_store

url, node, proc, n_snap, n_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host = f"node-{node}"
written = {"snapshots": [], "manifests": [], "runs": [], "objects": []}
with open_store(url, create=True) as store:
    for i in range(n_snap):
        m = Manifest.create({"os": {"id": "debian", "node": node, "variant": i % 5}, "cpu": {"model": f"cpu-{node}"}},
                            {"software": ["os"], "platform": ["cpu"]},
                            observed={"hostname": host, "time": f"2026-12-01T{proc:02d}:{i // 60:02d}:{i % 60:02d}+00:00"},
                            labels={"cluster": f"c{node % 2}", "node": host, "writer": str(proc)})
        written["snapshots"].append(store.add(m))
        written["manifests"].append(m.id)
    for i in range(n_runs):
        log = f"loss {i}\n".encode()  # The same bytes on every writer: one object.
        oid = store.put_object(log)
        written["objects"].append(oid)
        record = RunRecord(id=new_run_id(), state=FINISHED, mode="cli", argv=("train",), command="train", cwd="/w",
                           host=host, started_at="2026-12-01T00:00:00.000Z", ended_at="2026-12-01T00:00:01.000Z",
                           exit_code=0, labels={"node": host}, manifest=written["manifests"][i],
                           snapshot=written["snapshots"][i], metrics={"loss": float(i)},
                           metrics_log={"object": oid, "points": 1})
        written["objects"].append(runs.put_record(store, record, objects=[(oid, len(log), "run-metrics")]))
        written["runs"].append(record.id)
print(json.dumps(written))
"""

NODES, PER_NODE, SNAPSHOTS, RUNS = 4, 4, 250, 20


@pytest.mark.slow
def test_sixteen_writers_on_four_nodes_lose_nothing_and_duplicate_nothing(pg_url: str, tmp_path: Path) -> None:
    PostgresStore(pg_url, create=True).close()
    procs = []
    for node in range(NODES):
        for k in range(PER_NODE):
            # Each "node" is its own processes with its own hostname and labels (and HOME).
            home = tmp_path / f"node-{node}-{k}"
            env = {**os.environ, "ENVCAP_HOME": str(home), "HOSTNAME": f"node-{node}"}
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WRITER, pg_url, str(node), str(node * PER_NODE + k), str(SNAPSHOTS), str(RUNS)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    snapshots = [s for r in results for s in r["snapshots"]]
    run_ids = [i for r in results for i in r["runs"]]
    manifests = {m for r in results for m in r["manifests"]}
    objects = {o for r in results for o in r["objects"]}
    assert len(snapshots) == len(set(snapshots)) == NODES * PER_NODE * SNAPSHOTS
    assert len(manifests) == NODES * 5
    with PostgresStore(pg_url) as store:
        rows = store.snapshots()
        assert len(rows) == len(snapshots) and {r.record for r in rows} == set(snapshots)  # 0 lost
        assert {r.hostname for r in rows} == {f"node-{n}" for n in range(NODES)}
        from envcap.store import runs

        assert sorted(runs.all_ids(store)) == sorted(run_ids)
        # Every id readable: each snapshot and each run, re-hashed on the way.
        for record in snapshots[:: 7]:
            assert store.get(record).observed["hostname"].startswith("node-")
        for run_id in run_ids:
            assert runs.load(store, run_id).exit_code == 0
        assert store.verify() == []
        counts = store.counts()
    expected_blobs = set(snapshots) | manifests | objects
    with psycopg.connect(pg_url) as conn:
        blobs = conn.execute("SELECT count(*), count(DISTINCT id) FROM blobs").fetchone()
        index = conn.execute("SELECT count(*), count(DISTINCT id) FROM objects").fetchone()
        stray = conn.execute("SELECT count(*) FROM blobs b LEFT JOIN objects o ON o.id = b.id "
                             "WHERE o.id IS NULL").fetchone()[0]
    assert blobs == (len(expected_blobs), len(expected_blobs))  # 0 duplicated objects
    assert index == blobs and stray == 0
    assert counts["manifests"] == len(manifests) and counts["runs"] == len(run_ids)
