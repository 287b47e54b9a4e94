"""The pytest plugin of ``ticketing_events.testing`` (entry point ``pytest11``): the real
infrastructure's fixtures and markers, for any suite that has this package installed, run from
the repository or from a service's own folder.

A fixture of a server fails, rather than skips, when the server does not answer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ticketing_events.testing.harness import Harness
from ticketing_events.testing.servers import RedisServer
from ticketing_events.topics import ensure_topics
from ticketing_events.tracing import configure_tracing

HINT = "start the local infrastructure with `make infra-up`"
MARKERS = (
    "kafka: needs the real Kafka broker (KAFKA_BOOTSTRAP_SERVERS)",
    "redis: needs the real Redis server (REDIS_URL)",
    "postgres: needs the real PostgreSQL server (DATABASE_URL)",
    "jaeger: needs the real Jaeger (JAEGER_QUERY_URL)",
    "prometheus: runs a Prometheus of its own ($PROMETHEUS_BIN, make infra-install)",
    "k8s: needs the real Kubernetes control plane (make k8s-up, K8S_KUBECONFIG)",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"Kafka at {bootstrap} does not answer ({exc}); {HINT}")
    ensure_topics(bootstrap)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url).ping()
    except Exception as exc:
        pytest.fail(f"Redis at {url} does not answer ({exc}); {HINT}")
    return url


@pytest.fixture(scope="session")
def database_url() -> str:
    import sqlalchemy

    url = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://ticketing:ticketing@127.0.0.1:5432/ticketing"
    )
    try:
        with sqlalchemy.create_engine(url).connect() as conn:
            conn.exec_driver_sql("select 1")
    except Exception as exc:
        pytest.fail(f"database at {url} does not answer ({exc}); {HINT}")
    return url


_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _tracer_provider() -> None:
    # The global provider can be set once per process; every test shares this one.
    configure_tracing("tests", processor=SimpleSpanProcessor(_EXPORTER))


@pytest.fixture(scope="session")
def meter_provider() -> None:
    # Global, like the tracer provider: the metrics of every runtime and app of the session.
    from ticketing_events.metrics import configure_metrics

    if configure_metrics("tests") is None:
        pytest.fail("OTEL_SDK_DISABLED is set: the metrics tests need the SDK")


@pytest.fixture
def spans(_tracer_provider: None) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def harness(kafka_bootstrap: str, redis_url: str) -> Iterator[Harness]:
    """Fresh consumer groups, a random Redis key prefix, runtimes in threads; cleaned up."""
    h = Harness(kafka_bootstrap, redis_url)
    yield h
    h.cleanup()


@pytest.fixture
def small_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A topic of this test alone whose broker refuses messages over 1000 bytes."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = f"test-small-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = NewTopic(name, num_partitions=1, replication_factor=1)
    topic.config = {"max.message.bytes": "1000"}
    admin.create_topics([topic])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start (outage tests)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
