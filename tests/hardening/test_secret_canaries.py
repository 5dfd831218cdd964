"""Class 3: secrets never leave the machine. A canary is planted in each path a secret
has been seen to take (the command line in short and unusual forms, an allow-listed
variable, parameters, a parameter file's copy, metric names, labels, notes, a tracked
file's diff, untracked files), and every byte of the store and of the exported bundle
(its members decompressed) is searched for each."""

from __future__ import annotations

import json
import sys
import zipfile
from urllib.parse import quote
from pathlib import Path

from hardening_support import HELD, SETTINGS, TRIED, Case  # isort: skip
from hypothesis import given
from hypothesis import strategies as st
import hardening_support

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from conftest import git
from runs_helpers import envcap, every_byte, make_repo, run_id_of, show

from envcap.core.redact import REDACTED, Redactor

C = {name: f"canary{name.title().replace('_', '')}{i:02d}x" for i, name in enumerate([
    "argv_p_space", "argv_p_attached", "argv_pass_eq", "argv_db_pass", "argv_user", "argv_bearer",
    "env_allowed_pass", "param_db_pass", "param_libpq", "params_file_url", "metric_name_url", "metric_name_kv",
    "label_secret_name", "label_url", "tracked_diff", "untracked_script", "untracked_yaml", "note_kv",
    "event_label", "api_param_libpq",
])}

SCRIPT = """\
import json, os, sys
run_dir = os.environ["ENVCAP_RUN_DIR"]
with open(os.path.join(run_dir, "metrics.jsonl"), "a") as fh:
    fh.write(json.dumps({"name": "loss@https://bob:%(metric_name_url)s@metrics.example/x", "value": 1.0}) + "\\n")
    fh.write(json.dumps({"name": "db_password=%(metric_name_kv)s", "value": 2}) + "\\n")
with open(os.path.join(run_dir, "events.jsonl"), "a") as fh:
    fh.write(json.dumps({"kind": "label", "key": "api_token", "value": "%(event_label)s"}) + "\\n")
    fh.write(json.dumps({"kind": "param", "name": "conn", "value": "dbname=x password=%(api_param_libpq)s",
                         "source": "user"}) + "\\n")
print(len(sys.argv))
""" % C  # noqa: UP031 (the script's own braces stay as they are)


