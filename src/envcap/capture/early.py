"""A snapshot started before the command line is parsed, for the command to claim.

``envcap snapshot`` spends most of its time waiting on the probes' programs and files,
and a good part of its start on importing click. The console script
(:mod:`envcap.entry`) recognises a plain ``envcap snapshot`` before it imports click and
starts the capture here, in a thread; the command claims it with the arguments it parsed.
A claim with other arguments gets nothing (and the command captures as it always does),
and whatever the capture raised is raised again in the command, so that errors are
reported exactly as before.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.manifest import Manifest


class _Started:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.at = time.monotonic()
        self.manifest: Manifest | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._take, name="envcap-snapshot", daemon=True)
        self.thread.start()

    def _take(self) -> None:
        from .collect import snapshot

        try:
            self.manifest = snapshot(**self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again, as it was, by claim()
            self.error = exc


_started: _Started | None = None


def start(**kwargs: Any) -> None:
    """Start ``collect.snapshot(**kwargs)`` in the background."""
    global _started
    _started = _Started(kwargs)


def claim(**kwargs: Any) -> tuple[Manifest, float] | None:
    """The manifest of the snapshot started with exactly these arguments, once it is
    taken, and when it was started; None when none was."""
    global _started
    started, _started = _started, None
    if started is None or started.kwargs != kwargs:
        return None
    started.thread.join()
    if started.error is not None:
        raise started.error
    assert started.manifest is not None
    return started.manifest, started.at
