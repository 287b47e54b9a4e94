"""The whole system as processes (ticketing_dev.stack) on a given Kafka, for the end-to-end
tests (tests/conftest.py puts scripts/ and tests/ on the path)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ticketing_dev.stack import CONSUMERS, Stack, infra_env
from ticketing_events.testing import start_group_at_end
from ticketing_events.topics import CONSUMER_GROUPS, dlq_topic, ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def _topics_of(service: str) -> tuple[str, ...]:
    (topics,) = [g.topics for g in CONSUMER_GROUPS.values() if g.service == service]
    return topics


@contextmanager
def running_stack(
    kafka_bootstrap: str, state_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """The whole stack on ``kafka_bootstrap``, in a schema, Redis prefix and groups of its own
    (the groups start at the topics' ends); stopped and its data dropped afterwards."""
    run = uuid.uuid4().hex[:8]
    base = random.randrange(20000, 30000, 10)
    stack = Stack(
        {**infra_env(ROOT), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        ROOT,
        db="postgres",
        state_dir=state_dir,
        api_port=base,
        stub_port=base + 1,
        stub_admin_port=base + 2 + len(CONSUMERS),  # after the consumers' health ports
        health_port=base + 2,
        schema=f"e2e_{run}",
        redis_prefix=f"e2e-{run}:",
        group_prefix=f"e2e-{run}-",
        extra_env={
            "LOG_LEVEL": "DEBUG",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "QUEUE_ACTIVATE_INTERVAL_S": "0.1",
            **(extra_env or {}),
        },
    )
    ensure_topics(kafka_bootstrap)
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
