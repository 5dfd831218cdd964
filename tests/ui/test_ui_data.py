"""The ui's read model and pages over real recorded runs and synthetic records:
filtering agrees with ``envcap runs --where``, paging reads the index, escaping holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ui_support import cli_runs, experiment_records, synthetic_record, write_numpy_pair, write_synthetic
from ui_support import client_for, recorded  # noqa: F401  (fixtures)


def test_runs_api_lists_recorded_runs_newest_first(recorded, client_for) -> None:
    body = client_for(recorded["home"]).get("/api/runs").json()
    assert body["total"] == 3
    assert [r["id"] for r in body["runs"]] == list(reversed(recorded["ids"]))
    first = body["runs"][-1]
    assert first["params"] == {"batch": 32, "lr": 0.1, "optimizer": "sgd"}
    assert first["metrics"]["acc"] == 0.6
    assert set(body["columns"]["params"]) == {"batch", "lr", "optimizer"}


@pytest.mark.parametrize("where,sort", [
    (["params.lr>0.15"], "metrics.acc"),
    (["params.optimizer=adam", "metrics.acc>=0.7"], None),
    (["command~train"], "-params.lr"),
    (["labels.experiment=demo"], "-metrics.loss"),
    ([], "params.batch"),
])
def test_filter_and_sort_agree_with_envcap_runs(recorded, client_for, where, sort) -> None:
    args = [a for w in where for a in ("--where", w)] + (["--sort", sort] if sort else [])
    expected = [v["id"] for v in cli_runs(recorded["home"], *args)]
    query = [("where", w) for w in where] + ([("sort", sort)] if sort else [("sort", "started_at")])
    got = [r["id"] for r in client_for(recorded["home"]).get("/api/runs", params=query).json()["runs"]]
    assert got == expected


def test_bad_condition_is_a_400_with_the_grammar_error(recorded, client_for) -> None:
    c = client_for(recorded["home"])
    r = c.get("/api/runs", params={"where": "params.lr>>1"})
    assert r.status_code == 400
    assert "two operators in a row" in r.json()["error"]
    page = c.get("/", params={"where": "lr"})
    assert page.status_code == 400 and "FIELD OP VALUE" in page.text


def test_paging_by_index_and_by_catalog_cover_every_run_once(tmp_path: Path, client_for) -> None:
    records = experiment_records(230)
    write_synthetic(tmp_path, records)
    c = client_for(tmp_path)
    for sort in ("-started_at", "metrics.score"):  # the index's path, then the in-memory one
        seen = []
        offset = 0
        while True:
            body = c.get("/api/runs", params={"sort": sort, "offset": offset, "limit": 100}).json()
            assert body["total"] == 230
            seen += [r["id"] for r in body["runs"]]
            offset += 100
            if offset >= body["total"]:
                break
        assert sorted(seen) == sorted(r.id for r in records) and len(seen) == 230
    newest = c.get("/api/runs", params={"limit": 1}).json()["runs"][0]["id"]
    assert newest == max(r.id for r in records)
    best = c.get("/api/runs", params={"sort": "-metrics.score", "limit": 1}).json()["runs"][0]
    assert best["metrics"]["score"] == max(r.metrics["score"] for r in records)


def test_catalog_sees_a_run_added_after_the_first_request(tmp_path: Path, client_for) -> None:
    write_synthetic(tmp_path, experiment_records(5))
    c = client_for(tmp_path)
    assert c.get("/api/runs", params={"where": "metrics.score>-1000"}).json()["total"] == 5
    write_synthetic(tmp_path, [synthetic_record(99, {"lr": 5.0}, {"score": 1e6}, start_ms=1_800_000_000_000)])
    body = c.get("/api/runs", params={"where": "metrics.score>1000"}).json()
    assert body["total"] == 1 and body["runs"][0]["params"] == {"lr": 5.0}


def test_run_page_shows_environment_params_curves_and_notes(recorded, client_for) -> None:
    c = client_for(recorded["home"])
    run_id = recorded["ids"][1]
    body = c.get(f"/api/runs/{run_id[:10]}").json()
    assert body["run"]["id"] == run_id
    assert [n["text"] for n in body["run"]["notes"]] == ["best so far"]
    assert [p[0] for p in body["curves"]["loss"]] == list(range(8))
    assert body["environment"]["env_id"] == body["run"]["env_id"]
    assert body["resources"]["duration_s"] == body["run"]["duration_s"]
    page = c.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "best so far" in page.text and body["environment"]["id"] in page.text
    manifest = c.get(f"/api/manifests/{body['environment']['id']}").json()
    assert manifest["env_id"] == body["run"]["env_id"]
    assert c.get("/api/runs/ZZZZZZZZ").status_code == 404


def test_compare_lines_up_params_and_marks_what_differs(recorded, client_for) -> None:
    a, b, _ = recorded["ids"]
    body = client_for(recorded["home"]).get("/api/compare", params=[("run", a), ("run", b)]).json()
    params = {row["name"]: row for row in body["params"]}
    assert params["lr"]["values"] == [0.1, 0.3] and params["lr"]["differs"]
    assert set(body["curves"]) == {"loss", "acc"}
    assert [s["run"] for s in body["curves"]["loss"]] == [a, b]
    env = body["environment"][0]
    assert env["available"] and env["identical"] is True  # the same interpreter recorded both
    assert client_for(recorded["home"]).get("/api/compare", params={"run": a}).status_code == 400


def test_compare_marks_numerically_sensitive_environment_changes(tmp_path: Path, client_for) -> None:
    """Two runs whose manifests differ in numpy's version: the change is marked sensitive."""
    r1, r2 = write_numpy_pair(tmp_path)
    c = client_for(tmp_path)
    env = c.get("/api/compare", params=[("run", r1), ("run", r2)]).json()["environment"][0]
    assert env["identical"] is False and env["sensitive"] >= 1
    numpy = [ch for ch in env["changes"] if ch["package"] and "numpy" in ch["package"]]
    assert numpy and numpy[0]["sensitive"]
    page = c.get("/compare", params=[("run", r1), ("run", r2)]).text
    assert re.search(r'<tr class="sensitive">.*numpy', page)


