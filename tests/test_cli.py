"""The envcap command as a user meets it: real entry point, real store, real machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import H200, H200_TREE, Venv, run_envcap

from envcap.core.manifest import Manifest


def snapshot_json(*args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_envcap("snapshot", "--json", *args, env=env, check=True)
    return json.loads(proc.stdout)


def assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("envcap: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr


def test_snapshot_prints_a_summary_and_stores_it(isolated: Path) -> None:
    proc = run_envcap("snapshot", check=True)
    for key in ("os", "python", "system", "gpu", "env_id", "platform_id"):
        assert f"  {key}" in proc.stdout
    listing = json.loads(run_envcap("ls", "--json", check=True).stdout)
    assert len(listing) == 1
    assert listing[0]["id"] in proc.stdout


_CLICK_GROUP = "from envcap.cli.main import main\nmain(prog_name='envcap')\n"
_MODULES_AT_EXIT = ("import atexit, sys\n"
                    "atexit.register(lambda: print(' '.join(sorted(sys.modules)), file=sys.stderr))\n"
                    "from envcap.cli import main\nmain(prog_name='envcap')\n")


def test_a_plain_snapshot_runs_without_click_and_as_the_click_command_does(isolated: Path) -> None:
    """`envcap snapshot` (with --json, --no-store) is run before click is imported; it
    stores, prints and exits as the click command does."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _MODULES_AT_EXIT, "snapshot"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "click" not in proc.stderr.split(), proc.stderr[-500:]
    quick = proc.stdout.splitlines()
    group = subprocess.run([sys.executable, "-c", _CLICK_GROUP, "snapshot"], capture_output=True, text=True,
                           timeout=120, check=True).stdout.splitlines()
    assert quick[:-1] == group[:-1] and quick[-1].startswith(f"stored in {isolated} (")
    assert group[-1].startswith(f"stored in {isolated} (")
    stored = json.loads(run_envcap("ls", "--json", check=True).stdout)
    assert len(stored) == 2 and len({s["id"] for s in stored}) == 1  # two snapshots of one manifest
    listing = run_envcap("snapshot", "--json", "--no-store", check=True)
    assert f"  id          {Manifest.from_json(listing.stdout).id}" in quick
    assert len(json.loads(run_envcap("ls", "--json", check=True).stdout)) == 2
    # What the quick path does not take goes to click, which says what is wrong.
    proc = run_envcap("snapshot", "--json", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["id"]
    proc = run_envcap("snapshot", "--bogus")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_same_machine_twice_gives_the_same_ids() -> None:
    a, b = snapshot_json(), snapshot_json()
    assert (a["id"], a["env_id"], a["platform_id"]) == (b["id"], b["env_id"], b["platform_id"])
    assert a["observed"]["time"] and a["observed"]["hostname"]


def test_json_is_a_valid_manifest_with_the_contract_paths() -> None:
    data = snapshot_json()
    m = Manifest.from_dict(data)
    s = m.sections
    assert {"id", "version_id", "pretty_name"} <= set(s["os"])
    assert s["kernel"]["release"] == os.uname().release
    assert {"version", "implementation", "executable", "packages"} <= set(s["python"])
    assert s["system"]["manager"] == "dpkg"
    assert isinstance(data["unknowns"], list)


def test_installing_a_package_changes_env_id_only_and_removing_restores_it(venv: Venv) -> None:
    before = snapshot_json("--python", venv.python)
    venv.pip("install", "-q", "--no-deps", str(venv.extra_wheel))  # type: ignore[attr-defined]
    during = snapshot_json("--python", venv.python)
    venv.pip("uninstall", "-q", "-y", "envcap-test-extra")
    after = snapshot_json("--python", venv.python)
    assert during["env_id"] != before["env_id"]
    assert during["platform_id"] == before["platform_id"]
    assert (after["id"], after["env_id"]) == (before["id"], before["env_id"])


def test_show_by_prefix_and_by_file(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    run_envcap("snapshot", "-o", str(out), check=True)
    data = json.loads(out.read_text())
    by_prefix = run_envcap("show", data["id"][7:19], "--json", check=True)
    assert json.loads(by_prefix.stdout)["id"] == data["id"]
    by_env = run_envcap("show", data["env_id"][7:19], check=True)
    assert data["env_id"] in by_env.stdout
    by_file = run_envcap("show", str(out), "--json", check=True)
    assert json.loads(by_file.stdout) == data


def test_import_and_verify(tmp_path: Path, isolated: Path) -> None:
    out = tmp_path / "m.json"
    run_envcap("snapshot", "--no-store", "-o", str(out), check=True)
    assert not (isolated / "index.sqlite").exists()
    run_envcap("import", str(out), check=True)
    assert "1 snapshot(s)" in run_envcap("verify", check=True).stdout
    victim = next(p for p in (isolated / "objects").rglob("*") if p.is_file())
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b" ")
    proc = run_envcap("verify")
    assert proc.returncode == 1
    assert "corrupt object" in proc.stdout


def _truncate(data: dict) -> str:
    return json.dumps(data)[:2000]


def _garbage(data: dict) -> str:
    return "{nonsense"


def _unknown_schema(data: dict) -> str:
    return json.dumps({**data, "schema_version": "9.0.0"})


def _wrong_id(data: dict) -> str:
    return json.dumps({**data, "id": data["id"][:-1] + ("1" if data["id"][-1] == "0" else "0")})


def _edited_content(data: dict) -> str:
    data["sections"]["python"]["packages"][0]["version"] = "666"
    return json.dumps(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_truncate, "not valid JSON"),
        (_garbage, "not valid JSON"),
        (_unknown_schema, "schema version 9.0.0"),
        (_wrong_id, "does not match its id"),
        (_edited_content, "does not match"),
    ],
)
def test_hostile_files_are_refused_and_nothing_is_written(tmp_path: Path, isolated: Path, venv: Venv, mutate, message) -> None:
    good = tmp_path / "good.json"
    run_envcap("snapshot", "--no-store", "--python", venv.python, "-o", str(good), check=True)
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(json.loads(good.read_text())))
    proc = run_envcap("import", str(good), str(bad))
    assert_clean_failure(proc, message)
    assert not (isolated / "index.sqlite").exists()
    assert_clean_failure(run_envcap("show", str(bad)), message)


