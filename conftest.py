"""Fixtures shared by every test suite: the real infrastructure, and an in-memory span sink."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ticketing_events.testing import Harness, RedisServer
from ticketing_events.topics import ensure_topics
from ticketing_events.tracing import configure_tracing

HINT = "start the local infrastructure with `make infra-up`"


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
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start (outage tests)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
