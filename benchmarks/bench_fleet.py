"""Fleet speed and memory: ingest, group and report a synthetic fleet of real manifests.

The fleet is made from two real manifests, this machine's (a live snapshot) and the H200
fixture's (``--root tests/testdata/gpu-h200-ubuntu24/fstree``), with planted variations:
about 50 distinct environments (package upgrades, an extra package, an environment
variable) and 10 platforms (kernel, driver, memory) across 5 clusters. Each cluster has a
majority environment and platform; about 2 % of its nodes run another environment and
1 % another platform. Every node is one manifest file as ``envcap snapshot -o`` writes it,
with its own hostname and time.

For each fleet size (default 1,000, 2,500, 5,000 and 10,000 snapshots) a fresh child
process loads the files (validating each), groups them and renders the JSON, HTML and
terminal reports; it reports the time of each phase, and the parent its peak RSS (from
wait4). The report must name exactly the planted outliers, or the benchmark fails.

    python benchmarks/bench_fleet.py [--sizes 1000,2500,5000,10000] [--base FILE --base FILE]

With ``--store``, each size is also added to an embedded store (kept under ``--keep``
when given, so a second run reuses it) and measured as ``envcap fleet --store`` reads
it: from the snapshots the store verified when they were put. The report must be the
one the files give. The whole command, ``envcap fleet --store --json``, is timed too
(CPU time of the child, by wait4) beside ``envcap --help`` in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
H200_TREE = ROOT / "tests" / "testdata" / "gpu-h200-ubuntu24" / "fstree"
CLUSTERS = 5
ENVS_PER_BASE = 25
PLATFORMS_PER_BASE = 5
TARGET_S = 5.0
TARGET_MIB = 500


# -- making the fleet --------------------------------------------------------------------


def base_manifests(paths: list[str]) -> list[Any]:
    """The two real manifests the fleet is made from: given files, or fresh snapshots."""
    from envcap.capture.collect import snapshot
    from envcap.store.embedded import load_manifest

    if paths:
        return [load_manifest(p) for p in paths]
    return [snapshot(), snapshot(root=str(H200_TREE))]


def software_variants(base: Any, count: int, rng: random.Random, tag: str) -> list[dict[str, Any]]:
    """COUNT distinct software layers from BASE: the base itself, then planted changes."""
    sections = {n: base.sections[n] for n in base.layers["software"]}
    out = [sections]
    packages = (sections.get("python") or {}).get("packages") or []
    for k in range(1, count):
        variant = json.loads(json.dumps(sections))
        py = variant.get("python")
        if py and packages:
            i = rng.randrange(len(packages))
            py["packages"][i] = dict(py["packages"][i], version=py["packages"][i]["version"] + f".post{k}")
            if k % 3 == 0:
                py["packages"].append({"name": f"extra-{tag}-{k}", "version": "1.0", "installer": "pip",
                                       "requested": True, "origin": {"kind": "index"}})
                py["packages"].sort(key=lambda p: p["name"])
        else:
            variant.setdefault("environment", {"variables": {}})
        if k % 4 == 0:
            env = variant.setdefault("environment", {"variables": {}})
            env.setdefault("variables", {})["OMP_NUM_THREADS"] = str(k)
        out.append(variant)
    return out


def platform_variants(base: Any, count: int) -> list[dict[str, Any]]:
    sections = {n: base.sections[n] for n in base.layers["platform"]}
    out = [sections]
    for k in range(1, count):
        variant = json.loads(json.dumps(sections))
        if k % 2 and "kernel" in variant:
            variant["kernel"]["release"] = f"{variant['kernel']['release']}-p{k}"
        elif "gpu" in variant:
            variant["gpu"]["driver_version"] = f"580.{k}.01"
        elif "memory" in variant:
            variant["memory"]["total_gib"] = (variant["memory"].get("total_gib") or 0) + k
        else:
            variant[f"synthetic{k}"] = {"k": k}
        out.append(variant)
    return out


def plan(n: int, envs: list[list[int]], platforms: list[list[int]], seed: int = 7) -> list[dict[str, Any]]:
    """Which environment and platform each node runs, with the planted outliers.

    ``envs[b]``/``platforms[b]`` are the indices built from base b. Clusters 0-2 are made
    of base 0, clusters 3-4 of base 1; cluster c's majority is the c-th of its base's lists.
    """
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        cluster = i % CLUSTERS
        b = 0 if cluster < 3 else 1
        local = cluster if b == 0 else cluster - 3
        env, plat = envs[b][local], platforms[b][local % len(platforms[b])]
        env_outlier = plat_outlier = False
        r = rng.random()
        if r < 0.02:
            env = rng.choice([e for e in envs[b] if e != envs[b][local]])
            env_outlier = True
        elif r < 0.03:
            plat = rng.choice([p for p in platforms[b] if p != platforms[b][local % len(platforms[b])]])
            plat_outlier = True
        nodes.append({"host": f"node-{i:05d}", "cluster": f"c{cluster}", "env": env, "platform": plat,
                      "env_outlier": env_outlier, "platform_outlier": plat_outlier})
    return nodes


def write_fleet(directory: Path, n: int, bases: list[Any]) -> list[dict[str, Any]]:
    """Write N manifest files into DIRECTORY; return the plan (who was planted where)."""
    from envcap.core.manifest import Manifest

    rng = random.Random(11)
    softwares: list[dict[str, Any]] = []
    platforms: list[dict[str, Any]] = []
    env_index: list[list[int]] = []
    plat_index: list[list[int]] = []
    for b, base in enumerate(bases):
        s = software_variants(base, ENVS_PER_BASE, rng, f"b{b}")
        p = platform_variants(base, PLATFORMS_PER_BASE)
        env_index.append(list(range(len(softwares), len(softwares) + len(s))))
        plat_index.append(list(range(len(platforms), len(platforms) + len(p))))
        softwares += s
        platforms += p
    nodes = plan(n, env_index, plat_index)
    templates: dict[tuple[int, int], str] = {}
    observed_base = dict(bases[0].observed)
    for node in nodes:
        key = (node["env"], node["platform"])
        if key not in templates:
            sw, pf = softwares[key[0]], platforms[key[1]]
            m = Manifest.create({**sw, **pf}, {"software": list(sw), "platform": list(pf)})
            doc = m.to_dict()
            doc["observed"], doc["labels"] = "@OBSERVED@", "@LABELS@"
            templates[key] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
        observed = dict(observed_base, hostname=node["host"], time=f"2026-11-{1 + int(node['host'][5:]) % 28:02d}T00:00:00+00:00")
        text = templates[key].replace('"@OBSERVED@"', _nested(observed)).replace('"@LABELS@"', _nested({"cluster": node["cluster"]}))
        (directory / f"{node['host']}.json").write_text(text + "\n", encoding="utf-8")
    # The template must write exactly what Manifest.to_json writes.
    from envcap.store.embedded import load_manifest

    first = directory / f"{nodes[0]['host']}.json"
    assert load_manifest(first).to_json() + "\n" == first.read_text(encoding="utf-8")
    return nodes


def _nested(value: Any) -> str:
    """VALUE as json.dumps(indent=2) writes it one level down."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).replace("\n", "\n  ")


