"""envcap fleet: groups, clusters, outliers and reports over many snapshots."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import H200_TREE
from test_diff import assert_clean_error, envcap

from envcap.capture.collect import snapshot
from envcap.compare.fleet import Loader, analyze, load_fleet
from envcap.compare.html import render_html
from envcap.core.errors import ManifestError
from envcap.core.manifest import Manifest
from envcap.store.embedded import Store


@pytest.fixture(scope="module")
def base() -> Manifest:
    # The H200 fixture tree reads the same wherever the tests run.
    return snapshot(root=str(H200_TREE))


_cache: dict[tuple[str, str], Manifest] = {}


def node(base: Manifest, host: str, cluster: str | None, *, env: str = "base", platform: str = "base",
         time: str = "2026-11-01T00:00:00+00:00") -> Manifest:
    """A snapshot of HOST: BASE with the planted ENV and PLATFORM variations."""
    key = (env, platform)
    if key not in _cache or _cache[key].layers != base.layers:
        sections = copy.deepcopy(dict(base.sections))
        ENVS[env](sections)
        PLATFORMS[platform](sections)
        _cache[key] = Manifest.create(sections, {k: list(v) for k, v in base.layers.items()})
    m = _cache[key]
    return Manifest.create(dict(m.sections), {k: list(v) for k, v in m.layers.items()},
                           observed={**base.observed, "hostname": host, "time": time},
                           labels={"cluster": cluster} if cluster else {})


def _numpy(s: dict[str, Any]) -> None:
    next(p for p in s["python"]["packages"] if p["name"] == "numpy")["version"] = "1.26.4"


def _numpy_and_extra(s: dict[str, Any]) -> None:
    _numpy(s)
    s["python"]["packages"].append({"name": "zz-extra", "version": "1.0", "installer": "pip",
                                    "requested": True, "origin": {"kind": "index"}})


ENVS: dict[str, Callable[[dict[str, Any]], None]] = {
    "base": lambda s: None,
    "numpy": _numpy,
    "numpy+extra": _numpy_and_extra,
}
PLATFORMS: dict[str, Callable[[dict[str, Any]], None]] = {
    "base": lambda s: None,
    "driver": lambda s: s["gpu"].update(driver_version="550.54.15"),
}


def write_all(directory: Path, manifests: list[Manifest]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for m in manifests:
        (directory / f"{m.observed['hostname']}.json").write_text(m.to_json())
    return directory


def planted_fleet(base: Manifest) -> list[Manifest]:
    """Cluster a: 6 nodes, a-5 on another environment. Cluster b: 5 nodes, b-2 on another
    GPU driver. Cluster c: one node, alone in its environment."""
    nodes = [node(base, f"a-{i}", "a", env="numpy" if i == 5 else "base") for i in range(6)]
    nodes += [node(base, f"b-{i}", "b", env="numpy", platform="driver" if i == 2 else "base") for i in range(5)]
    nodes += [node(base, "c-0", "c", env="numpy+extra")]
    return nodes


def test_planted_outliers_are_reported_and_nothing_else(base: Manifest, tmp_path: Path) -> None:
    fleet = load_fleet([write_all(tmp_path / "fleet", planted_fleet(base))])
    assert (fleet.rejected, len(fleet.nodes)) == ([], 12)
    report = analyze(fleet)
    assert sorted((o.node.name, o.layer, o.cluster) for o in report.outliers) == [
        ("a-5", "software", "a"), ("b-2", "platform", "b"),
    ]
    a5 = next(o for o in report.outliers if o.node.name == "a-5")
    changes = report.comparison("software", a5.majority, a5.group).changes
    assert [(c.section, c.package, c.before["version"], c.after["version"], c.sensitive) for c in changes] == [
        ("python", "numpy", "2.5.2", "1.26.4", "numerical library"),
    ]
    b2 = next(o for o in report.outliers if o.node.name == "b-2")
    changes = report.comparison("platform", b2.majority, b2.group).changes
    assert [(c.layer, c.section, c.path, c.before, c.after, c.sensitive) for c in changes] == [
        ("platform", "gpu", "driver_version", "580.159.04", "550.54.15", "GPU driver"),
    ]


def test_groups_are_named_counted_and_placed_in_clusters(base: Manifest, tmp_path: Path) -> None:
    report = analyze(load_fleet([write_all(tmp_path / "fleet", planted_fleet(base))]))
    envs = report.groups["software"]
    assert [(g.name, g.nodes, dict(g.clusters)) for g in envs] == [
        ("E1", 6, {"a": 1, "b": 5}), ("E2", 5, {"a": 5}), ("E3", 1, {"c": 1}),
    ]
    assert [(g.name, g.nodes) for g in report.groups["platform"]] == [("P1", 11), ("P2", 1)]
    clusters = {c.name: c for c in report.clusters}
    assert dict(clusters["a"].groups["software"]) == {"E2": 5, "E1": 1}
    assert clusters["a"].majority == {"software": "E2", "platform": "P1"}
    assert clusters["c"].majority == {"software": "E3", "platform": "P1"}
    # Between groups: E3 (numpy + an extra package) is nearest to E1 (numpy), by one package.
    links = {(k.layer, k.group): k.nearest for k in report.links}
    assert links == {("software", "E2"): "E1", ("software", "E3"): "E1", ("platform", "P2"): "P1"}
    e3 = report.comparison("software", "E1", "E3").changes
    assert [(c.package, c.kind) for c in e3] == [("zz-extra", "added")]


def test_identical_nodes_with_other_hostnames_and_times_are_one_group(base: Manifest, tmp_path: Path) -> None:
    nodes = [node(base, f"n-{i}", "a", time=f"2026-11-0{i + 1}T0{i}:00:00+00:00") for i in range(4)]
    assert len({m.observed["hostname"] for m in nodes}) == 4 and len({m.id for m in nodes}) == 1
    report = analyze(load_fleet([write_all(tmp_path / "fleet", nodes)]))
    assert [(g.nodes, g.name) for g in report.groups["software"]] == [(4, "E1")]
    assert [(g.nodes, g.name) for g in report.groups["platform"]] == [(4, "P1")]
    assert report.outliers == () and report.links == ()


def test_a_cluster_split_evenly_has_no_majority_and_no_outliers(base: Manifest, tmp_path: Path) -> None:
    nodes = [node(base, f"n-{i}", "a", env="numpy" if i % 2 else "base") for i in range(4)]
    report = analyze(load_fleet([write_all(tmp_path / "fleet", nodes)]))
    assert report.clusters[0].majority["software"] is None
    assert report.outliers == ()


def test_cluster_label_is_configurable_and_unlabelled_nodes_group_together(base: Manifest, tmp_path: Path) -> None:
    nodes = [node(base, f"n-{i}", None, env="numpy" if i == 0 else "base") for i in range(3)]
    fleet = load_fleet([write_all(tmp_path / "fleet", nodes)])
    report = analyze(fleet, cluster_label="rack")
    assert [c.name for c in report.clusters] == [""]
    assert [(o.node.name, o.layer) for o in report.outliers] == [("n-0", "software")]


# -- validation of every input, cheaply --------------------------------------------------


def test_each_distinct_manifest_is_hashed_once(base: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_all(tmp_path / "fleet", planted_fleet(base))
    calls: list[str] = []
    original = Manifest.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Manifest], text: Any, *, source: str = "manifest") -> Manifest:
        calls.append(source)
        return original(cls, text, source=source)  # type: ignore[no-any-return]

    monkeypatch.setattr(Manifest, "from_json", classmethod(counting))
    fleet = load_fleet([directory])
    assert len(fleet.nodes) == 12
    assert len(calls) == len({m.id for m in planted_fleet(base)}) == 4


def tamper_cases(text: str) -> dict[str, str]:
    """Ways to change a manifest file without changing its recorded ids."""
    data = json.loads(text)
    cases = {
        "section value": text.replace('"driver_version": "580.159.04"', '"driver_version": "580.159.05"'),
        "one byte deep inside": text.replace('"version": "2.5.2"', '"version": "2.5.3"', 1),
        "recorded env_id": text.replace(data["env_id"], "sha256:" + "0" * 64),
        "layers": json.dumps({**data, "layers": {"software": data["layers"]["software"] + ["gpu"],
                                                 "platform": [n for n in data["layers"]["platform"] if n != "gpu"]}},
                             indent=2, sort_keys=True),
        "observed not an object": text.replace('"observed": {', '"observed": [{', 1).replace(
            '\n  },\n  "platform_id"', '\n  }],\n  "platform_id"', 1),
        "label not a string": text.replace('"labels": {\n    "cluster": "a"\n  }', '"labels": {"cluster": 7}'),
        "unknown schema": text.replace('"schema_version": "1.', '"schema_version": "9.'),
        "trailing garbage": text + "}",
        "truncated": text[: len(text) // 2],
    }
    # A second "sections" key: a parser keeps the last one, so a scanner that stopped at
    # the first (verified) one would be fooled.
    tampered = json.loads(cases["section value"])["sections"]
    cases["duplicate sections key"] = text.rstrip()[:-1].rstrip() + ',\n  "sections": ' + json.dumps(tampered) + "\n}"
    for name, case in cases.items():
        assert case != text, name
    return cases


@pytest.mark.parametrize("case", [
    "section value", "one byte deep inside", "recorded env_id", "layers", "observed not an object",
    "label not a string", "unknown schema", "trailing garbage", "truncated", "duplicate sections key",
])
def test_a_tampered_copy_of_a_verified_manifest_is_rejected(base: Manifest, tmp_path: Path, case: str) -> None:
    good = node(base, "n-0", "a")
    directory = write_all(tmp_path / "fleet", [good, node(base, "n-1", "a")])
    bad_text = tamper_cases(good.to_json())[case]
    (directory / "zz-bad.json").write_text(bad_text)  # read after the good ones
    loader = Loader()
    loader.add_paths([directory])
    assert [Path(r.source).name for r in loader.fleet.rejected] == ["zz-bad.json"], case
    assert len(loader.fleet.nodes) == 2
    with pytest.raises(Exception) as ordinary:
        Manifest.from_json(bad_text, source=str(directory / "zz-bad.json"))
    assert loader.fleet.rejected[0].error == str(ordinary.value)


def test_a_copy_formatted_differently_is_accepted(base: Manifest, tmp_path: Path) -> None:
    m = node(base, "n-0", "a")
    directory = write_all(tmp_path / "fleet", [m])
    (directory / "compact.json").write_text(json.dumps(m.to_dict(), separators=(",", ":")))
    (directory / "reordered.json").write_text(json.dumps(dict(reversed(list(m.to_dict().items())))))
    fleet = load_fleet([directory], every_snapshot=True)
    assert fleet.rejected == [] and [n.id for n in fleet.nodes] == [m.id] * 3


# -- the store ---------------------------------------------------------------------------


def test_the_store_is_the_default_input_and_each_host_counts_once(base: Manifest) -> None:
    with Store() as store:
        for m in planted_fleet(base):
            store.add(m)
        store.add(node(base, "a-5", "a", time="2026-12-01T00:00:00+00:00"))  # a-5 was fixed later
    with Store() as store:
        fleet = load_fleet(store=store)
    assert (fleet.snapshots, fleet.superseded, len(fleet.nodes), fleet.rejected) == (13, 1, 12, [])
    report = analyze(fleet)
    assert [(o.node.name, o.layer) for o in report.outliers] == [("b-2", "platform")]
    with Store() as store:
        every = analyze(load_fleet(store=store, every_snapshot=True))
    assert sorted(o.node.name for o in every.outliers) == ["a-5", "b-2"]
    proc = envcap("fleet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [o["node"] for o in json.loads(proc.stdout)["outliers"]] == ["b-2"]


def test_the_store_fleet_is_read_from_what_the_store_verified(base: Manifest, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No stored manifest is walked and hashed again (the store did that when it put it),
    and the report is the one the same manifests give as files."""
    nodes = planted_fleet(base)
    with Store() as store:
        for m in nodes:
            store.add(m)
    from envcap.core import manifest as manifest_module, structure

    walked: list[str] = []
    hashed: list[int] = []
    check, compute = structure.check, manifest_module.compute_ids
    monkeypatch.setattr(structure, "check", lambda data, source, **kw: walked.append(source) or check(data, source, **kw))
    monkeypatch.setattr(manifest_module, "compute_ids", lambda *a, **kw: hashed.append(1) or compute(*a, **kw))
    with Store() as store:
        fleet = load_fleet(store=store)
    assert (walked, hashed, fleet.rejected, len(fleet.nodes)) == ([], [], [], 12)
    assert len(fleet.manifests) == len({m.id for m in nodes})
    for m in nodes:  # each stored manifest is the one that was put, with its body and ids
        got = fleet.manifests[m.id]
        assert (got.env_id, got.platform_id, dict(got.sections), got.body_bytes()) == \
            (m.env_id, m.platform_id, dict(m.sections), m.body_bytes())
    with Store() as store:  # a manifest asked for by id (diff, show) is read the same way
        assert store.get(nodes[-1].id[7:19]).body_bytes() == nodes[-1].body_bytes()
        assert (walked, hashed) == ([], [])
        assert store.verify() == [] and walked, "verify validates every snapshot in full"
    monkeypatch.undo()
    from_files = analyze(load_fleet([write_all(tmp_path / "fleet", nodes)])).to_dict()
    from_store = analyze(fleet).to_dict()
    for report in (from_files, from_store):
        for item in report["outliers"]:
            item.pop("source")
        report.pop("rejected")
    assert from_store == from_files


