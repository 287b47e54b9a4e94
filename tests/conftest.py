"""The whole system as processes (scripts/stack.py) for the end-to-end tests: PostgreSQL in
a schema of its own, consumer groups and Redis keys of its own, traces to the local Jaeger."""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

from stack import CONSUMERS, Stack, infra_env  # noqa: E402
from ticketing_events.testing import start_group_at_end  # noqa: E402
from ticketing_events.topics import CONSUMER_GROUPS, dlq_topic, ensure_topics  # noqa: E402


def _topics_of(service: str) -> tuple[str, ...]:
    (topics,) = [g.topics for g in CONSUMER_GROUPS.values() if g.service == service]
    return topics


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    run = uuid.uuid4().hex[:8]
    base = random.randrange(20000, 30000, 10)
    stack = Stack(
        infra_env(ROOT),
        ROOT,
        db="postgres",
        state_dir=tmp_path_factory.mktemp("stack"),
        api_port=base,
        stub_port=base + 1,
        health_port=base + 2,
        schema=f"e2e_{run}",
        redis_prefix=f"e2e-{run}:",
        group_prefix=f"e2e-{run}-",
        extra_env={
            "LOG_LEVEL": "DEBUG",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "QUEUE_ACTIVATE_INTERVAL_S": "0.1",
        },
    )
    for service in CONSUMERS:
        topics = _topics_of(service)
        group = stack.group_of(service)
        start_group_at_end(kafka_bootstrap, group, topics)
        ensure_topics(kafka_bootstrap, [dlq_topic(t, group) for t in topics])
    stack.prepare()
    stack.up()
    try:
        yield stack
    finally:
        stack.down()
        stack.reset()
