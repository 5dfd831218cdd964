"""The manifest ids of every fixture tree in tests/testdata, for the golden-id test.

Run as a script to regenerate tests/testdata/golden-ids.json after a change that is
meant to change ids (say, new env_id inputs)::

    python tests/golden_ids.py

It captures each tree with ``snapshot(root=tree)`` under a fresh ENVCAP_HOME and no
user configuration, as the tests do, so the ids depend on the tree and envcap only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTDATA = Path(__file__).resolve().parent / "testdata"
GOLDEN = TESTDATA / "golden-ids.json"
# Earlier schema minors whose ids of the same sections are pinned too.
EARLIER = ("1.0.0", "1.1.0")
NOTE = "Manifest ids of snapshot(root=tree) for each fixture tree; regenerate with: python tests/golden_ids.py"


def trees() -> list[Path]:
    """Every ``fstree`` under tests/testdata, in a stable order."""
    return sorted(p for p in TESTDATA.glob("**/fstree") if p.is_dir())


def name(tree: Path) -> str:
    return tree.parent.relative_to(TESTDATA).as_posix()


def ids(tree: Path) -> dict[str, Any]:
    from envcap import snapshot

    from envcap.core.manifest import compute_ids

    m = snapshot(root=str(tree))
    earlier = {}
    for version in EARLIER:
        old = compute_ids(m.sections, m.layers, version=version)
        earlier[version] = {"id": old.id, "env_id": old.env_id, "platform_id": old.platform_id}
    return {
        "id": m.id,
        "env_id": m.env_id,
        "platform_id": m.platform_id,
        "sections": sorted(m.sections),
        # The ids the same sections have in a manifest of an earlier schema minor: an
        # identity rule of its own, and ids that a new rule must never move.
        "earlier": earlier,
    }


def main() -> int:
    for key in [k for k in os.environ if k.startswith("ENVCAP_")]:
        del os.environ[key]
    home = tempfile.mkdtemp(prefix="envcap-golden-")
    os.environ.update(
        ENVCAP_HOME=home,
        ENVCAP_CONFIG=os.path.join(home, "no-config.toml"),
        ENVCAP_CACHE_DIR=os.path.join(home, "cache"),
    )
    golden = {"note": NOTE, "trees": {name(t): ids(t) for t in trees()}}
    GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN.relative_to(TESTDATA.parent.parent)} ({len(golden['trees'])} trees)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
