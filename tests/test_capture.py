"""The probe runner: failures and time-outs become unknowns; the snapshot completes."""

from __future__ import annotations

import threading

from envcap.capture.collect import snapshot
from envcap.probes import PLATFORM, SOFTWARE, Finding, Probe

release = threading.Event()


def _ok(ctx) -> Finding:
    return Finding({"value": 1}, {"when": "now"})


def _boom(ctx) -> Finding:
    raise OSError("the database is corrupt at line 7")


def _hang(ctx) -> Finding:
    release.wait(30)
    return Finding({"late": True})


OK = Probe("ok", "ok", SOFTWARE, frozenset({"t"}), _ok)
BOOM = Probe("boom", "boom", SOFTWARE, frozenset({"t"}), _boom)
HANG = Probe("hang", "hang", PLATFORM, frozenset({"t"}), _hang)
COMMANDS = Probe("cmd", "cmd", SOFTWARE, frozenset({"t"}), _ok, reads_files=False)


def test_failures_and_timeouts_are_unknowns_and_the_rest_is_kept() -> None:
    try:
        m = snapshot(probes=[OK, BOOM, HANG], timeout=0.3)
    finally:
        release.set()
    assert dict(m.sections) == {"ok": {"value": 1}}
    assert {u.probe: u.error for u in m.unknowns} == {
        "boom": "OSError: the database is corrupt at line 7",
        "hang": "timed out after 0.3 s",
    }
    assert m.observed["ok"] == {"when": "now"}
    assert m.observed["probes"]["hang"]["status"] == "timeout"


def test_command_probes_are_not_applicable_under_root(tmp_path) -> None:
    m = snapshot(root=tmp_path, probes=[OK, COMMANDS])
    assert "cmd" not in m.sections
    assert m.observed["probes"]["cmd"]["status"] == "not-applicable"
    assert m.unknowns == ()
    assert m.observed["hostname"] is None


def test_sections_are_redacted_before_hashing() -> None:
    leak = Probe("leak", "leak", SOFTWARE, frozenset(), lambda ctx: Finding({"url": "https://u:pw123@h/x"}))
    clean = Probe("leak", "leak", SOFTWARE, frozenset(), lambda ctx: Finding({"url": "https://[REDACTED]@h/x"}))
    a, b = snapshot(probes=[leak]), snapshot(probes=[clean])
    assert a.sections["leak"]["url"] == "https://[REDACTED]@h/x"
    assert a.id == b.id


def test_files_only_reads_the_live_machine_as_a_tree_would() -> None:
    from envcap.capture.registry import all_probes

    live = snapshot(select=["system", "compilers", "environment"])
    tree = snapshot(select=["system", "compilers", "environment"], files_only=True)
    assert tree.sections["system"] == live.sections["system"]
    assert {"compilers", "environment"} <= set(live.sections)
    assert tree.observed["probes"]["compilers"]["status"] == "not-applicable"
    assert tree.observed["probes"]["environment"]["status"] == "not-applicable"
    assert tree.observed["hostname"] is None
    assert {p.name for p in all_probes()} >= {"system", "compilers", "environment"}


def test_snapshot_loads_no_sqlalchemy_and_no_numerics(tmp_path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "modules.txt"
    script = ("import atexit, os, sys\n"
              "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
              "from envcap.cli import main\n"
              "main(prog_name='envcap')\n")
    proc = subprocess.run([sys.executable, "-c", script, "snapshot"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MODULES_OUT": str(out), "ENVCAP_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    loaded = set(out.read_text().split())
    assert "sqlite3" in loaded and "envcap.capture.collect" in loaded  # it stored the snapshot: the scan sees
    # The snapshot path stays light: the store's SQLAlchemy (shared backends only) and the
    # numeric runtime (read in a run's own process, never here) are not imported.
    for module in ("sqlalchemy", "numpy", "threadpoolctl"):
        assert module not in loaded, f"envcap snapshot imports {module}"