def test_resources_are_read_when_the_record_has_them() -> None:
    from envcap.ui.data import resources

    view = {"duration_s": 2.5, "resources": {"cpu_user_s": 1.5, "peak_rss_mib": 812, "gpu": {"energy_j": 40.0},
                                             "note": "text is left out"}}
    assert resources(view) == {"duration_s": 2.5, "resources.cpu_user_s": 1.5, "resources.peak_rss_mib": 812,
                               "resources.gpu.energy_j": 40.0}
    assert resources({"duration_s": None}) == {}
    # What envcap run records: one summary per GPU, their memory and energy added up.
    devices = {"duration_s": 3.0, "resources": {"cpu_s": 2.0, "gpu": [
        {"index": 0, "peak_memory_mib": 1000.0, "energy_j": 50.0, "peak_util_pct": 90},
        {"index": 1, "peak_memory_mib": 500.0, "energy_j": 25.5, "peak_util_pct": 40}]}}
    assert resources(devices) == {"duration_s": 3.0, "resources.cpu_s": 2.0, "resources.gpu.peak_memory_mib": 1500.0,
                                  "resources.gpu.energy_j": 75.5}


def test_every_page_has_the_strict_policy_and_escapes(tmp_path: Path, client_for) -> None:
    evil = '<script>alert(1)</script>"\''
    write_synthetic(tmp_path, [synthetic_record(0, {evil: evil}, {evil: 1.0}, start_ms=1_760_000_000_000,
                                                command=f"python {evil}")], notes={0: evil})
    c = client_for(tmp_path)
    run_id = c.get("/api/runs").json()["runs"][0]["id"]
    for path in ("/", f"/runs/{run_id}", "/experiment", "/fleet", "/api/runs"):
        r = c.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        if path.startswith("/api/"):
            assert r.headers["content-type"] == "application/json"
        else:
            assert "<script>alert(1)" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;" in c.get(f"/runs/{run_id}").text


def test_fleet_matrix_and_outliers_agree_with_envcap_fleet(tmp_path: Path, client_for) -> None:
    """Cluster a: two nodes on one environment, one on another (the outlier); cluster b:
    two nodes on the other one. The matrix counts what ``envcap fleet --json`` counts."""
    from envcap.capture.collect import snapshot
    from envcap.core.manifest import Manifest
    from envcap.store.embedded import Store

    base = snapshot(root=str(Path(__file__).parents[1] / "testdata" / "gpu-h200-ubuntu24" / "fstree"))
    layers = {k: list(v) for k, v in base.layers.items()}
    upgraded = dict(base.sections)
    python = dict(upgraded["python"])
    python["packages"] = [dict(p, version="1.26.4") if p["name"] == "numpy" else p for p in python["packages"]]
    upgraded["python"] = python
    plan = [("a1", "a", base.sections), ("a2", "a", base.sections), ("a3", "a", upgraded),
            ("b1", "b", upgraded), ("b2", "b", upgraded)]
    with Store(tmp_path) as store:
        for host, cluster, sections in plan:
            store.add(Manifest.create(dict(sections), layers, observed={**base.observed, "hostname": host},
                                      labels={"cluster": cluster}))
    body = client_for(tmp_path).get("/api/fleet").json()
    software = body["matrix"]["software"]
    counts = {c["name"]: {g["name"]: n for g, n in zip(software["groups"], c["counts"]) if n}
              for c in software["clusters"]}
    cli = json.loads(subprocess.run([sys.executable, "-m", "envcap", "fleet", "--json"], capture_output=True,
                                     text=True, check=True, env={**os.environ, "ENVCAP_HOME": str(tmp_path)}).stdout)
    assert counts == {c["name"]: c["groups"]["software"] for c in cli["clusters"]}
    assert sorted(counts["a"].values()) == [1, 2] and list(counts["b"].values()) == [2]
    assert [(o["node"], o["layer"]) for o in body["outliers"]] == [("a3", "software")]
    page = client_for(tmp_path).get("/fleet").text
    assert 'class="num minority"' in page and "a3" in page