def test_a_stored_manifest_under_another_identity_rule_is_refused(base: Manifest) -> None:
    """The manifest object names the identity rule its id was computed under; a record
    claiming another schema version for it is refused, not grouped under the wrong rule."""
    from envcap.core.canonical import canonical_bytes, digest

    m = node(base, "n-0", "a")
    with Store() as store:
        store.add(m)
        record = json.loads(store.get_object(store.snapshot_nodes()[0].record))
        record["schema_version"] = "1.0.0"
        forged = store.put_object(canonical_bytes(record))
        assert forged == digest(canonical_bytes(record))
        with pytest.raises(ManifestError, match="identity rule"):
            store.load_snapshot(forged, store.get_object(forged), verified=True)
        with pytest.raises(ManifestError, match="does not match"):
            store.load_snapshot(forged, store.get_object(forged))


def test_a_corrupt_store_record_is_rejected(base: Manifest, isolated: Path) -> None:
    with Store() as store:
        records = [store.add(node(base, f"n-{i}", "a")) for i in range(3)]
        path = store.object_path(records[2])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"n-2"', b'"n-9"'))
    with Store() as store:
        fleet = load_fleet(store=store)
    assert len(fleet.nodes) == 2
    assert len(fleet.rejected) == 1 and "corrupt" in fleet.rejected[0].error
    assert_clean_error(envcap("fleet"), "1 of 3 inputs are not valid manifests", "corrupt")


