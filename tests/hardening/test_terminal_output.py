"""Class 1, the terminal: what a manifest, a run or a note holds reaches the terminal
escaped. No escape sequence, carriage return, line separator or direction override
from a hostname, a label, a note or a package name is printed as itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner
from hardening_support import LINE_BREAKERS, SETTINGS, TERMINAL, Case  # isort: skip
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import envcap, run_id_of

from envcap.cli.main import main
from envcap.core.manifest import Manifest
from envcap.core.text import terminal_safe

HOSTILE = [*TERMINAL, *LINE_BREAKERS, "\t", "[bold red]markup[/]", "[link=https://evil.example]x[/link]"]


def _unsafe(text: str) -> list[str]:
    return [line for line in text.split("\n") if not line.isprintable()]


def _manifest(hostname: str, label: str) -> Manifest:
    return Manifest.create({"os": {"id": "debian", "version_id": "12", "pretty_name": label}},
                           {"software": ["os"], "platform": []},
                           observed={"hostname": hostname, "time": "2026-11-20T10:00:00+00:00"},
                           labels={"team": label})


@SETTINGS
@given(st.lists(st.sampled_from(HOSTILE) | st.text(max_size=4), min_size=1, max_size=4).map("".join),
       st.sampled_from(HOSTILE))
def test_hostnames_and_labels_print_escaped(tmp_path: Path, hostname: str, label: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(_manifest("node" + hostname, "x" + label).to_json())
    runner = CliRunner()
    with Case("1. terminal output"):
        out = []
        for args in (["import", str(path)], ["ls"], ["show", str(path)], ["fleet", str(path)],
                     ["diff", str(path), str(path)]):
            result = runner.invoke(main, args)
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            out.append(result.output)
        assert _unsafe("".join(out)) == []


def test_notes_labels_and_commands_of_a_run_print_escaped(tmp_path: Path) -> None:
    evil = "\x1b]0;owned\x07\x1b[2J\r\u202eevil\u2028x"
    proc = envcap("run", "--note", f"n{evil}", "--label", f"team=t{evil}", "--", sys.executable, "-c", "pass",
                  f"arg{evil}", cwd=tmp_path, check=True)
    run_id = run_id_of(proc)
    envcap("note", run_id, f"later{evil}", check=True)
    for args in (("runs",), ("show", run_id), ("audit", run_id)):
        text = envcap(*args, cwd=tmp_path).stdout
        with Case("1. terminal output"):
            assert _unsafe(text) == [], (args, text)
            assert "\\x1b" in text or args == ("audit", run_id)
    # JSON output escapes by its own rules and keeps the text exact.
    view = json.loads(envcap("show", run_id, "--json", check=True).stdout)
    assert view["notes"][0]["text"] == f"n{evil}"


def test_terminal_safe_escapes_exactly_what_is_not_printable() -> None:
    assert terminal_safe("plain text, déjà vu, 中文") == "plain text, déjà vu, 中文"
    assert terminal_safe("a\x1b[31mb\u202ec\u2028d\x85e\U000e0001") == "a\\x1b[31mb\\u202ec\\u2028d\\x85e\\U000e0001"
    assert terminal_safe("x" * 10, limit=5) == "xx..."
