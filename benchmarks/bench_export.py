"""SBOM figures: envcap's CycloneDX export of a Python environment, side by side with
``cyclonedx-py environment`` (the CycloneDX project's own generator, from cyclonedx-bom).

Both describe the same interpreter's environment (default: the one running this script),
interleaved, each as a user runs it, interpreter start included:

- envcap: ``envcap snapshot --python PY --select python -o m.json --no-store`` then
  ``envcap export m.json --format cyclonedx -o envcap.cdx.json`` (timed together and
  apart);
- peer: ``cyclonedx-py environment PY --of JSON -o peer.cdx.json`` (``--no-validate``,
  as envcap does not validate on export either).

Prints the medians, the ratio, and the component counts, and the distributions one
lists and the other does not (none expected). A distribution found twice on the path
(an editable checkout's ``.egg-info`` beside its ``.dist-info``) is one package to
envcap, as to pip, and two components to the peer.

    pip install cyclonedx-bom    # the peer; not an envcap dependency
    python benchmarks/bench_export.py [--python PY] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the environment to describe")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    envcap = shutil.which("envcap", path=str(bindir)) or shutil.which("envcap")
    peer = shutil.which("cyclonedx-py", path=str(bindir)) or shutil.which("cyclonedx-py")
    if not envcap or not peer:
        raise SystemExit("needs envcap (pip install -e '.[export]') and cyclonedx-py (pip install cyclonedx-bom)")
    with tempfile.TemporaryDirectory(prefix="envcap-bench-export-") as tmp:
        out = Path(tmp)
        snap = [envcap, "snapshot", "--python", args.python, "--select", "python", "--no-store",
                "-o", str(out / "m.json")]
        export = [envcap, "export", str(out / "m.json"), "--format", "cyclonedx", "-o", str(out / "envcap.cdx.json")]
        theirs = [peer, "environment", args.python, "--of", "JSON", "--no-validate", "-o", str(out / "peer.cdx.json")]
        timed(snap), timed(export), timed(theirs)  # warm the page cache for both
        snaps, exports, peers = [], [], []
        for _ in range(args.rounds):
            snaps.append(timed(snap))
            exports.append(timed(export))
            peers.append(timed(theirs))
        ours = json.loads((out / "envcap.cdx.json").read_text())
        their = json.loads((out / "peer.cdx.json").read_text())
    s, e, p = (statistics.median(x) for x in (snaps, exports, peers))

    def names(doc: dict) -> set[tuple[str, str]]:
        return {(c["name"].lower().replace("_", "-").replace(".", "-"), c.get("version", ""))
                for c in doc.get("components", [])}

    print(f"environment: {args.python}")
    print(f"envcap snapshot + export  {s + e:6.2f} s  (snapshot {s:.2f} s, export {e:.2f} s), "
          f"{len(ours.get('components', []))} components")
    print(f"cyclonedx-py environment  {p:6.2f} s  {len(their.get('components', []))} components")
    print(f"only envcap: {sorted(names(ours) - names(their))}; only cyclonedx-py: {sorted(names(their) - names(ours))}")
    print(f"ratio envcap / cyclonedx-py: {(s + e) / p:.2f}")


if __name__ == "__main__":
    main()
