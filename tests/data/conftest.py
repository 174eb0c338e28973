"""Fixtures for the data tests: the tiny raw files, and a real HTTP server on 127.0.0.1.

The server serves a folder, honours (or, when told, ignores) HTTP Range requests, can cut a
response short to simulate a dropped connection, and records every request it gets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture
def fixtures() -> Path:
    """The folder of tiny raw files (see its README.md)."""
    return FIXTURES


@dataclass
class LocalServer:
    """Handle on the running server: where it serves from and what it was asked."""

    url: str
    root: Path
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then drop the connection


class _Handler(BaseHTTPRequestHandler):
    server_state: LocalServer  # set on the subclass made per server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server_state
        state.requests.append((self.path, self.headers.get("Range")))
        path = state.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and state.honour_range:
            start = int(wanted.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_after is None:
            self.wfile.write(body)
        else:
            self.wfile.write(body[: state.cut_after])
            self.close_connection = True

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_server(tmp_path: Path):
    """A LocalServer serving ``tmp_path / "www"`` on 127.0.0.1 (a free port), in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    state = LocalServer(url="", root=root)
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default, in every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BAMREC_HOME, and no mirror from the environment."""
    home = tmp_path / "cache"
    monkeypatch.setenv("BAMREC_HOME", str(home))
    monkeypatch.delenv("BAMREC_MIRROR", raising=False)
    return home