# -- measuring ---------------------------------------------------------------------------


def child(directory: str, store_dir: str | None = None) -> int:
    """Load, group and report DIRECTORY (or the store at STORE_DIR); print the phase times as JSON."""
    started = time.perf_counter()
    from rich.console import Console

    from envcap.compare.fleet import analyze, load_fleet, print_report
    from envcap.compare.html import render_html

    imported = time.perf_counter()
    cpu0 = time.process_time()
    if store_dir:
        from envcap.store.embedded import Store

        with Store(store_dir, create=False) as store:
            fleet = load_fleet(store=store)
    else:
        fleet = load_fleet([directory])
    loaded = time.perf_counter()
    load_cpu = time.process_time() - cpu0
    report = analyze(fleet)
    grouped = time.perf_counter()
    as_json = json.dumps(report.to_dict(), indent=2, sort_keys=True)
    json_done = time.perf_counter()
    html = render_html(report)
    html_done = time.perf_counter()
    print_report(report, Console(file=io.StringIO(), width=160))
    done = time.perf_counter()
    print(json.dumps({
        "import_s": imported - started, "ingest_s": loaded - imported, "group_s": grouped - loaded,
        "json_s": json_done - grouped, "html_s": html_done - json_done, "terminal_s": done - html_done,
        "total_s": done - imported, "load_cpu_s": load_cpu, "cpu_s": time.process_time() - cpu0,
        "nodes": report.nodes, "rejected": len(report.rejected),
        "verified_in_full": len(fleet.manifests), "json_bytes": len(as_json), "html_bytes": len(html),
        "environments": len(report.groups["software"]), "platforms": len(report.groups["platform"]),
        "outliers": sorted([o.node.name, o.layer] for o in report.outliers),
    }))
    return 0


