"""``OTEL_METRICS_EXPORTER=prometheus,otlp``: the same instruments also reach an OTLP collector
(a gRPC MetricsService of this test), from a process of their own since the meter provider is
set once per process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as service
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as service_grpc

PROCESS = """
from ticketing_events.metrics import configure_metrics, meter, prometheus_text
provider = configure_metrics("otlp-test")
meter("test").create_counter("ticketing.test.events").add(7, {"topic": "t"})
assert b"ticketing_test_events_total" in prometheus_text()
provider.force_flush()
provider.shutdown()
"""


class Collector(service_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[service.ExportMetricsServiceRequest] = []
        self.received = threading.Event()

    def Export(self, request: Any, context: Any) -> service.ExportMetricsServiceResponse:
        self.requests.append(request)
        self.received.set()
        return service.ExportMetricsServiceResponse()


def test_metrics_also_go_out_over_otlp() -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    service_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        env = {
            **os.environ,
            "OTEL_SDK_DISABLED": "false",
            "OTEL_METRICS_EXPORTER": "prometheus,otlp",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true",
        }
        subprocess.run([sys.executable, "-c", PROCESS], env=env, check=True, timeout=60)
    finally:
        server.stop(None)
    points = [
        (resource.resource, metric.name, point.as_int, point.attributes)
        for request in collector.requests
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.sum.data_points
    ]
    ours = [p for p in points if p[1] == "ticketing.test.events"]
    assert ours, f"no ticketing.test.events among {len(points)} points"
    for resource, _, value, attributes in ours:  # each export (flush, shutdown) is cumulative
        assert value == 7
        assert {(a.key, a.value.string_value) for a in attributes} == {("topic", "t")}
        assert ("service.name", "otlp-test") in {
            (a.key, a.value.string_value) for a in resource.attributes
        }