def test_a_canary_in_every_path_reaches_no_byte_of_the_store_or_the_bundle(tmp_path: Path, isolated: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": SCRIPT, "config.yaml": "lr: 0.1\ndb_password: none\n"})
    (repo / "config.yaml").write_text(f"lr: 0.1\ndb_password: {C['tracked_diff']}\n")
    (repo / "deploy.sh").write_text(f"#!/bin/sh\nexport API_TOKEN={C['untracked_script']}\nrun\n")
    (repo / "settings.yaml").write_text(f"db:\n  host: h\n  password: {C['untracked_yaml']}\n")
    (repo / "params.json").write_text(json.dumps({"db_url": f"postgres://app:{C['params_file_url']}@db/x", "lr": 1}))
    git(repo, "add", "params.json")  # tracked too: the diff, not only the copy, must not carry it
    proc = envcap(
        "run", "--param", f"db_pass={C['param_db_pass']}", "--param", f"dsn=host=db password={C['param_libpq']}",
        "--params-file", "params.json",
        "--label", f"db_password={C['label_secret_name']}", "--label", f"src=https://u:{C['label_url']}@h/x",
        "--note", f"password={C['note_kv']}",
        "--", sys.executable, "train.py", "-p", C["argv_p_space"], f"-p{C['argv_p_attached']}",
        f"--pass={C['argv_pass_eq']}", f"DB_PASS={C['argv_db_pass']}", "-u", f"user:{C['argv_user']}",
        "-H", f"Authorization: Bearer {C['argv_bearer']}",
        cwd=repo, env={"HF_PASS": C["env_allowed_pass"]}, check=True)
    assert proc.stdout.strip() == "10"  # the command got its real arguments
    run_id = run_id_of(proc)
    bundle = tmp_path / "bundle.zip"
    envcap("export", run_id, "-o", str(bundle), check=True)
    view = show(run_id)
    store = every_byte(isolated)
    with zipfile.ZipFile(bundle) as zf:
        members = b"\n".join(zf.read(n) for n in zf.namelist())
    everything = store + bundle.read_bytes() + members + json.dumps(view).encode()
    assert run_id.encode() in store and REDACTED.encode() in store  # the run is there, redacted
    assert any("loss@" in name for name in view["metrics"])  # the metrics are there, their names scrubbed
    leaked = []
    for name, canary in C.items():
        hardening_support.TRIED["3. secret canaries"] += 1
        if canary.encode() in everything:
            leaked.append(name)
        else:
            hardening_support.HELD["3. secret canaries"] += 1
    assert leaked == []
    # The withheld content is still accounted for: size and hash, no bytes.
    untracked = {u["path"]: u for u in view["git"]["untracked"]}
    assert untracked["deploy.sh"]["object"] is None and untracked["deploy.sh"]["sha256"]
    assert untracked["settings.yaml"]["object"] is None and "secret" in untracked["settings.yaml"]["withheld"]
    assert view["git"]["diff"]["object"] is None and view["git"]["diff"]["size"] > 0
    assert view["params_files"][0]["object"] is None and view["params_files"][0]["sha256"]


def test_the_redactor_on_each_form_alone() -> None:
    r = Redactor()
    forms = {
        "argv": (r.argv(["x", "-p", "S1", "-pS2", "--pass=S3", "DB_PASS=S4", "-u", "u:S5", "-H", "Authorization: Bearer S6",
                         "--db-password", "S7", "--user=u:S8"]), [f"S{i}" for i in range(1, 9)]),
        "libpq": (r.text("host=db port=5432 password=S9 sslmode=require"), ["S9"]),
        "yaml": (r.text("db:\n  password: S10\n  user: app\n"), ["S10"]),
        "shell": (r.text("export GITHUB_PAT=S11\nAWS_SECRET_ACCESS_KEY='S12'\n"), ["S11", "S12"]),
        "json": (r.text('{"client_secret": "S13", "lr": 0.1}'), ["S13"]),
        "header": (r.text("curl -H 'Proxy-Authorization: Basic S14' https://x"), ["S14"]),
        "url": (r.text("postgres://app:S15@db/x"), ["S15"]),
    }
    for name, (out, secrets) in forms.items():
        for secret in secrets:
            TRIED["3. secret canaries"] += 1
            assert secret not in str(out), (name, out)
            HELD["3. secret canaries"] += 1
    # What reads a secret is not mistaken for what holds one, and ordinary text stays.
    for kept in ("password = os.environ['DB_PASSWORD']", "token = get_token()", "api_key=${API_KEY}",
                 "password: str = None", "lr=0.1 batch=32", "PWD=/home/x", "mkdir -p /tmp/x",
                 "tokenizer: bert-base-uncased", "max_tokens: 512", "num_passes=3", "TOKENIZERS_PARALLELISM=false"):
        assert r.text(kept) == kept, kept
    assert r.argv(["mkdir", "-p", "-v", "d"]) == ["mkdir", "-p", "-v", "d"]
    assert r.is_secret_name("db_pass") and r.is_secret_name("HF_PASS") and not r.is_secret_name("OLDPWD")


SECRET_NAMES = st.sampled_from(["password", "DB_PASS", "db_pass", "api_key", "API_KEY", "secret", "client_secret",
                                "token", "HF_TOKEN", "auth", "AUTH_TOKEN", "credentials", "PGPASSWORD", "pwd_db",
                                "github_pat", "private_key", "apikey", "x-api-key", "db.password", "passphrase"])
CANARY = st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789_-+/.~!", min_size=6,
                 max_size=24).map(lambda s: "Cn" + s + "Zq")


@SETTINGS
@given(SECRET_NAMES, CANARY, st.integers(0, 13), st.sampled_from(["", " ", "\t"]))
def test_generated_secret_assignments_never_survive(name: str, canary: str, form: int, space: str) -> None:
    # A canary value under a secret name, in each written form a secret is seen in.
    r = Redactor()
    flag = name.lower().replace("_", "-").replace(".", "-")
    texts = {
        0: f"{name}={canary}", 1: f"{name}{space}={space}{canary}", 2: f"{name}:{space} {canary}",
        3: f'"{name}":{space}"{canary}"', 4: f"'{name}': '{canary}'", 5: f"export {name}={canary}\n",
        6: f"host=db {name}={canary} port=5432", 7: f"https://user:{quote(canary, safe='')}@example.org/x",
        8: f"Authorization: Bearer {canary}", 9: f"{name}: {canary}\nnext: 1\n",
    }
    argvs = {10: ["cmd", f"--{flag}", canary], 11: ["cmd", f"--{flag}={canary}"], 12: ["cmd", "-p", canary],
             13: ["cmd", "-u", f"user:{canary}"]}
    with Case("3. secret canaries"):
        if form in texts:
            out = r.text(texts[form])
            assert canary not in out and quote(canary, safe="") not in out, (texts[form], out)
            assert r.may_contain_secret(json.dumps({"x": texts[form]}))
        else:
            out = " ".join(r.argv(argvs[form]))
            assert canary not in out, (argvs[form], out)
