"""``envcap rebuild``: run a recorded run again in its own image and say whether it reproduced.

The steps, each in its own module:

- :mod:`.plan`: what the run needs (its image, code, data, command, parameters, seeds
  and environment), worked out and checked before anything runs;
- :mod:`.workspace`: the code at the recorded commit, with the recorded diff and
  untracked files, in a fresh directory (never the user's checkout);
- :mod:`.preflight`: whether this host's GPU driver can run the image's CUDA;
- :mod:`.launch`: what the container is given and the launcher inside it (the engines
  that run it, Docker through its SDK or podman's CLI, are :mod:`envcap.engines`);
- :mod:`.printcmd`: the same as a ``docker run`` and an ``apptainer exec`` command line;
- :mod:`.verdict`: metrics, outputs, exit status and environment compared;
- :mod:`.report`: the frozen report of it all (``--json`` is its ``to_dict``);
- :mod:`.rebuild`: all of it in order, recording the result as a new run.
"""

from __future__ import annotations

from .errors import PreflightError, RebuildError
from .plan import RebuildOptions

__all__ = ["PreflightError", "RebuildError", "RebuildOptions"]
