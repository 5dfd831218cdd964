"""The shared store against the embedded one, side by side in one run.

1. Write throughput: 16 concurrent writer processes import the synthetic fleet of
   bench_fleet.py (10,000 snapshots of real manifests: 50 environments, 5 clusters) into
   each store; snapshots per second.
2. ``envcap fleet`` over those 10,000 snapshots read from each store: wall time and
   peak RSS of the whole command (target: at most 5 s and 500 MiB from PostgreSQL).
3. The latency of one ``envcap snapshot`` that writes to each store: p50 and p99 of N
   runs of the real command.
4. ``envcap runs`` over 100,000 runs in each store, beside ``envcap --help`` (the
   command's own start) in the same run: the filtered and sorted page of issue 18
   (``--where 'params.lr>0.01' --sort metrics.loss --limit 20``; targets 0.3 s embedded,
   0.5 s PostgreSQL, 80 MiB), the plain first page (``--limit 20``), and
   ``--where env_id=...``; all answered by the database (``search_runs``), only the page's
   records read.

    python benchmarks/bench_store.py [--pg URL] [--snapshots 10000] [--runs 100000]
                                     [--writers 16] [--latency 30] [--parts 1,2,3,4]

``--pg`` is a database URL whose role may create databases (default: $ENVCAP_TEST_PG,
which scripts/testbed.sh writes); the benchmark makes its own databases and drops them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
FLEET_TARGET_S, FLEET_TARGET_MIB, RUNS_TARGET_S = 1.5, 500, 0.5
PAGE_TARGET_S = {"embedded": 0.3, "postgresql": 0.5}
PAGE_TARGET_MIB = 80


def timed_child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and peak RSS of one envcap command, measured with wait4 (its own RSS only)."""
    wall, rss, _ = timed_child_cpu(args, env)
    return wall, rss


