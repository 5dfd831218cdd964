"""Forged bundles, records and artifacts (issue 20): what the classes 5-8 generators share.

A real run is recorded and exported once per session (:func:`base_bundle`); each case
rewrites its ``run.json`` (and the index that lists every member's hash, so the forgery
is internally consistent and only envcap's own checks can refuse it) and feeds the
result to the real command, in this process through click's runner so that a case costs
milliseconds, not an interpreter start.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import hardening_support  # noqa: F401  (puts the helpers' folders on the path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from runs_helpers import make_repo, run_id_of

from envcap.core.canonical import digest


class BaseBundle:
    """A real run's bundle, its record and members (a plain class: hypothesis prints it short)."""

    def __init__(self, path: Path, run_id: str, record: dict[str, Any], members: dict[str, bytes],
                 index: dict[str, Any]) -> None:
        self.path, self.run_id, self.record, self.members, self.index = path, run_id, record, members, index

    def __repr__(self) -> str:
        return f"BaseBundle({self.path.name}, run {self.run_id})"


def make_base_bundle(where: Path) -> BaseBundle:
    """A real run (in a git repository, with an untracked file, a parameter file and a
    note) exported as a bundle."""
    home = where / "home"
    repo = make_repo(where / "proj", {"train.py": "print('hi')\n", "cfg.json": '{"lr": 0.1}'})
    (repo / "scratch.txt").write_text("untracked\n")
    env = {**os.environ, "ENVCAP_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "envcap", "run", "--params-file", "cfg.json", "--note", "n1", "--",
                           sys.executable, "train.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = run_id_of(proc)
    bundle = where / "base.zip"
    subprocess.run([sys.executable, "-m", "envcap", "export", run_id, "-o", str(bundle)], env=env, check=True,
                   capture_output=True, timeout=120)
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    index = json.loads(members.pop("envcap-bundle.json"))
    return BaseBundle(bundle, run_id, json.loads(members["run.json"]), members, index)


def forge(base: BaseBundle, record: dict[str, Any] | None = None, *, extra: dict[str, bytes] | None = None,
          index: dict[str, Any] | None = None, raw_run_json: bytes | None = None) -> bytes:
    """A bundle whose run.json is ``record`` and whose index lists every member by its hash."""
    members = dict(base.members)
    members.update(extra or {})
    run_json = raw_run_json if raw_run_json is not None else json.dumps(record or base.record).encode()
    members["run.json"] = run_json
    idx = copy.deepcopy(base.index) if index is None else index
    if index is None:
        idx["record"] = digest(run_json)
        idx["run"] = (record or base.record).get("id") if isinstance(record or base.record, dict) else None
        idx["files"] = {name: digest(data) for name, data in sorted(members.items())}
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # a repeated member name is one of the forgeries
        zf.writestr("envcap-bundle.json", json.dumps(idx))
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def with_untracked(base: BaseBundle, paths: list[Any], *, kind: str = "file") -> tuple[dict[str, Any], dict[str, bytes]]:
    """The base record with its untracked files replaced by ``paths``, each with content."""
    record = copy.deepcopy(base.record)
    extra: dict[str, bytes] = {}
    items = []
    for i, path in enumerate(paths):
        data = f"planted {i}\n".encode()
        extra[f"code/untracked/planted-{i}"] = data
        items.append({"path": path, "size": len(data), "sha256": digest(data), "object": digest(data), "kind": kind})
    record["git"]["untracked"] = items
    return record, extra


# -- running the real command in this process --------------------------------------------------


@dataclass
class Result:
    code: int
    output: str
    exception: BaseException | None

    @property
    def traceback(self) -> bool:
        return self.exception is not None and not isinstance(self.exception, SystemExit)


def cli(*args: str, home: Path, env: dict[str, str] | None = None) -> Result:
    """``envcap ARGS`` in this process (click's runner), on the store at ``home``."""
    from click.testing import CliRunner

    from envcap.cli.main import main
    from envcap.store import factory

    factory.select(None)
    result = CliRunner().invoke(main, list(args), env={"ENVCAP_HOME": str(home), **(env or {})},
                                catch_exceptions=True)
    return Result(result.exit_code, result.output, result.exception)


def clean_refusal(result: Result) -> None:
    assert not result.traceback, f"traceback: {result.exception!r}\n{result.output}"
    assert result.code == 2, (result.code, result.output)
    assert "envcap: error: " in result.output, result.output


def store_state(home: Path) -> tuple[list[str], list[str]]:
    """(run ids in the index, object files on disk) of an embedded store."""
    runs: list[str] = []
    index = home / "index.sqlite"
    if index.exists():
        db = sqlite3.connect(index)
        try:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                runs = sorted(r[0] for r in db.execute("SELECT id FROM runs"))
        finally:
            db.close()
    objects = sorted(str(p.relative_to(home)) for p in (home / "objects").rglob("*") if p.is_file()) \
        if (home / "objects").exists() else []
    return runs, objects


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# -- hostile values ---------------------------------------------------------------------------

ESCAPING_PATHS = ["../x", "../../x", "/abs/x", "a/../../x", "a/../../../etc/cron.d/x", "..", ".", "", "./x",
                  "a//b", "a/./b", "x\x00y", "..\\..\\x", "a\\b", "/", "//x", "a/", "~/../../x",
                  "a/" * 2100 + "x"]

COMPONENTS = st.sampled_from(["..", ".", "", "a", "b c", "\u202e", "x\x00", "\\", "~", "-", "..a", "a..", "...",
                              "\n", "ſ", "/"])
GENERATED_PATHS = st.lists(COMPONENTS, min_size=1, max_size=8).map("/".join)
HOSTILE_PATHS = st.one_of(st.sampled_from(ESCAPING_PATHS), GENERATED_PATHS, st.text(max_size=40))
WRONG_TYPES = st.sampled_from([None, 0, -1, 10**30, 1.5, True, [], ["a"], {}, {"path": "x"}, "", "sha256:" + "0" * 64,
                               "sha256:zz", "\x00"])


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def deep_json(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()
