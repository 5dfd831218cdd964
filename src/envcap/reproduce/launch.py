"""The rebuild's container: what it is given and the launcher that runs inside it.

The engines that run it (Docker through its SDK, or podman's CLI) are in
:mod:`envcap.engines`.

Every container runs on the host's network (no network is ever created), as the
caller's user and group (so that what it writes into the workspace is theirs), with
the code, the data and envcap's own package bind-mounted, and the GPUs when the run
needs them.

Inside, a small POSIX shell launcher starts the environment capture in the background
(envcap's package mounted read-only and run by the image's own interpreter, as the build
fidelity check does: nothing is installed into the image), runs the command in the
foreground, notes when it started and ended, waits for the capture, and exits with the
command's status. No value from a record is ever parsed by that shell: all arrive as
its arguments.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from ..engines.spec import ContainerSpec
from .errors import RebuildError

LAUNCHER = r"""out=$1 script=$2 args=$3 n=$4
shift 4
py=
while [ "$n" -gt 0 ]; do
  if [ -z "$py" ] && [ -x "$1" ]; then py=$1; fi
  shift
  n=$((n - 1))
done
cap=
if [ -n "$py" ]; then
  "$py" -I -B -c "$script" "$args" >"$out/manifest.part" 2>"$out/capture.err" </dev/null &
  cap=$!
else
  echo "no Python interpreter in the image to capture it with" >"$out/capture.err"
fi
date +%s.%N >"$out/started" 2>/dev/null
"$@"
status=$?
date +%s.%N >"$out/ended" 2>/dev/null
if [ -n "$cap" ] && wait "$cap"; then mv "$out/manifest.part" "$out/manifest.json"; fi
exit "$status"
"""



def launcher(spec: ContainerSpec, out_dir: str, capture_script: str, capture_args: Mapping[str, Any],
             interpreters: Sequence[str]) -> list[str]:
    """The entry point that captures the environment beside the command and runs the command."""
    return ["/bin/sh", "-c", LAUNCHER, "envcap-rebuild", out_dir, capture_script, json.dumps(dict(capture_args)),
            str(len(interpreters)), *interpreters, *spec.argv]



def secret_values(names: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    missing = [n for n in names if n not in env]
    if missing:
        raise RebuildError(f"--secret-env {missing[0]}: not set in your environment")
    return {n: env[n] for n in names}



def default_output() -> BinaryIO:
    return sys.stderr.buffer
