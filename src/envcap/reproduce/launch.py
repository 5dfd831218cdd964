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
command's status. Before both, it installs the run's own package editable from the
workspace, as the run's environment had it (``pip install -e``, no dependencies: the
image holds them), first with the build backend the image has, else in pip's isolated
build environment from the index (with ``--ca-bundle``'s CA, mounted for this step only). No value from a record is ever parsed by that shell: all arrive as
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

LAUNCHER = r"""out=$1 script=$2 args=$3 n=$4 e=$5 ca=$6
shift 6
py=
while [ "$n" -gt 0 ]; do
  if [ -z "$py" ] && [ -x "$1" ]; then py=$1; fi
  shift
  n=$((n - 1))
done
while [ "$e" -gt 0 ]; do
  (
    export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
      PIP_ROOT_USER_ACTION=ignore
    if [ -n "$ca" ]; then export PIP_CERT="$ca"; fi
    "$1" -m pip install --no-deps --no-build-isolation --no-index -e "$2" >>"$out/editable.log" 2>&1 \
      || "$1" -m pip install --no-deps -e "$2" >>"$out/editable.log" 2>&1
  ) || echo "$2" >>"$out/editable.failed"
  shift 2
  e=$((e - 1))
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
             interpreters: Sequence[str], editables: Sequence[tuple[str, str]] = (), ca: str = "") -> list[str]:
    """The entry point that installs the run's own package editable (``editables``: pairs
    of interpreter and checkout), captures the environment beside the command and runs
    the command."""
    return ["/bin/sh", "-c", LAUNCHER, "envcap-rebuild", out_dir, capture_script, json.dumps(dict(capture_args)),
            str(len(interpreters)), str(len(editables)), ca, *interpreters,
            *[word for pair in editables for word in pair], *spec.argv]



def secret_values(names: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    missing = [n for n in names if n not in env]
    if missing:
        raise RebuildError(f"--secret-env {missing[0]}: not set in your environment")
    return {n: env[n] for n in names}



def default_output() -> BinaryIO:
    return sys.stderr.buffer
