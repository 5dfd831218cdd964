"""The UI's model fits in a process of their own, started with the server.

The experiment page's estimates (fANOVA, permutation importance, Friedman's H) need
numpy, scikit-learn and Optuna. Importing them takes longer than the fits themselves
(about 1.5 s here, most of it scikit-learn pulling in ``scipy.stats``) and they hold
about 100 MiB. So ``envcap ui`` starts this worker beside the server: it imports the
libraries at once, on another core, while the server starts and before anyone asks for
the page, and the fits then run there, not in the server, whose threads keep answering
the other pages (a fit holds the interpreter most of the time it runs). The server's
own memory stays that of the listing.

The protocol is one JSON object a line each way, on the worker's standard input and
output: first the worker says ``{"ready": true}`` (or what it could not import), then
answers each ``{"kind": ..., "columns": [...], "y": [...], "fits": n}`` with
``{"ok": result}`` or ``{"error": type, "message": text}``. It ends when its input
closes (the server ended). The worker is started through :mod:`envcap.core.proc`, with
no secret of the server's environment (no variable a secret name names, no store
password).

Without the worker (``envcap importance``, a test's app, a worker that died twice) the
fits run in the calling process, as :mod:`.importance` always could.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Sequence

from ..core.errors import UsageError

_KINDS = ("fanova", "permutation", "h")
IMPORT_TIMEOUT = 120.0  # seconds for the worker to import its libraries and say it is ready
FIT_TIMEOUT = 600.0  # seconds for one estimate (5,000 runs, the most a page fits, take seconds)


def _columns_out(columns: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": c.name, "kind": c.kind, "x": list(c.x),
             "categories": None if c.categories is None else list(c.categories), "absent": c.absent}
            for c in columns]


def _columns_in(data: Any) -> list[Any]:
    from .importance import Column

    return [Column(d["name"], d["kind"], tuple(float(v) for v in d["x"]),
                   None if d["categories"] is None else tuple(str(c) for c in d["categories"]), int(d["absent"]))
            for d in data]


class FitWorker:
    """The server's handle on the worker process: one request at a time, restarted once
    if it dies; :meth:`fit` falls back to this process when it cannot be had."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: Any = None
        self._ready = False
        self._starts = 0
        self.unavailable: str | None = None  # why the fits run in this process instead

    def start(self) -> None:
        """Start the worker (it imports its libraries at once); returns without waiting."""
        import os

        from ..core import proc
        from ..core.redact import default_redactor

        redactor = default_redactor()
        env = {k: v for k, v in os.environ.items() if not redactor.is_secret_name(k)}
        self._starts += 1
        try:
            self._child = proc.start([sys.executable, "-m", "envcap.ui.fitworker"], env=env, stdin=proc.PIPE,
                                     stdout=proc.PIPE, stderr=proc.DEVNULL)
        except OSError as exc:
            self._child, self.unavailable = None, f"the fit worker could not be started: {exc}"
        self._ready = False

    def _line(self, timeout: float) -> Any:
        """The worker's next line; EOFError when it ended, or said nothing for ``timeout``
        seconds (a worker that hangs is ended and replaced, never waited on for ever)."""
        import select

        ready, _, _ = select.select([self._child.stdout], [], [], timeout)
        if not ready:
            raise EOFError(f"the fit worker said nothing for {timeout:g} s")
        line = self._child.stdout.readline()
        if not line:
            raise EOFError("the fit worker ended")
        return json.loads(line)

    def _wait_ready(self) -> None:
        if self._ready:
            return
        hello = self._line(IMPORT_TIMEOUT)
        if not hello.get("ready"):
            # Its libraries are missing: from now on the fits run here, which gives the
            # page the same error it gives without a worker.
            self.unavailable = str(hello.get("message") or "the fit worker could not import its libraries")
            self._stop()
            self._starts = 2
            raise UsageError(self.unavailable)
        self._ready = True

    def fit(self, kind: str, columns: Sequence[Any], y: Sequence[float], fits: int) -> Any:
        """The estimate ``kind`` over the columns and the metric, from the worker."""
        with self._lock:
            for _ in range(2):
                if self._child is None:
                    break
                try:
                    self._wait_ready()
                    request = {"kind": kind, "columns": _columns_out(columns), "y": list(y), "fits": fits}
                    self._child.stdin.write(json.dumps(request).encode() + b"\n")
                    self._child.stdin.flush()
                    answer = self._line(FIT_TIMEOUT)
                except (EOFError, OSError, ValueError):  # it ended, hung or said something else
                    self._stop()
                    if self._starts < 2:
                        self.start()
                    continue
                if "ok" in answer:
                    return answer["ok"]
                error = {"UsageError": UsageError, "RuntimeError": RuntimeError}.get(answer.get("error"), ValueError)
                raise error(str(answer.get("message")))
            if self.unavailable is None:
                self.unavailable = "the fit worker ended"
        from .importance import compute

        return compute(kind, columns, y, fits)

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            try:
                stream.close()
            except OSError:
                pass
        # It keeps nothing: killed at once, even in the middle of its imports (a server
        # that could not start must not wait for them) or stopped.
        child.kill()
        child.wait()

    def close(self) -> None:
        """End the worker."""
        with self._lock:
            self._stop()


def start_worker() -> FitWorker:
    """Start the fit worker and make the experiment page's fits use it."""
    from . import importance

    worker = FitWorker()
    worker.start()
    importance.use_worker(worker)
    return worker


def main() -> int:
    """The worker process: import, say ready, answer requests until the input closes."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a library that prints must not break the protocol

    def say(obj: Any) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    try:
        from . import importance

        # What the default page needs (fANOVA through Optuna, Friedman's H through
        # scikit-learn's ensembles); the permutation method's module comes when asked for.
        importance._numpy()
        import optuna
        import optuna.importance  # noqa: F401
        import sklearn.ensemble  # noqa: F401
    except UsageError as exc:
        say({"ready": False, "message": str(exc)})
        return 1
    except ImportError as exc:
        say({"ready": False, "message": f"parameter importance needs its extra: pip install 'envcap[ui]' "
                                        f"({exc.name} is missing)"})
        return 1
    say({"ready": True})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            kind = request["kind"]
            if kind not in _KINDS:
                raise ValueError(f"unknown fit {kind!r}")
            result = importance.compute(kind, _columns_in(request["columns"]), [float(v) for v in request["y"]],
                                        int(request["fits"]))
            say({"ok": result})
        except (RuntimeError, ValueError, UsageError, KeyError, TypeError) as exc:
            say({"error": type(exc).__name__, "message": str(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