# -- the command and its reports ---------------------------------------------------------


def test_fleet_command_json_and_html(base: Manifest, tmp_path: Path) -> None:
    nodes = planted_fleet(base) + [node(base, "x-0", "<script>alert(1)</script>")]
    directory = write_all(tmp_path / "fleet", nodes)
    html = tmp_path / "report.html"
    proc = envcap("fleet", str(directory), "--json", "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["nodes"] == 13
    assert sorted((o["node"], o["layer"]) for o in data["outliers"]) == [("a-5", "software"), ("b-2", "platform")]
    pairs = {(c["layer"], c["a"], c["b"]) for c in data["comparisons"]}
    assert ("software", "E1", "E2") in pairs or ("software", "E2", "E1") in pairs
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<script|<link|<img|src=|href=|url\(|@import", page, re.IGNORECASE)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    matrix = page.split('<table class="matrix">')[1].split("</table>")[0]
    assert all(f"<th>{c}</th>" in matrix for c in ("a", "b", "c"))
    assert '<td class="major">5</td>' in matrix and '<td class="minor">1</td>' in matrix
    proc = envcap("fleet", str(directory), "--check")
    assert proc.returncode == 1
    assert "a-5" in proc.stdout and "b-2" in proc.stdout and "Outliers" in proc.stdout


def test_html_is_rendered_from_the_report_alone(base: Manifest, tmp_path: Path) -> None:
    report = analyze(load_fleet([write_all(tmp_path / "fleet", planted_fleet(base))]))
    page = render_html(report)
    assert "numpy 2.5.2 → 1.26.4" in page and "gpu.driver_version: 580.159.04 → 550.54.15" in page


def test_a_corrupt_file_in_a_fleet_is_a_clear_error(base: Manifest, tmp_path: Path) -> None:
    directory = write_all(tmp_path / "fleet", planted_fleet(base))
    (directory / "broken.json").write_text('{"schema_version": "1.0.0", "id": ')
    (directory / "future.json").write_text(node(base, "f-0", "a").to_json().replace('"schema_version": "1.',
                                                                                    '"schema_version": "2.'))
    proc = envcap("fleet", str(directory))
    assert_clean_error(proc, "2 of 14 inputs are not valid manifests", "broken.json", "not valid JSON",
                       "future.json", "schema version 2.")
    proc = envcap("fleet", str(directory), "--skip-invalid", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["nodes"] == 12 and sorted(Path(r["source"]).name for r in data["rejected"]) == [
        "broken.json", "future.json"]


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    assert_clean_error(envcap("fleet", str(tmp_path / "nope")), "no such file or directory")
    (tmp_path / "empty").mkdir()
    assert_clean_error(envcap("fleet", str(tmp_path / "empty")), "no manifest files")
    assert_clean_error(envcap("fleet"), "no envcap store")


# -- node labels, names, and what separates the groups of one cluster ------------------------


def test_a_nodes_labels_stick_to_every_snapshot_it_takes_runs_included(isolated: Path, tmp_path: Path) -> None:
    import sys

    proc = envcap("config", "set", "label.cluster", "a")
    assert proc.returncode == 0, proc.stderr
    assert envcap("config", "get", "label.cluster").stdout.strip() == "a"
    assert envcap("snapshot").returncode == 0
    for extra in ([], ["--label", "rack=r7"]):
        ran = envcap("run", *extra, "--", sys.executable, "-c", "pass")
        assert ran.returncode == 0, ran.stderr
    with Store() as store:
        labels = [row.labels for row in store.snapshots()]
    assert len(labels) == 3 and all(lab.get("cluster") == "a" for lab in labels), labels
    assert sum("run" in lab for lab in labels) == 2 and sum(lab.get("rack") == "r7" for lab in labels) == 1
    # The host's newest snapshot is a run's, and the fleet still knows its cluster.
    report = json.loads(envcap("fleet", "--json").stdout)
    assert [c["name"] for c in report["clusters"]] == ["a"]
    assert report["superseded"] == 2
    # A label given on the command line wins over the node's own. (The new snapshot is
    # found by its record, not by its place: snapshot times have whole seconds, and two
    # taken in the same second sort by their ids.)
    with Store() as store:
        before = {row.record for row in store.snapshots()}
    assert envcap("snapshot", "--label", "cluster=b").returncode == 0
    with Store() as store:
        [new] = [row for row in store.snapshots() if row.record not in before]
    assert new.labels["cluster"] == "b"


def test_a_split_cluster_names_its_nodes_and_what_separates_them(base: Manifest, tmp_path: Path) -> None:
    nodes = [node(base, "n-1", "a"), node(base, "n-2", "a", env="numpy+extra")]
    directory = write_all(tmp_path / "fleet", nodes)
    html = tmp_path / "report.html"
    text = envcap("fleet", str(directory), "--html", str(html))
    assert text.returncode == 0, text.stderr
    out = " ".join(text.stdout.split())
    assert "n-1" in out and "n-2" in out
    assert "Split clusters" in out and "zz-extra 1.0" in out
    page = html.read_text()
    split = page.split("Split clusters")[1]
    assert "<li>n-1</li>" in split and "<li>n-2</li>" in split and "zz-extra" in split
    data = json.loads(envcap("fleet", str(directory), "--json").stdout)
    assert sorted(g["members"] for g in data["layers"]["software"]) == [["n-1"], ["n-2"]]
    (split_row,) = data["splits"]
    assert sorted([split_row["nodes_a"], split_row["nodes_b"]]) == [["n-1"], ["n-2"]]
    assert any("zz-extra" in line for line in split_row["differs"])


def test_outlier_rows_say_what_differs(base: Manifest, tmp_path: Path) -> None:
    data = json.loads(envcap("fleet", str(write_all(tmp_path / "fleet", planted_fleet(base))), "--json").stdout)
    rows = {o["node"]: o for o in data["outliers"]}
    assert any("numpy" in line for line in rows["a-5"]["differs"])
    assert any("driver_version" in line for line in rows["b-2"]["differs"])
