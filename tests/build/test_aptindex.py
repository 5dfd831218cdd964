"""The check of pinned OS versions against the mirror, where the mirror cannot be reached:
a site without the network waits for one host once, not for every suite and compression."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from envcap.builder import aptindex


def test_a_mirror_that_never_answers_is_asked_once_and_left_to_the_apt_step(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("ENVCAP_HOME", str(tmp_path))
    monkeypatch.setattr(aptindex, "_TIMEOUT", 0.5)
    # A host that takes the connection and never says a word (a black-holed proxy).
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    asked: list[str] = []

    def fetch(url: str) -> bytes | None:
        asked.append(url)
        return aptindex._fetch(url)

    lock = SimpleNamespace(system_manager="dpkg", system_pins=[("libc6", "2.36-9+deb12u9", "amd64")],
                           os_codename="bookworm", os_id="debian", files={}, pin_os="")
    notes: list[str] = []
    start = time.monotonic()
    try:
        aptindex.check(lock, mirror=f"http://127.0.0.1:{hole.getsockname()[1]}/debian", fetch=fetch,
                       progress=notes.append)
    finally:
        hole.close()
    assert len(asked) == 1, asked  # not bookworm and bookworm-updates, .xz, .gz and plain: six waits
    assert time.monotonic() - start < 3
    assert len(notes) == 1 and "could not be read" in notes[0] and "left to the apt step" in notes[0]


def test_a_server_without_the_file_is_asked_for_the_next_compression(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: object) -> None:
    """A 404 is an answer: the same host is asked for the other forms of the index."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    monkeypatch.setenv("ENVCAP_HOME", str(tmp_path))
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.endswith("/Packages"):
                body = b"Package: libc6\nVersion: 2.36-9+deb12u9\n\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lock = SimpleNamespace(system_manager="dpkg", system_pins=[("libc6", "2.36-9+deb12u9", "amd64")],
                           os_codename="bookworm", os_id="debian", files={}, pin_os="")
    try:
        aptindex.check(lock, mirror=f"http://127.0.0.1:{server.server_port}/debian")
    finally:
        server.shutdown()
        server.server_close()
    assert [p.rsplit("/", 1)[1] for p in asked if "bookworm/" in p] == ["Packages.xz", "Packages.gz", "Packages"]
