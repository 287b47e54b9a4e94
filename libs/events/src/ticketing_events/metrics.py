"""Metrics: the OpenTelemetry metrics SDK, read by Prometheus on ``/metrics`` and pushed over
OTLP when configured.

Why the OpenTelemetry SDK rather than ``prometheus-client`` alone: one set of instruments
serves both the Prometheus scrape and an OTLP collector, names follow the OpenTelemetry
semantic conventions (``messaging.*``, ``http.server.*``), and the FastAPI and operator
metrics share the resource (``service.name``) with the traces.

``OTEL_METRICS_EXPORTER`` chooses the exporters: ``prometheus`` (the default), ``otlp``
(endpoint from ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``),
both comma-separated, or ``none``. ``OTEL_SDK_DISABLED=true`` turns metrics off with the
rest of the SDK; ``/metrics`` then answers with no series.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import metrics
from opentelemetry.metrics import Meter, Observation
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

log = structlog.get_logger("ticketing_events.metrics")

REGISTRY = CollectorRegistry()
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: a handler's batch or a relay's publish, from 1 ms to 30 s.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


_provider: MeterProvider | None = None


def configure_metrics(service_name: str) -> MeterProvider | None:
    """Install the global meter provider for this process; later calls return the first."""
    global _provider
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if _provider is not None:
        return _provider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    exporters = {
        e.strip() for e in os.environ.get("OTEL_METRICS_EXPORTER", "prometheus").split(",")
    }
    readers: list[MetricReader] = []
    if "prometheus" in exporters:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader(registry=REGISTRY))
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    views = [
        View(
            instrument_name="*.duration",
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
        ),
        View(
            instrument_name="ticketing.consumer.batch.size",
            aggregation=ExplicitBucketHistogramAggregation(BATCH_BUCKETS),
        ),
    ]
    provider = _provider = MeterProvider(metric_readers=readers, resource=resource, views=views)
    metrics.set_meter_provider(provider)
    log.debug("metrics configured", exporters=sorted(exporters))
    return provider


def prometheus_text() -> bytes:
    """The process's metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


def meter(name: str) -> Meter:
    return metrics.get_meter(name)


class _ConsumerInstruments:
    """The consumer runtime's instruments, created once per process: an instrument created
    twice under one name keeps the first one's callbacks, so the gauges read every live
    ``ConsumerMetrics`` (one per runtime) instead."""

    def __init__(self) -> None:
        m = meter("ticketing_events.consumer")
        self.live: weakref.WeakSet[ConsumerMetrics] = weakref.WeakSet()
        self.consumed = m.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to the consumer runtime by Kafka",
        )
        self.handled = m.create_counter(
            "ticketing.consumer.handled",
            unit="{message}",
            description="Events whose handler finished (the effect applied or found a duplicate)",
        )
        self.dead_lettered = m.create_counter(
            "ticketing.consumer.dead_lettered",
            unit="{message}",
            description="Events sent to the group's dead-letter topic, by reason",
        )
        self.retries = m.create_counter(
            "ticketing.consumer.retries",
            unit="{retry}",
            description="Handler calls made again, after a handler error or during an outage",
        )
        self.failures = m.create_counter(
            "ticketing.consumer.failures",
            unit="{error}",
            description="Handler calls that raised, by error type",
        )
        self.commits_failed = m.create_counter(
            "ticketing.consumer.commits.failed",
            unit="{commit}",
            description=(
                "Offset commits Kafka refused, never confirmed or let an older one overwrite"
                " (sent again)"
            ),
        )
        self.duration = m.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Time a handler took for one batch of one event type",
        )
        self.batch = m.create_histogram(
            "ticketing.consumer.batch.size",
            unit="{message}",
            description="Messages per polled batch",
        )
        m.create_observable_gauge(
            "ticketing.consumer.lag",
            callbacks=[lambda _: [o for c in list(self.live) for o in c.observe_lag()]],
            unit="{message}",
            description="High watermark minus the group's committed offset, per partition",
        )
        m.create_observable_gauge(
            "ticketing.consumer.paused",
            callbacks=[lambda _: [o for c in list(self.live) for o in c.observe_paused()]],
            unit="1",
            description="1 while consumption waits (reason: dependency, deployment, brokers)",
        )


