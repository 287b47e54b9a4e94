"""PrometheusServer: the real Prometheus of make infra-install scrapes a `/metrics` endpoint this
test serves, and its query API returns what was scraped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ticketing_events.testing import Harness, PrometheusServer, ScrapeTarget

pytestmark = pytest.mark.prometheus


class Counter:
    """A counter served in the Prometheus text format, as a service's `/metrics` would."""

    def __init__(self) -> None:
        self.value = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        counter = self

        class Metrics(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "# HELP test_events_total Events handled.\n"
                    "# TYPE test_events_total counter\n"
                    f'test_events_total{{topic="payments"}} {counter.value}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per scrape otherwise

        return Metrics


@pytest.fixture
def counter() -> Iterator[Counter]:
    c = Counter()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path, counter: Counter) -> Iterator[PrometheusServer]:
    target = ScrapeTarget(counter.address, job="stub", labels={"service": "stub-service"})
    server = PrometheusServer(tmp_path / "prometheus", [target], scrape_interval=0.5)
    server.start()
    yield server
    server.stop()


def test_a_query_returns_the_scraped_counter_and_follows_it(
    prometheus: PrometheusServer, counter: Counter
) -> None:
    counter.value = 7
    prometheus.wait_for_targets_up()
    (labels, value), *others = prometheus.query('test_events_total{service="stub-service"}')
    assert not others
    assert value == 7
    assert labels["job"] == "stub"
    assert labels["instance"] == counter.address
    assert labels["topic"] == "payments"

    counter.value = 19

    def sees_new_value() -> bool:
        return [v for _, v in prometheus.query("sum(test_events_total)")] == [19]

    Harness.wait_until(sees_new_value, timeout=30, what="Prometheus to scrape the new value")
    assert prometheus.query("scalar(sum(test_events_total)) + 1") == [({}, 20)]
    with pytest.raises(RuntimeError, match="bad_data"):  # Prometheus's own error
        prometheus.query("sum(")