def test_missing_and_unusable_stores(tmp_path: Path) -> None:
    assert_clean_failure(run_envcap("ls", env={"ENVCAP_HOME": str(tmp_path / "none")}), "no envcap store")
    assert not (tmp_path / "none").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.sqlite").write_bytes(b"this is not a database" * 100)
    assert_clean_failure(run_envcap("ls", env={"ENVCAP_HOME": str(broken)}), "cannot be used")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_clean_failure(run_envcap("snapshot", env={"ENVCAP_HOME": str(blocker / "x")}), "cannot create the store")


def test_unknown_ids_and_names_with_shell_characters() -> None:
    run_envcap("snapshot", check=True)
    assert_clean_failure(run_envcap("show", "deadbeef"), "no manifest")
    assert_clean_failure(run_envcap("show", "$(touch /tmp/x); rm -rf ~"), "not a manifest id")
    assert_clean_failure(run_envcap("show", "x;y`id`"), "not a manifest id")
    assert_clean_failure(run_envcap("snapshot", "--label", "bad key=1"), "label")
    assert_clean_failure(run_envcap("snapshot", "--select", "nosuchprobe"), "no probe or tag")
    assert_clean_failure(run_envcap("snapshot", "--python", "/no/such/python"), "no such file")
    assert_clean_failure(run_envcap("snapshot", "--root", "/no/such/dir"), "no such directory")


def test_select_and_skip_by_name_and_tag() -> None:
    only_os = snapshot_json("--select", "os")
    assert set(only_os["sections"]) == {"os"}
    no_platform = snapshot_json("--skip", "platform")
    assert not set(no_platform["sections"]) & {"cpu", "memory", "kernel", "gpu"}
    assert "python" in no_platform["sections"]


def test_root_captures_the_h200_tree_like_that_machines_tools() -> None:
    data = snapshot_json("--root", str(H200_TREE))
    s = data["sections"]
    assert (s["os"]["id"], s["os"]["version_id"]) == ("ubuntu", "24.04")
    dpkg = {tuple(line.split("\t")) for line in (H200 / "dpkg.tsv").read_text().splitlines()}
    assert {(p["name"], p["version"], p["arch"]) for p in s["system"]["packages"]} == dpkg
    assert len(s["system"]["packages"]) == 439
    pip_list = json.loads((H200 / "pip-list.json").read_text())
    assert len(s["python"]["packages"]) == len(pip_list) == 197
    assert s["gpu"]["driver_version"] == "580.159.04"
    assert s["gpu"]["devices"][0]["name"] == "NVIDIA H200"
    assert s["cuda"]["version"] == "13.0"
    statuses = data["observed"]["probes"]
    assert statuses["compilers"]["status"] == "not-applicable"
    assert statuses["environment"]["status"] == "not-applicable"
    assert data["unknowns"] == []


CANARIES = {
    "HF_TOKEN": "hf_CanaryCanaryCanaryCanaryCanary1234",
    "CUDA_CANARY_MIRROR": "https://builder:Canary-Pass-777@mirror.example.com/cuda",
    "NCCL_CANARY_NOTE": "see ghp_CanaryCanaryCanaryCanaryCanary123456",
    "MY_APP_SECRET": "Canary-Secret-888",
    "OMP_CANARY_JWT": "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOiJ5ZXMifQ.Q2FuYXJ5U2lnbmF0dXJl",
}
LEAKS = ["CanaryCanaryCanary", "Canary-Pass-777", "Canary-Secret-888", "eyJjYW5hcnkiOiJ5ZXMifQ"]


def test_canary_secrets_appear_in_no_output_and_no_byte_of_the_store(isolated: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    human = run_envcap("snapshot", "-o", str(out), "--label", f"token={CANARIES['HF_TOKEN']}", env=CANARIES, check=True)
    as_json = run_envcap("snapshot", "--json", env=CANARIES, check=True)
    shown = run_envcap("show", json.loads(as_json.stdout)["id"], "--json", check=True)
    blobs = [human.stdout, human.stderr, as_json.stdout, shown.stdout, out.read_text()]
    blobs += [p.read_bytes().decode("utf-8", "replace") for p in isolated.rglob("*") if p.is_file()]
    for leak in LEAKS:
        assert not any(leak in b for b in blobs), leak
    variables = json.loads(as_json.stdout)["sections"]["environment"]["variables"]
    assert variables["CUDA_CANARY_MIRROR"] == "https://[REDACTED]@mirror.example.com/cuda"
    assert "MY_APP_SECRET" not in variables  # not allow-listed: name only
    assert "MY_APP_SECRET" in json.loads(as_json.stdout)["observed"]["environment"]["other_names"]


def test_every_command_is_listed_and_loads() -> None:
    from click.testing import CliRunner

    from envcap.cli.main import LAZY_COMMANDS, main

    listed = CliRunner().invoke(main, ["--help"]).output
    for name in [*LAZY_COMMANDS, "snapshot", "show", "ls", "import", "verify"]:
        assert f"  {name} " in listed, name
        assert main.get_command(None, name) is not None  # type: ignore[arg-type]
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0, name
