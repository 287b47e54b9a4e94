"""Helpers for tests against the real infrastructure, used by every suite; its pytest plugin
(``plugin``) gives the fixtures.

``kafka`` probes a cluster (offsets, reads, topic settings), ``harness`` runs consumers in a
test, ``servers`` starts private servers and proxies (Redis, Kafka, Prometheus, a TCP proxy, a
PostgreSQL schema), ``processes`` runs a service's real entrypoint, ``events`` makes realistic
events and ``metrics`` reads a ``/metrics`` page.
"""

from ticketing_events.testing.events import (
    NOW,
    payment_failed,
    payment_succeeded,
    reservation_created,
)
from ticketing_events.testing.harness import Harness
from ticketing_events.testing.kafka import (
    committed_offsets,
    end_offsets,
    read_from,
    set_topic_config,
    start_group_at_end,
)
from ticketing_events.testing.metrics import MetricSamples, metric_total, scrape_metrics
from ticketing_events.testing.processes import (
    check_sigterm_mid_stream,
    committed_event_ids,
    sigterm,
    start_service,
)
from ticketing_events.testing.servers import (
    Database,
    KafkaServer,
    PrometheusServer,
    RedisServer,
    ScrapeTarget,
    TcpProxy,
    database_proxy,
    free_port,
    migrated_schema,
    processed_event_ids,
    redis_clock_ms,
)

__all__ = [
    "NOW",
    "Database",
    "Harness",
    "KafkaServer",
    "MetricSamples",
    "PrometheusServer",
    "RedisServer",
    "ScrapeTarget",
    "TcpProxy",
    "check_sigterm_mid_stream",
    "committed_event_ids",
    "committed_offsets",
    "database_proxy",
    "end_offsets",
    "free_port",
    "metric_total",
    "migrated_schema",
    "payment_failed",
    "payment_succeeded",
    "processed_event_ids",
    "read_from",
    "redis_clock_ms",
    "reservation_created",
    "scrape_metrics",
    "set_topic_config",
    "sigterm",
    "start_group_at_end",
    "start_service",
]
