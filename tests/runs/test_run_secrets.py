"""Canary secrets in argv, environment, remote URLs, parameters and notes appear in no
byte of the store."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import git
from runs_helpers import envcap, every_byte, make_repo, run_id_of, show

CANARIES = {
    "env_allowed": "canaryEnvAllowed4f1d",  # HF_TOKEN is kept by the environment probe, redacted
    "env_other": "canaryEnvOther9a2b",  # a variable kept by name only
    "env_pattern": "ghp_" + "C4n4ryPatternInAllowedValue0123456789",  # a GitHub token inside an allowed value
    "argv_flag": "canaryArgvFlag77c3",
    "argv_eq": "canaryArgvEquals51e0",
    "argv_kv": "canaryArgvKeyValue23aa",
    "url_password": "canaryUrlPassword90ff",
    "url_token": "canaryUrlTokenOnly12cd",
    "param": "canaryParam66b1",
    "params_file": "canaryParamsFile31de",
    "note": "xoxb-" + "1234567890-canaryslacktoken",
}


def test_canary_secrets_reach_no_byte_of_the_store(tmp_path: Path, isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": "import sys\nprint(len(sys.argv))\n"})
    git(repo, "remote", "add", "origin", f"https://alice:{CANARIES['url_password']}@git.example.com/r.git")
    git(repo, "remote", "add", "backup", f"https://{CANARIES['url_token']}@git.example.com/r.git")
    (repo / "secret-params.json").write_text(f'{{"db": {{"password": "{CANARIES["params_file"]}"}}, "lr": 0.1}}')
    env = {
        "HF_TOKEN": CANARIES["env_allowed"],
        "MY_PRIVATE_THING": CANARIES["env_other"],
        "CUDA_CANARY_SETTING": CANARIES["env_pattern"],
    }
    proc = envcap("run", "--param", f"api_key={CANARIES['param']}", "--params-file", "secret-params.json",
                  "--note", f"token {CANARIES['note']}",
                  "--", sys.executable, "train.py", "--token", CANARIES["argv_flag"],
                  f"--api-key={CANARIES['argv_eq']}", f"DB_PASSWORD={CANARIES['argv_kv']}",
                  cwd=repo, env=env, check=True)
    assert proc.stdout.strip() == "5"  # the command itself got the real arguments
    run_id = run_id_of(proc)
    envcap("note", run_id, f"later {CANARIES['note']}", check=True)
    envcap("export", run_id, "-o", str(isolated / "bundle.zip"), check=True)
    view = show(run_id)
    assert "[REDACTED]" in view["command"]
    assert view["git"]["remote"] == "https://git.example.com/r.git"
    assert {p["name"]: p["value"] for p in view["params"]}["db.password"] == "[REDACTED]"
    assert view["params_files"][0]["object"] is None  # its content is withheld
    store_bytes = every_byte(isolated)
    assert len(store_bytes) > 10_000
    leaked = [name for name, canary in CANARIES.items() if canary.encode() in store_bytes]
    assert leaked == []
    # The store does hold the run: the canaries are missing because they were redacted.
    assert run_id.encode() in store_bytes and b"[REDACTED]" in store_bytes


def test_a_diff_that_changes_a_secret_bearing_params_file_is_withheld(tmp_path: Path, isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"cfg.yaml": "lr: 0.1\nhf_token: none\n", "train.py": "pass\n"})
    canary = "canaryTrackedDiff8e8e"
    (repo / "cfg.yaml").write_text(f"lr: 0.1\nhf_token: {canary}\n")
    (repo / "train.py").write_text("print('also changed')\n")
    proc = envcap("run", "--params-file", "cfg.yaml", "--", sys.executable, "train.py", cwd=repo, check=True)
    diff = show(run_id_of(proc))["git"]["diff"]
    # Withheld twice over: the diff assigns a secret-named key, and changes a params file
    # that sets a secret-named parameter; the first reason found is the one recorded.
    assert diff["object"] is None and diff["size"] > 0
    assert "cfg.yaml" in diff["withheld"] or "looks like it holds a secret" in diff["withheld"]
    assert canary.encode() not in every_byte(isolated)
