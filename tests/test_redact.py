"""Secrets are recognised and replaced; ordinary values are left alone."""

from __future__ import annotations

import pytest

from envcap.core.redact import REDACTED, Redactor

R = Redactor()

SECRETS = [
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2" * 9,
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "glpat-" + "x1y2z3" * 4,
    "hf_" + "AbCdEfGhIj" * 4,
    "xoxb-1234567890-abcdefghijkl",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "sk-proj-" + "Z" * 40,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_formats_are_replaced_anywhere_in_text(secret: str) -> None:
    out = R.text(f"before {secret} after")
    assert secret not in out and REDACTED in out
    assert out.startswith("before ") and out.endswith(" after")


@pytest.mark.parametrize(
    "url, leaked",
    [
        ("https://user:hunter2@pypi.example.com/simple", "hunter2"),
        ("https://ghs_tokenvalue1234@github.com/org/repo.git", "ghs_tokenvalue1234"),
        ("https://oauth2:abc123@gitlab.example.com/x.git", "abc123"),
        ("https://example.com/file?token=s3cr3t&x=1", "s3cr3t"),
        ("https://acct.blob.core.windows.net/c/f?sv=2020&sig=AbCdEf%2B", "AbCdEf"),
        ("https://conda.anaconda.org/t/tk-123456-abcdef/private-channel/linux-64", "tk-123456-abcdef"),
    ],
)
def test_url_credentials_are_removed(url: str, leaked: str) -> None:
    out = R.text(url)
    assert leaked not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "value",
    [
        "/usr/local/cuda/bin:/usr/bin:/bin",
        "git+ssh://git@github.com/org/repo.git@0123abcd",
        "https://pypi.org/simple",
        "12345",
        "cuda>=13.0 brand=tesla,driver>=535,driver<536",
        "-O2 -fstack-protector-strong -Wformat",
        "8.0;8.6;9.0+PTX",
        ":4096:8",
    ],
)
def test_benign_values_are_untouched(value: str) -> None:
    assert R.text(value) == value


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD",
                                  "GITHUB_TOKEN", "OPENAI_APIKEY", "DB_CREDENTIALS", "NPM_AUTH", "AUTHORIZATION"])
def test_secret_names(name: str) -> None:
    assert R.is_secret_name(name)
    assert R.value(name, "anything") == REDACTED


@pytest.mark.parametrize("name", ["PATH", "CUDA_HOME", "SLURM_JOB_ID", "KEYBOARD_LAYOUT", "CUBLAS_WORKSPACE_CONFIG",
                                  "NCCL_DEBUG", "LD_LIBRARY_PATH", "PWD", "OMP_NUM_THREADS"])
def test_benign_names(name: str) -> None:
    assert not R.is_secret_name(name)
    assert R.value(name, "/usr/local/cuda") == "/usr/local/cuda"


def test_argv_forms() -> None:
    argv = ["train.py", "--api-key", "k1", "--token=k2", "HF_TOKEN=k3", "--lr", "0.1", "--password", "k4"]
    out = R.argv(argv)
    assert not {"k1", "k2", "k3", "k4"} & set("".join(out).split(REDACTED))
    assert all(k not in " ".join(out) for k in ("k1", "k2", "k3", "k4"))
    assert out[:2] == ["train.py", "--api-key"] and "0.1" in out


def test_configured_names_and_patterns() -> None:
    r = Redactor(extra_names=["SESSIONID"], extra_patterns=[r"mylab_[a-z0-9]{8}"])
    assert r.value("MY_SESSIONID", "v") == REDACTED
    assert r.text("x mylab_abcd1234 y") == f"x {REDACTED} y"


def test_every_secret_pattern_has_a_hint() -> None:
    # may_contain_secret skips the expressions when no hint is present: a pattern whose
    # matches need no hint would be skipped wrongly.
    import re

    from envcap.core.redact import SECRET_HINTS, SECRET_PATTERNS

    for secret in SECRETS:
        assert any(h in secret for h in SECRET_HINTS), secret
        assert any(re.search(p, secret, re.DOTALL) for p in SECRET_PATTERNS), secret
        assert R.may_contain_secret('{"x":' + __import__("json").dumps(secret) + "}")


@pytest.mark.parametrize("url", ["https://user:hunter2@h/x", "https://h/f?token=s3cr3t", "https://c.org/t/tk-123456-abc/ch"])
def test_url_secrets_are_noticed_in_serialized_records(url: str) -> None:
    import json

    assert R.may_contain_secret(json.dumps({"u": url}))
    assert not R.may_contain_secret(json.dumps({"u": "https://pypi.org/simple", "p": "/usr/bin"}))


def test_configured_names_are_found_in_assignments_in_text_and_records() -> None:
    # A configured secret name that holds none of the built-in hints (pass, key, token...)
    # is still scrubbed from free text and noticed in a serialized record.
    import json

    r = Redactor(extra_names=["SessionId"])
    assert r.text("export MY_SESSIONID=abc123 other=1") == f"export MY_SESSIONID={REDACTED} other=1"
    assert r.may_contain_secret(json.dumps({"cmd": "run --x sessionid=abc123"}))
    assert not R.may_contain_secret(json.dumps({"cmd": "run --x sessionid=abc123"}))


@pytest.mark.parametrize("text", [
    "API_KEY=abc123", "Api_Key: abc123", "db password=hunter2 host=x", "MY_TOKEN='t0k3n'",
    "ÄPI_KEY=abc123 and PASSWORD=x", "naïve secret_value=abc", "K\u212aEY=abc API\u212aEY=abc",
    "\u017fecret=abc SECRET=abc", "keyring patch compat path=/usr/lib",
])
def test_hints_are_found_alike_in_ascii_and_other_text(text: str) -> None:
    # ASCII text is searched lower-cased (fast); any other text case-insensitively. Both
    # find the same hints at the same offsets, so both redact the same.
    import re

    from envcap.core.redact import _ASSIGNMENT_HINT

    found = [(m.start(), m.end()) for m in R._hints(text)]
    assert found == [(m.start(), m.end()) for m in _ASSIGNMENT_HINT.finditer(text)]
    assert found == [(m.start(), m.end()) for m in re.finditer(_ASSIGNMENT_HINT.pattern, text)]
    slow = Redactor()
    slow._name_hint_lower = None  # the case-insensitive search only
    assert R.text(text) == slow.text(text)
    assert R.may_contain_secret(text) == slow.may_contain_secret(text)