def test_run_page_shows_the_uncommitted_diff_of_a_real_repository(tmp_path: Path, client_for) -> None:
    from ui_support import envcap_run

    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    (repo / "train.py").write_text("print('v1')\n")
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    (repo / "train.py").write_text("print('<b>v2</b>')\n")
    home = tmp_path / "home"
    run_id = envcap_run(home, repo, "--", sys.executable, "train.py")
    c = client_for(home)
    body = c.get(f"/api/runs/{run_id}").json()
    assert body["run"]["git"]["dirty"] is True
    assert "+print('<b>v2</b>')" in body["diff_text"]
    page = c.get(f"/runs/{run_id}").text
    assert "+print(&#39;&lt;b&gt;v2&lt;/b&gt;&#39;)" in page and body["run"]["git"]["commit"] in page


def test_a_filtered_page_reads_only_the_records_it_shows(tmp_path: Path, client_for, monkeypatch) -> None:
    """No whole-store cache: the database answers the filter and the sort, and only the
    page's records are read (today's main read every record on the first filtered request)."""
    from envcap.store.embedded import Store

    records = experiment_records(120)
    write_synthetic(tmp_path, records)
    c = client_for(tmp_path)
    reads: list[str] = []
    original = Store.get_object
    monkeypatch.setattr(Store, "get_object", lambda self, oid: (reads.append(oid), original(self, oid))[1])
    body = c.get("/api/runs", params={"where": "metrics.score>-1000", "sort": "-metrics.score", "limit": 10}).json()
    assert body["total"] == 120 and len(body["runs"]) == 10
    assert [r["metrics"]["score"] for r in body["runs"]] == sorted((r.metrics["score"] for r in records),
                                                                    reverse=True)[:10]
    assert len(reads) <= 10
    huge = c.get("/api/runs", params={"offset": "99999999999999999999999"})
    assert huge.status_code == 200 and huge.json()["runs"] == []
    huge = c.get("/api/runs", params={"offset": "99999999999999999999999", "where": "metrics.score>0"})
    assert huge.status_code == 200 and huge.json()["runs"] == []


def test_a_run_whose_record_cannot_be_read_is_listed_as_unreadable(tmp_path: Path, client_for) -> None:
    from envcap.store import runs as runs_store
    from envcap.store.embedded import Store

    records = experiment_records(4)
    write_synthetic(tmp_path, records)
    bad = records[1].id
    with Store(tmp_path) as store:
        path = store.object_path(runs_store.record_id(store, bad))
    path.chmod(0o644)
    path.write_bytes(b"{}")
    c = client_for(tmp_path)
    for params in ({}, {"sort": "-metrics.score"}, {"where": "id~0"}):
        body = c.get("/api/runs", params=params).json()
        assert body["total"] == 4, params
        assert {r["id"]: r["status"] for r in body["runs"]}[bad] == "unreadable"
    assert [v["status"] for v in cli_runs(tmp_path) if v["id"] == bad] == ["unreadable"]
    assert c.get(f"/api/runs/{bad}").status_code == 500
    assert "corrupt" in c.get(f"/runs/{bad}").text


def test_a_run_page_shows_its_own_snapshot_not_another_runs(recorded, client_for) -> None:
    # The three runs share one manifest; each took a snapshot of its own, labelled with it.
    c = client_for(recorded["home"])
    first, *_, last = recorded["ids"]
    views = [c.get(f"/api/runs/{i}").json()["run"] for i in recorded["ids"]]
    assert len({v["manifest"] for v in views}) == 1
    page = c.get(f"/runs/{first}").text
    assert f"run={first}" in page and f"run={last}" not in page
    assert c.get(f"/api/manifests/{first}").json()["labels"]["run"] == first
