"""A loopback file server that hands a build its private files for the build's duration.

Docker's classic builder has no build secrets and no RUN mounts, and anything a
Dockerfile COPYs or ADDs stays in a layer. So a CA bundle (and a local wheel) is served
here, on 127.0.0.1, to build steps that run on the host's network; the step fetches
it into a temporary folder and removes it before it ends, so no layer holds it (see
images/steps/prologue.sh). The port is derived from what is served, so the same files
give the same build arguments, and so the same layer cache keys and, with buildah,
the same image digest.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..pins.errors import BuildError

PORT_BASE, PORT_SPAN, PORT_TRIES = 41000, 8000, 40


class _Handler(http.server.BaseHTTPRequestHandler):
    files: Mapping[str, Path] = {}

    def do_GET(self) -> None:
        path = self.files.get(self.path.lstrip("/"))
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def preferred_port(files: Mapping[str, Path]) -> int:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name].read_bytes()).digest())
    return PORT_BASE + int.from_bytes(digest.digest()[:4], "big") % PORT_SPAN


@contextmanager
def serve(files: Mapping[str, Path]) -> Iterator[int]:
    """Serve ``files`` (URL path -> file) on 127.0.0.1; yield the port."""
    handler = type("Handler", (_Handler,), {"files": dict(files)})
    start = preferred_port(files)
    server = None
    for offset in range(PORT_TRIES):
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT_BASE + (start - PORT_BASE + offset) % PORT_SPAN),
                                                     handler)
            break
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise BuildError(f"cannot serve the build's private files on 127.0.0.1: {exc.strerror}") from exc
    if server is None:
        raise BuildError(f"no free port for the build's file server in {PORT_BASE}-{PORT_BASE + PORT_SPAN}")
    thread = threading.Thread(target=server.serve_forever, name="envcap-build-files", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