_instruments: _ConsumerInstruments | None = None
_instruments_lock = threading.Lock()


def _consumer_instruments() -> _ConsumerInstruments:
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            _instruments = _ConsumerInstruments()
        return _instruments


class ConsumerMetrics:
    """One consumer group's metrics. Attribute sets are built once per topic, so recording a
    batch costs a few dictionary lookups. ``paused`` tells why consumption waits, if it does."""

    def __init__(self, group: str, *, paused: Callable[[], str | None]) -> None:
        self._i = _consumer_instruments()
        self._i.live.add(self)
        self._base = {"messaging.system": "kafka", "messaging.consumer.group.name": group}
        self._topics: dict[str, dict[str, str]] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._paused = paused

    def start_at_zero(self, topics: Iterable[str], reasons: Iterable[str]) -> None:
        """Create the counters' series of each topic (and dead-letter reason) at 0: a series
        that first appears at 3 shows Prometheus no increase."""
        for topic in topics:
            self._i.consumed.add(0, self.attributes(topic))
            self._i.handled.add(0, self.attributes(topic))
            for reason in reasons:
                self._i.dead_lettered.add(0, {**self.attributes(topic), "reason": reason})

    def close(self) -> None:
        """Stop reporting this group's gauges (its counters stay, as Prometheus expects)."""
        self._i.live.discard(self)

    def attributes(self, topic: str) -> Mapping[str, str]:
        attrs = self._topics.get(topic)
        if attrs is None:
            attrs = self._topics[topic] = {**self._base, "messaging.destination.name": topic}
        return attrs

    def consumed(self, counts: Mapping[str, int]) -> None:
        total = 0
        for topic, n in counts.items():
            self._i.consumed.add(n, self.attributes(topic))
            total += n
        self._i.batch.record(total, self._base)

    def handled(self, topic: str, n: int) -> None:
        self._i.handled.add(n, self.attributes(topic))

    def dead_lettered(self, topic: str, reason: str) -> None:
        self._i.dead_lettered.add(1, {**self.attributes(topic), "reason": reason})

    def retried(self, topic: str, why: str) -> None:
        self._i.retries.add(1, {**self.attributes(topic), "reason": why})

    def failed(self, topic: str, error: BaseException) -> None:
        self._i.failures.add(1, {**self.attributes(topic), "error.type": type(error).__name__})

    def commit_failed(self) -> None:
        self._i.commits_failed.add(1, self._base)

    def handler_time(self, topic: str, seconds: float) -> None:
        self._i.duration.record(seconds, self.attributes(topic))

    def librdkafka_stats(self, stats_json: str) -> None:
        """librdkafka's statistics callback: keep each assigned partition's lag."""
        stats: dict[str, Any] = json.loads(stats_json)
        lag: dict[tuple[str, int], int] = {}
        for topic, t in stats.get("topics", {}).items():
            for p, part in t.get("partitions", {}).items():
                value = part.get("consumer_lag", -1)
                if p != "-1" and value >= 0 and part.get("fetch_state") != "none":
                    lag[(topic, int(p))] = value
        self._lag = lag

    def observe_lag(self) -> Iterable[Observation]:
        for (topic, partition), value in self._lag.items():
            attrs = {**self.attributes(topic), "messaging.destination.partition.id": str(partition)}
            yield Observation(value, attrs)

    def observe_paused(self) -> Iterable[Observation]:
        reason = self._paused()
        for r in ("dependency", "deployment", "brokers"):
            yield Observation(1 if r == reason else 0, {**self._base, "reason": r})
