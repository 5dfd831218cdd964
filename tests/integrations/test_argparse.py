"""params_from_argparse: given arguments are `user`, left-out ones `default`, in a real run."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import pytest

from envcap.integrations.argparse import given_names

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import envcap, run_id_of, show

SCRIPT = textwrap.dedent("""\
    import argparse, envcap
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--name", default="resnet")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    envcap.params_from_argparse(parser, args)
""")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def test_a_value_given_equal_to_its_default_is_still_given() -> None:
    parser = _parser()
    argv = ["train.csv", "--lr", "0.01", "-vv"]
    args = parser.parse_args(argv)
    assert given_names(parser, args, argv) == {"data", "lr", "verbose"}


def test_another_command_line_is_not_taken_for_this_namespaces() -> None:
    parser = _parser()
    args = parser.parse_args(["a.csv", "--lr", "0.5"])
    assert given_names(parser, args, ["b.csv"]) is None
    assert given_names(parser, args, ["--no-such-option"]) is None


def test_under_envcap_run_the_params_carry_their_provenance(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = envcap("run", "--", sys.executable, "train.py", "--lr", "0.01", "--fast", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    params = {p["name"]: (p["value"], p["source"]) for p in show(run_id_of(proc))["params"]}
    assert params == {"lr": (0.01, "user"), "fast": (True, "user"), "epochs": (10, "default"),
                      "name": ("resnet", "default")}


def test_without_a_run_the_script_records_one_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT + "print(envcap.runs.api.active_run().id)\n")
    proc = __import__("subprocess").run([sys.executable, "train.py", "--epochs", "3"], cwd=tmp_path,
                                        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    view = show(proc.stdout.strip())
    params = {p["name"]: p["source"] for p in view["params"]}
    assert params == {"epochs": "user", "lr": "default", "name": "default", "fast": "default"}
    assert view["mode"] == "api"


@pytest.mark.parametrize("argv", [["x.csv", "--epochs=3"], ["--epochs", "3", "x.csv"]])
def test_option_spellings(argv: list[str]) -> None:
    parser = _parser()
    assert given_names(parser, parser.parse_args(argv), argv) == {"data", "epochs"}


def test_the_value_the_script_ran_with_wins_over_param(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = envcap("run", "--param", "lr=0.5", "--", sys.executable, "train.py", "--lr", "0.02", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    view = show(run_id_of(proc))
    params = {p["name"]: p for p in view["params"]}
    assert params["lr"]["value"] == 0.02 and params["lr"]["source"] == "user"
    assert any("lr" in problem for problem in view["problems"]), view["problems"]


@pytest.mark.parametrize("ending, code, status", [
    ("", 0, "ok"),  # the script just ends, as the documented usage does
    ("import sys\nsys.exit(3)\n", 3, "failed"),
    ("raise RuntimeError('diverged')\n", 1, "failed"),
], ids=["ends", "sys-exit-3", "exception"])
def test_a_standalone_script_is_recorded_with_its_own_exit_status(tmp_path: Path, ending: str, code: int,
                                                                   status: str) -> None:
    (tmp_path / "train.py").write_text(SCRIPT + "print(envcap.runs.api.active_run().id, flush=True)\n" + ending)
    proc = __import__("subprocess").run([sys.executable, "train.py", "--epochs", "3"], cwd=tmp_path,
                                        capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    view = show(proc.stdout.strip())
    assert (view["status"], view["exit_code"]) == (status, code)
    assert view["problems"] == []
