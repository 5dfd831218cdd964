"""``envcap rebuild --print``: the docker and apptainer command lines, run by a real shell
(bash) against stand-in programs that write down the arguments they got."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envcap.engines.podman import podman_argv
from envcap.engines.spec import ContainerSpec, Mount, mount_option
from envcap.reproduce.printcmd import apptainer_command, docker_run_command

IMAGE = "127.0.0.1:5000/envs@sha256:" + "ab" * 32
HOSTILE = "we\"ird 'da ta';$(touch pwned1)`touch pwned2`,x&y|z>w"
STAND_IN = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["DUMP"], "w") as fh:
    json.dump({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items()
                                               if k.startswith("APPTAINERENV_") or k == "HF_TOKEN"}}}}, fh)
"""


@pytest.fixture
def spec(tmp_path: Path) -> ContainerSpec:
    data = tmp_path / HOSTILE / "train.csv"
    return ContainerSpec(
        image=IMAGE,
        argv=("python", "train.py", "--name", "x; touch pwned3", "$(touch pwned4)", "it's"),
        workdir="/home/ada/my proj",
        env={"PATH": "/opt/venv/bin:/usr/bin", "NOTE": "a b $HOME \"q\" 'single' ; touch pwned5",
             "ENVCAP_PARAMS": '{"lr": 0.1, "name": "a,b"}'},
        secrets=("HF_TOKEN",),
        mounts=(Mount(str(tmp_path / "ws"), "/home/ada/my proj", False), Mount(str(data), f"/data/{HOSTILE}", True)),
        user="1000:1000", gpus=True)


def run_printed(command: str, tmp_path: Path, program: str) -> dict[str, Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / program
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    dump = tmp_path / f"{program}.json"
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DUMP": str(dump), "HF_TOKEN": "hf_SeCrEt value$1", "HOME": "/h"}
    proc = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert not list(work.iterdir()), "the command ran something it should have passed as an argument"
    assert not list(tmp_path.glob("**/pwned*"))
    return json.loads(dump.read_text())  # type: ignore[no-any-return]


def mount_fields(value: str) -> list[str]:
    return next(csv.reader([value]))


def test_docker_run_passes_every_word_exactly(spec: ContainerSpec, tmp_path: Path) -> None:
    text = docker_run_command(spec)
    got = run_printed(text, tmp_path, "docker")
    argv = got["argv"]
    assert argv[:7] == ["run", "--rm", "--network", "host", "--gpus", "all", "--user"]
    assert argv[argv.index("--workdir") + 1] == "/home/ada/my proj"
    mounts = [mount_fields(argv[i + 1]) for i, a in enumerate(argv) if a == "--mount"]
    assert mounts == [["type=bind", f"source={m.source}", f"target={m.target}", *(["readonly"] if m.read_only else [])]
                      for m in spec.mounts]
    envs = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert sorted(envs) == sorted([f"{k}={v}" for k, v in spec.env.items()] + ["HF_TOKEN"])
    entry = argv.index("--entrypoint")
    assert argv[entry + 1:] == ["python", IMAGE, *spec.argv[1:]]
    # Pinned by digest, and the secret's value is not in the command line.
    assert f"{IMAGE.split('@')[0]}@sha256:" in text and "hf_SeCrEt" not in text


def test_apptainer_exec_passes_every_word_and_the_secret_from_the_caller(spec: ContainerSpec,
                                                                          tmp_path: Path) -> None:
    text = apptainer_command(spec, plain_http=True)
    assert "apptainer exec --nv" in text and f"docker://{IMAGE}" in text
    got = run_printed(text, tmp_path, "apptainer")
    argv = got["argv"]
    assert argv[:4] == ["exec", "--nv", "--cleanenv", "--no-https"]
    assert argv[argv.index("--pwd") + 1] == "/home/ada/my proj"
    mounts = [mount_fields(argv[i + 1]) for i, a in enumerate(argv) if a == "--mount"]
    assert mounts[1] == ["type=bind", f"src={spec.mounts[1].source}", f"dst={spec.mounts[1].target}", "ro"]
    assert argv[-len(spec.argv) - 1:] == [f"docker://{IMAGE}", *spec.argv]
    assert got["env"] == {**{f"APPTAINERENV_{k}": v for k, v in spec.env.items()},
                          "APPTAINERENV_HF_TOKEN": "hf_SeCrEt value$1", "HF_TOKEN": "hf_SeCrEt value$1"}
    assert "hf_SeCrEt" not in text


def test_mount_options_quote_commas_and_quotes() -> None:
    m = Mount('/a,b/"c"', "/x", True)
    assert mount_fields(mount_option(m)) == ["type=bind", 'source=/a,b/"c"', "target=/x", "readonly"]


def test_podman_is_given_the_same_container(spec: ContainerSpec) -> None:
    argv = podman_argv(spec, ["/bin/sh", "-c", "x"])
    assert argv[:5] == ["podman", "run", "--rm", "--network", "host"]
    assert json.loads(argv[argv.index("--entrypoint") + 1]) == ["/bin/sh", "-c", "x"]
    assert ["--env", "HF_TOKEN"] == argv[argv.index("HF_TOKEN") - 1:argv.index("HF_TOKEN") + 1]
    assert ["--device", "nvidia.com/gpu=all"] == argv[argv.index("--device"):argv.index("--device") + 2]
    assert argv[-1] == IMAGE and not any("hf_" in a for a in argv)


def test_podman_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from envcap.engines.podman import PodmanRunner
    from envcap.reproduce.errors import RebuildError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RebuildError, match="podman is not installed"):
        PodmanRunner()

