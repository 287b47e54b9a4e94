"""A tiny HTTP server for Kubernetes probes (/livez and /readyz answer 200 or 503) and for
Prometheus (/metrics)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ticketing_events import metrics


class HealthServer:
    def __init__(
        self, host: str, port: int, live: Callable[[], bool], ready: Callable[[], bool]
    ) -> None:
        checks = {"/livez": live, "/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, metrics.prometheus_text(), metrics.CONTENT_TYPE)
                    return
                check = checks.get(self.path)
                if check is None:
                    self.send_error(404)
                    return
                ok = check()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")

            def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:  # probes would flood the logs
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