def fill_store(store_dir: Path, files: list[Path]) -> None:
    """Add FILES to a fresh embedded store at STORE_DIR, as `envcap snapshot` would put them
    (each manifest validated, its objects written, its index rows in batches)."""
    from envcap.store.embedded import Store, load_manifest

    with Store(store_dir) as store:
        statements: list[Any] = []
        bodies: set[str] = set()
        for i, f in enumerate(files, 1):
            m = load_manifest(f)
            body, record, rows = store.snapshot_parts(m)
            if m.id not in bodies:
                store.put_object(body)
                bodies.add(m.id)
            store.put_object(record)
            statements += rows
            if i % 1000 == 0 or i == len(files):
                store.transaction(statements)
                statements = []


def measure(directory: Path, store_dir: Path | None = None) -> tuple[dict[str, Any], float, float]:
    start = time.perf_counter()
    extra = ["--child-store", str(store_dir)] if store_dir else []
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(directory), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return json.loads(out), wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2500,5000,10000")
    parser.add_argument("--base", action="append", default=[], metavar="FILE",
                        help="a manifest file to build from (twice); default: live and H200 fixture snapshots")
    parser.add_argument("--keep", metavar="DIR", help="write the fleet here and keep it")
    parser.add_argument("--store", action="store_true",
                        help="also measure the fleet read from an embedded store holding the snapshots")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.child_store)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    bases = base_manifests(args.base)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="envcap-fleet-bench-"))
    try:
        all_dir = work / "all"
        all_dir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        nodes = write_fleet(all_dir, sizes[-1], bases)
        size_mib = sum(f.stat().st_size for f in all_dir.iterdir()) / 2**20
        print(f"fleet: {len(nodes)} manifest files ({size_mib:.0f} MiB) from {len(bases)} real manifests, "
              f"written in {time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        rows = []
        for n in sizes:
            subset = work / f"n{n}"
            if not subset.exists():
                subset.mkdir()
                for node in nodes[:n]:
                    os.symlink(all_dir / f"{node['host']}.json", subset / f"{node['host']}.json")
            stats, wall, rss = measure(subset)
            planted = sorted([x["host"], layer] for x in nodes[:n]
                             for layer, flag in (("software", "env_outlier"), ("platform", "platform_outlier")) if x[flag])
            if stats["outliers"] != planted:
                raise SystemExit(f"n={n}: the report's outliers are not the planted ones")
            rows.append((n, stats, wall, rss))
        print(f"{'snapshots':>9} {'ingest':>7} {'group':>6} {'json':>6} {'html':>6} {'term':>6} {'total':>6} "
              f"{'process':>8} {'peak RSS':>9} {'per 1k':>7}  envs plats outliers verified-in-full")
        for n, s, wall, rss in rows:
            print(f"{n:>9} {s['ingest_s']:>6.2f}s {s['group_s']:>5.2f}s {s['json_s']:>5.2f}s {s['html_s']:>5.2f}s "
                  f"{s['terminal_s']:>5.2f}s {s['total_s']:>5.2f}s {wall:>7.2f}s {rss:>6.0f} MiB "
                  f"{s['total_s'] / n * 1000:>6.3f}s  {s['environments']:>4} {s['platforms']:>5} "
                  f"{len(s['outliers']):>8} {s['verified_in_full']:>5}")
        (n0, s0, _, r0), (n1, s1, w1, r1) = rows[0], rows[-1]
        if n1 > n0:
            growth(n0, s0, r0, n1, s1, r1)
        verdict = "OK" if s1["total_s"] <= TARGET_S and r1 <= TARGET_MIB else "OVER TARGET"
        print(f"{n1} snapshots: ingest+group+report {s1['total_s']:.2f} s (target <= {TARGET_S:g} s), "
              f"whole process {w1:.2f} s, peak RSS {r1:.0f} MiB (target <= {TARGET_MIB}): {verdict}")
        if args.store:
            ok = from_store(work, sizes, nodes, all_dir, rows)
            verdict = verdict if ok else "OVER TARGET"
        return 0 if verdict == "OK" else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def from_store(work: Path, sizes: list[int], nodes: list[dict[str, Any]], all_dir: Path,
               file_rows: list[Any]) -> bool:
    """The same fleets read from embedded stores; the whole `envcap fleet --store` command
    beside `envcap --help`, CPU time of each child (median of 3, interleaved)."""
    import statistics

    print(f"\nfrom an embedded store (load = the snapshots read from the store; CPU seconds; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"{'snapshots':>9} {'load cpu':>9} {'all cpu':>8} {'wall':>6} {'peak RSS':>9} {'per 1k':>7}  "
          f"{'command cpu':>11} {'--help cpu':>10} {'ratio':>6}  verified-in-full")
    ok = True
    results = []
    for n, (_, file_stats, _, _) in zip(sizes, file_rows):
        store_dir = work / f"store-n{n}"
        if not (store_dir / "index.sqlite").exists():
            shutil.rmtree(store_dir, ignore_errors=True)
            t = time.perf_counter()
            fill_store(store_dir, [all_dir / f"{node['host']}.json" for node in nodes[:n]])
            print(f"  (store of {n} snapshots filled in {time.perf_counter() - t:.1f} s)")
        stats, wall, rss = measure(work / f"n{n}", store_dir)
        if stats["outliers"] != file_stats["outliers"] or stats["nodes"] != file_stats["nodes"]:
            raise SystemExit(f"n={n}: the store's report is not the files' report")
        env = dict(os.environ, ENVCAP_HOME=str(store_dir))
        command: list[float] = []
        helps: list[float] = []
        for _ in range(3):
            command.append(cpu_of([sys.executable, "-m", "envcap", "fleet", "--json"], env))
            helps.append(cpu_of([sys.executable, "-m", "envcap", "--help"], env))
        c, h = statistics.median(command), statistics.median(helps)
        results.append((n, stats))
        print(f"{n:>9} {stats['load_cpu_s']:>8.2f}s {stats['cpu_s']:>7.2f}s {wall:>5.2f}s {rss:>6.0f} MiB "
              f"{stats['cpu_s'] / n * 1000:>6.3f}s  {c:>10.2f}s {h:>9.2f}s {c / h:>5.1f}x  {stats['verified_in_full']:>5}")
        last = c
    if len(results) > 1:
        (n0, s0), (n1, s1) = results[0], results[-1]
        print(f"growth {n0} -> {n1}: load+report CPU {s1['cpu_s'] / s0['cpu_s']:.1f}x for {n1 / n0:.0f}x the snapshots")
    ok = last <= 1.5
    print(f"{sizes[-1]} snapshots from the store: `envcap fleet --json` (the store) {last:.2f} s CPU (target <= 1.5 s): "
          f"{'OK' if ok else 'OVER TARGET'}")
    return ok


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    """The user+system CPU seconds of one child process (its output discarded)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return usage.ru_utime + usage.ru_stime


def growth(n0: int, s0: dict[str, Any], r0: float, n1: int, s1: dict[str, Any], r1: float) -> None:
    print(f"growth {n0} -> {n1} snapshots ({n1 / n0:.0f}x): time {s1['total_s'] / s0['total_s']:.1f}x, "
              f"peak RSS {r1 / r0:.2f}x ({r1 - r0:.0f} MiB more)")
    slope = (s1["total_s"] - s0["total_s"]) / (n1 - n0) * 1000
    print(f"each further 1,000 snapshots cost {slope:.3f} s (linear); the rest is a fixed cost per distinct "
          f"manifest ({s0['verified_in_full']} -> {s1['verified_in_full']} verified in full) and per group")


if __name__ == "__main__":
    sys.exit(main())
