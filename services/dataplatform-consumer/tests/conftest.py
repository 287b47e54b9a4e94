"""The data platform stub: a real server on a free loopback port, one per test. And a real
server that answers whatever a test scripts, for the answers the stub never gives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dataplatform_stub.control import StubControl, running_stub


class ScriptedServer:
    """An HTTP server on a free loopback port: every POST gets ``answer`` (status, headers,
    body); ``answered`` lists the statuses sent, in order."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (201, {}, b"{}")
        self.answered: list[int] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, body = scripted.answer
                scripted.answered.append(status)  # before the client can see the answer
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # no access log on stderr

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/payments"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def answer_status(self, status: int) -> None:
        self.answer = (status, {"Content-Type": "application/json"}, b'{"detail": "scripted"}')

    def answer_undecodable(self) -> None:
        """A 200 whose body claims to be gzip and is not: the client cannot decode it."""
        self.answer = (200, {"Content-Encoding": "gzip"}, b"\x1f\x8b not gzip")

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def stub() -> Iterator[StubControl]:
    with running_stub() as control:
        yield control


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server
