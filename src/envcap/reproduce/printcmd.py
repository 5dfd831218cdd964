"""The rebuild as command lines to run by hand: ``docker run`` and ``apptainer exec``.

Both name the image by digest, never by tag, and mount the same code, data and run
directory as ``envcap rebuild`` would. Every word is quoted for a POSIX shell
(:func:`shlex.quote`), so that paths and values with spaces, quotes, ``$``, ``;`` or
backticks are passed as they are and run nothing. Mount options are CSV (docker and
apptainer ``--mount``), so a comma in a path is quoted there too. Secret values are
never written: ``docker run --env NAME`` takes the value from the caller's
environment, and apptainer is given ``APPTAINERENV_NAME="$NAME"``.

Apptainer is for HPC clusters without Docker: ``--nv`` gives it the host's NVIDIA
driver and GPUs (it does nothing on a host without them), ``--cleanenv`` keeps the
host's environment out, and ``APPTAINERENV_*`` variables set the run's.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..engines.spec import ContainerSpec, Mount, mount_option


def _lines(words: Sequence[Sequence[str]]) -> str:
    """Groups of words, one group a line, continued with a backslash."""
    return " \\\n    ".join(" ".join(group) for group in words if group)


def _q(word: str) -> str:
    return shlex.quote(word)


def docker_run_command(spec: ContainerSpec) -> str:
    groups: list[list[str]] = [["docker", "run", "--rm", "--network", "host"]]
    if spec.gpus:
        groups[0] += ["--gpus", "all"]
    if spec.user:
        groups[0] += ["--user", _q(spec.user)]
    groups.append(["--workdir", _q(spec.workdir)])
    groups += [["--mount", _q(mount_option(m))] for m in spec.mounts]
    groups += [["--env", _q(f"{name}={value}")] for name, value in sorted(spec.env.items())]
    groups += [["--env", _q(name)] for name in spec.secrets]
    groups.append(["--entrypoint", _q(spec.argv[0]), _q(spec.image), *(_q(a) for a in spec.argv[1:])])
    return _lines(groups)


def apptainer_mount(m: Mount) -> str:
    fields = ["type=bind", f"src={m.source}", f"dst={m.target}"] + (["ro"] if m.read_only else [])
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\n\r') else f for f in fields)


def apptainer_command(spec: ContainerSpec, *, plain_http: bool = False) -> str:
    env = [_q(f"APPTAINERENV_{name}={value}") for name, value in sorted(spec.env.items())]
    # Secret names are checked variable names ([A-Za-z_][A-Za-z0-9_]*): safe unquoted,
    # and the shell fills in the value from the caller's environment.
    env += [f'APPTAINERENV_{name}="${name}"' for name in spec.secrets]
    groups: list[list[str]] = [["env", *env[:1]]] if env else []
    groups += [[e] for e in env[1:]]
    head = ["apptainer", "exec", "--nv", "--cleanenv"] + (["--no-https"] if plain_http else [])
    groups.append(head)
    groups.append(["--pwd", _q(spec.workdir)])
    groups += [["--mount", _q(apptainer_mount(m))] for m in spec.mounts]
    groups.append([_q(f"docker://{spec.image}"), *(_q(a) for a in spec.argv)])
    return _lines(groups)