def timed_child_cpu(args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall time, peak RSS and CPU time (user + system) of one envcap command, by wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "envcap", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"envcap {' '.join(args)} failed ({code}): {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


# -- stores ----------------------------------------------------------------------------


class Databases:
    def __init__(self, admin: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.admin = admin
        self.made: list[str] = []

    def new(self, tag: str) -> str:
        name = f"envcap_bench_{tag}_{os.getpid()}"
        with self.psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.admin.rsplit("/", 1)[0] + "/" + name

    def drop(self) -> None:
        with self.psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def writer(url: str, listing: str) -> int:
    """A writer process: add every manifest file named in LISTING to the store at URL."""
    from envcap.store.embedded import load_manifest
    from envcap.store.factory import open_store

    files = Path(listing).read_text().split()
    with open_store(url, create=True) as store:
        for f in files:
            store.add(load_manifest(f))
    return 0


def write_concurrently(url: str, files: list[Path], writers: int, work: Path) -> float:
    from envcap.store.factory import open_store

    open_store(url, create=True).close()
    listings = []
    for k in range(writers):
        listing = work / f"writer-{k}.txt"
        listing.write_text("\n".join(str(f) for f in files[k::writers]))
        listings.append(listing)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", url, str(listing)]) for listing in listings]
    if [p.wait() for p in procs] != [0] * writers:
        raise SystemExit("a writer failed")
    return time.perf_counter() - start


def fill_runs(url: str, count: int, envs: int) -> None:
    """COUNT finished runs over ENVS environments, written in large transactions."""
    from envcap.core.canonical import canonical_bytes
    from envcap.core.run import FINISHED, Param, RunRecord, new_run_id
    from envcap.store import runs as runs_store
    from envcap.store.factory import open_store

    with open_store(url, create=True) as store:
        runs_store.ensure_tables(store)
        batch = 5000
        for start in range(0, count, batch):
            blobs, statements = [], []
            for i in range(start, min(count, start + batch)):
                record = RunRecord(id=new_run_id(), state=FINISHED, mode="cli", argv=("python", "train.py"),
                                   command="python train.py", cwd="/w", host=f"node-{i % 500}",
                                   started_at="2026-12-01T00:00:00.000Z", exit_code=0 if i % 10 else 1,
                                   env_id=f"sha256:{i % envs:064x}", labels={"cluster": f"c{i % 5}"},
                                   params=(Param(name="lr", value=(i % 100) / 1000, source="user"),),
                                   metrics={"loss": 1 / (1 + i % 97)})
                data = canonical_bytes(record.to_dict())
                blobs.append(data)
                from envcap.core.canonical import digest

                statements += runs_store.record_statements(record, digest(data), len(data))
            _put_fast(store, blobs)
            store.transaction(statements)
        # The planner's statistics, as a store that has lived a while has them (PostgreSQL's
        # autovacuum would gather them some minutes after a bulk load like this one).
        store.db.execute("ANALYZE")


def _put_fast(store: Any, blobs: list[bytes]) -> None:
    """Objects in bulk: PostgreSQL in batches; the embedded store's files without an fsync each
    (setting up a benchmark, not what `envcap run` does)."""
    if hasattr(store, "put_objects"):
        for k in range(0, len(blobs), 1000):
            store.put_objects(blobs[k:k + 1000])
        return
    from envcap.core.canonical import digest

    for data in blobs:
        path = store.object_path(digest(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)


# -- the benchmark -----------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("ENVCAP_TEST_PG"), metavar="URL")
    parser.add_argument("--snapshots", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=100000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--latency", type=int, default=30, metavar="N", help="envcap snapshot runs per store")
    parser.add_argument("--parts", default="1,2,3,4", help="which measurements to make (comma-separated)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="part 4: keep the run stores (DIR/runs-N, database envcap_bench_runs_N) and reuse them")
    parser.add_argument("--fill-only", action="store_true", help="part 4: make the kept run stores and stop")
    parser.add_argument("--writer", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        return writer(*args.writer)
    if not args.pg:
        raise SystemExit("give --pg postgresql://... (a role that may create databases), or set ENVCAP_TEST_PG")
    from bench_fleet import base_manifests, write_fleet

    from envcap.store.postgres import display_url

    dbs = Databases(args.pg)
    work = Path(tempfile.mkdtemp(prefix="envcap-store-bench-"))
    verdicts = []
    parts = set(args.parts.split(","))
    try:
        fleet_dir = work / "fleet"
        fleet_dir.mkdir()
        files: list[Path] = []
        stores = {"embedded": str(work / "embedded"), "postgresql": dbs.new("fleet")}
        if parts & {"1", "2", "3"}:
            write_fleet(fleet_dir, args.snapshots, base_manifests([]))
            files = sorted(fleet_dir.iterdir())
            print(f"{len(files)} snapshots of real manifests; {os.cpu_count()} CPUs; PostgreSQL at "
                  f"{display_url(args.pg).rsplit('/', 1)[0]}/...")
        if parts & {"2", "3"} and "1" not in parts:
            for url in stores.values():
                write_concurrently(url, files, args.writers, work)
        if "4" in parts:
            part4(args, dbs, work, verdicts)
        if "1" not in parts:
            return report(verdicts)

        print(f"\n1. write throughput, {args.writers} concurrent writers")
        rate = {}
        for name, url in stores.items():
            seconds = write_concurrently(url, files, args.writers, work)
            rate[name] = len(files) / seconds
            print(f"   {name:<10} {len(files)} snapshots in {seconds:6.1f} s: {rate[name]:7.0f} snapshots/s")
        print(f"   ratio postgresql/embedded: {rate['postgresql'] / rate['embedded']:.2f}")

        if "2" not in parts:
            return report(verdicts)
        print(f"\n2. envcap fleet over {len(files)} snapshots")
        fleet = {}
        for name, url in stores.items():
            fleet[name] = timed_child(["fleet", "--json"], {"ENVCAP_STORE": url})
            print(f"   {name:<10} {fleet[name][0]:6.2f} s, peak RSS {fleet[name][1]:4.0f} MiB")
        s, mib = fleet["postgresql"]
        print(f"   ratio postgresql/embedded: time {s / fleet['embedded'][0]:.2f}, memory "
              f"{mib / fleet['embedded'][1]:.2f}")
        verdicts.append(("fleet from PostgreSQL", s <= FLEET_TARGET_S and mib <= FLEET_TARGET_MIB,
                         f"{s:.2f} s <= {FLEET_TARGET_S:g} s, {mib:.0f} MiB <= {FLEET_TARGET_MIB} MiB"))

        print(f"\n3. latency of one `envcap snapshot` (n={args.latency})")
        lat = {}
        for name, url in stores.items():
            times = sorted(timed_child(["snapshot", "--label", "bench=1"], {"ENVCAP_STORE": url})[0]
                           for _ in range(args.latency))
            p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
            lat[name] = (statistics.median(times), p99)
            print(f"   {name:<10} p50 {lat[name][0]:.3f} s, p99 {p99:.3f} s")
        print(f"   ratio postgresql/embedded: p99 {lat['postgresql'][1] / lat['embedded'][1]:.2f}")

        return report(verdicts)
    finally:
        dbs.drop()
        shutil.rmtree(work, ignore_errors=True)


def report(verdicts: list[tuple[str, bool, str]]) -> int:
    print()
    ok = True
    for what, good, detail in verdicts:
        ok &= good
        print(f"{what}: {detail}: {'OK' if good else 'OVER TARGET'}")
    return 0 if ok else 1


def part4(args: Any, dbs: Databases, work: Path, verdicts: list[tuple[str, bool, str]]) -> None:
    print(f"\n4. envcap runs over {args.runs} runs (median of 5 each, interleaved with `envcap --help`; "
          f"RSS and CPU of the whole command; load average {os.getloadavg()[0]:.1f})")
    envs = max(1, args.runs // 100)
    run_stores = kept_run_stores(args, dbs, envs) if args.keep else \
        {"embedded": str(work / "embedded-runs"), "postgresql": dbs.new("runs")}
    if args.fill_only:
        return
    wanted = f"sha256:{7:064x}"
    queries = {
        "filtered": ["runs", "--json", "--where", "params.lr>0.01", "--sort", "metrics.loss", "--limit", "20"],
        "first page": ["runs", "--json", "--limit", "20"],
        "env_id=": ["runs", "--json", "--where", f"env_id={wanted}"],
    }
    for name, url in run_stores.items():
        made = 0.0
        if not args.keep:
            t = time.perf_counter()
            fill_runs(url, args.runs, envs)
            made = time.perf_counter() - t
        env = {"ENVCAP_STORE": url}
        timed_child(["runs", "--limit", "1"], env)  # the first opening of a store
        print(f"   {name:<10} ({args.runs} runs{f' made in {made:.0f} s' if made else ', kept'})")
        for what, argv in queries.items():
            runs, helps = [], []
            for _ in range(5):  # interleaved, so that both see the same load
                runs.append(timed_child_cpu(argv, env))
                helps.append(timed_child_cpu(["--help"], env))
            s, mib = statistics.median(r[0] for r in runs), max(r[1] for r in runs)
            cpu = statistics.median(r[2] for r in runs)
            help_s, help_cpu = statistics.median(h[0] for h in helps), statistics.median(h[2] for h in helps)
            print(f"   {name:<10} {what:<11} {s:.3f} s ({cpu:.3f} s CPU), {mib:.0f} MiB, {s / help_s:.1f}x --help "
                  f"({help_s:.3f} s, {help_cpu:.3f} s CPU; CPU ratio {cpu / help_cpu:.1f}x)   (envcap {' '.join(argv)})")
            if what != "env_id=":
                verdicts.append((f"runs {what} over {args.runs} runs ({name})",
                                 s <= PAGE_TARGET_S[name] and mib <= PAGE_TARGET_MIB and s / help_s <= 3,
                                 f"{s:.3f} s <= {PAGE_TARGET_S[name]} s, {mib:.0f} MiB <= {PAGE_TARGET_MIB} MiB, "
                                 f"{s / help_s:.1f}x --help <= 3x"))


def kept_run_stores(args: Any, dbs: Databases, envs: int) -> dict[str, str]:
    """The run stores of ``--keep``: made once (an embedded directory and a database that
    the benchmark does not drop), reused by later runs."""
    import psycopg

    keep = args.keep / f"runs-{args.runs}"
    name = f"envcap_bench_runs_{args.runs}"
    pg = args.pg.rsplit("/", 1)[0] + "/" + name
    stores = {"embedded": str(keep / "embedded"), "postgresql": pg}
    for kind, url in stores.items():
        done = keep / f"{kind}.done"
        if done.exists():
            continue
        if kind == "postgresql":
            with psycopg.connect(dbs.admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        else:
            shutil.rmtree(url, ignore_errors=True)
        t = time.perf_counter()
        fill_runs(url, args.runs, envs)
        keep.mkdir(parents=True, exist_ok=True)
        done.write_text(f"{time.perf_counter() - t:.0f} s\n")
        print(f"   {kind}: {args.runs} runs made in {time.perf_counter() - t:.0f} s, kept")
    return stores


if __name__ == "__main__":
    sys.exit(main())
