"""The console script's head start: a plain ``envcap snapshot`` starts capturing before
click is imported, and the command claims that very capture (or takes its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcap.capture import early
from envcap.capture.collect import snapshot
from envcap.entry import plain_snapshot

TREE = Path(__file__).parent / "testdata" / "gpu-h200-ubuntu24" / "fstree"


@pytest.mark.parametrize(("args", "plain"), [
    (["snapshot"], True), (["snapshot", "--json"], True), (["snapshot", "--no-store", "--json"], True),
    (["snapshot", "--label", "a=b"], False), (["snapshot", "--help"], False), (["snapshot", "--root", "/x"], False),
    (["--version"], False), (["diff", "a", "b"], False), ([], False),
])
def test_only_a_plain_snapshot_gets_the_head_start(args: list[str], plain: bool) -> None:
    assert plain_snapshot(args) is plain


def test_a_claim_gets_the_capture_started_with_the_same_arguments_only() -> None:
    early.start(root=str(TREE), select=("os",))
    assert early.claim(root=str(TREE), select=("os", "kernel")) is None  # other arguments: nothing
    assert early.claim(root=str(TREE), select=("os",)) is None  # and the started one is gone
    early.start(root=str(TREE), select=("os",))
    claimed = early.claim(root=str(TREE), select=("os",))
    assert claimed is not None
    assert claimed[0].env_id == snapshot(root=str(TREE), select=("os",)).env_id


def test_an_error_of_the_early_capture_is_raised_by_the_claim() -> None:
    from envcap.core.errors import UsageError

    early.start(root="/no/such/tree")
    with pytest.raises(UsageError, match="--root /no/such/tree: no such directory"):
        early.claim(root="/no/such/tree")


PROBE = """
import sys
from envcap.capture import early
from envcap import entry

claim = early.claim
def noted(**kwargs):
    got = claim(**kwargs)
    print("claimed" if got is not None else "not claimed", file=sys.stderr)
    return got
early.claim = noted
sys.argv = ["envcap", *sys.argv[1:]]
entry.main()
"""


def run_entry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def test_the_command_claims_what_the_console_script_started() -> None:
    plain = run_entry("snapshot", "--no-store", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "claimed" in plain.stderr.splitlines() and json.loads(plain.stdout)["env_id"].startswith("sha256:")
    labelled = run_entry("snapshot", "--no-store", "--json", "--label", "a=b")
    assert labelled.returncode == 0, labelled.stderr
    assert "not claimed" in labelled.stderr.splitlines() and json.loads(labelled.stdout)["labels"] == {"a": "b"}


def test_an_early_error_reads_as_it_always_did(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("x = [\n")
    proc = run_entry("snapshot", env={"ENVCAP_CONFIG": str(bad)})
    assert proc.returncode == 2
    assert f"envcap: error: the configuration file {bad} is not valid TOML" in proc.stderr
    assert "Traceback" not in proc.stderr
