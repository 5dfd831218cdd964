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
image holds them): with the build backend the rebuild mounted (:mod:`.backend`: no index,
no isolated build), else with the build backend the image has, else in pip's isolated
build environment from the index (with ``--ca-bundle``'s CA, mounted for this step only).
The image's environment is root's: for a caller who is not root, the container starts as
root for that install only, gives what pip wrote into the workspace to the caller, and
runs the capture and the command as the caller's uid:gid (as ``--user`` would have). No
value from a record is ever parsed by that shell: all arrive as its arguments.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from ..engines.spec import ContainerSpec
from .errors import RebuildError

# The command's part: the environment captured in the background, the command in the
# foreground (as the caller's user where the install step ran as root: see DROP).
RUN = r"""out=$1 script=$2 args=$3 py=$4
shift 4
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

# Become the caller (uid:gid), as ``docker run --user`` would have made the container,
# and run the rest: the image's own interpreter does it (setpriv where there is none).
# Python's start-up sets LC_CTYPE where the locale is C (PEP 538): taken out again unless
# the container had it, so that the run sees the environment it would have seen.
DROP = r"""import os, pwd, sys
uid, gid = (int(x) for x in sys.argv[1].split(":"))
if sys.argv[2] != "set":
    os.environ.pop("LC_CTYPE", None)
try:
    os.initgroups(pwd.getpwuid(uid).pw_name, gid)
except KeyError:
    os.setgroups([])
os.setgid(gid)
os.setuid(uid)
os.execvp(sys.argv[3], sys.argv[3:])
"""

# The install step: the run's own package, editable, with the build backend envcap
# mounted (no index, no isolated build) where there is one, else with what the image
# has, else in pip's isolated build environment from the index. Where ``drop`` is set
# the container started as root so that pip can write into the image's root-owned
# environment: what pip wrote into the workspace is given to the caller, and the rest
# runs as the caller, who is also given the checkouts the build restored in the image
# (``own``, one path a line: editable installs of other checkouts, the caller's on the
# run's machine; git will not read a checkout another user owns).
LAUNCHER = r"""out=$1 script=$2 args=$3 n=$4 e=$5 ca=$6 backend=$7 drop=$8 run=$9 own=${10}
shift 10
py=
while [ "$n" -gt 0 ]; do
  if [ -z "$py" ] && [ -x "$1" ]; then py=$1; fi
  shift
  n=$((n - 1))
done
if [ "$e" -gt 0 ]; then date +%s.%N >"$out/installing" 2>/dev/null; fi
while [ "$e" -gt 0 ]; do
  (
    export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
      PIP_ROOT_USER_ACTION=ignore
    if [ -n "$ca" ]; then export PIP_CERT="$ca"; fi
    if [ -n "$backend" ] && PYTHONPATH="$backend" "$1" -m pip install --no-deps --no-build-isolation --no-index \
        -e "$2" >>"$out/editable.log" 2>&1; then
      echo "backend" >>"$out/editable.how"
    elif [ -z "$backend" ] && "$1" -m pip install --no-deps --no-build-isolation --no-index -e "$2" \
        >>"$out/editable.log" 2>&1; then
      echo "image" >>"$out/editable.how"
    else
      "$1" -m pip install --no-deps -e "$2" >>"$out/editable.log" 2>&1 && echo "index" >>"$out/editable.how"
    fi
  ) || echo "$2" >>"$out/editable.failed"
  if [ -n "$drop" ]; then chown -R "$drop" "$2" 2>/dev/null; fi
  shift 2
  e=$((e - 1))
done
if [ -f "$out/installing" ]; then date +%s.%N >"$out/installed" 2>/dev/null; fi
if [ -n "$drop" ]; then
  chown "$drop" "$out"/editable.* "$out"/install* 2>/dev/null
  printf '%s\n' "$own" | while IFS= read -r p; do
    if [ -n "$p" ] && [ -d "$p" ]; then chown -R "$drop" "$p" 2>/dev/null; fi
  done
  if [ -n "$py" ]; then
    exec "$py" -I -S -B -c "$DROP" "$drop" "${LC_CTYPE+set}" /bin/sh -c "$run" envcap-run "$out" "$script" "$args" \
      "$py" "$@"
  fi
  exec setpriv --reuid="${drop%:*}" --regid="${drop#*:}" --clear-groups \
    /bin/sh -c "$run" envcap-run "$out" "$script" "$args" "$py" "$@"
fi
exec /bin/sh -c "$run" envcap-run "$out" "$script" "$args" "$py" "$@"
"""


def launcher(spec: ContainerSpec, out_dir: str, capture_script: str, capture_args: Mapping[str, Any],
             interpreters: Sequence[str], editables: Sequence[tuple[str, str]] = (), ca: str = "",
             backend: str = "", drop: str = "", own: Sequence[str] = ()) -> list[str]:
    """The entry point that installs the run's own package editable (``editables``: pairs
    of interpreter and checkout; ``backend``: the build backend's folder in the container;
    ``drop``: the caller's uid:gid where the container starts as root for that install;
    ``own``: checkouts in the image given to the caller before the run),
    captures the environment beside the command and runs the command."""
    return ["/bin/sh", "-c", LAUNCHER.replace('"$DROP"', _sh_quote(DROP)), "envcap-rebuild", out_dir,
            capture_script, json.dumps(dict(capture_args)), str(len(interpreters)), str(len(editables)), ca, backend,
            drop, RUN, "\n".join(own), *interpreters, *[word for pair in editables for word in pair], *spec.argv]


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"



def secret_values(names: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    missing = [n for n in names if n not in env]
    if missing:
        raise RebuildError(f"--secret-env {missing[0]}: not set in your environment")
    return {n: env[n] for n in names}



def default_output() -> BinaryIO:
    return sys.stderr.buffer
