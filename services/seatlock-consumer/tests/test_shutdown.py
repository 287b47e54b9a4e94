"""SIGTERM on the real entrypoint: it finishes the batch, commits what it applied, exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import ReservationCreated
from ticketing_events.testing import (
    committed_offsets,
    end_offsets,
    read_from,
    reservation_created,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

TOPIC = ReservationCreated.TYPE
ENTRYPOINT = Path(sys.executable).with_name("seatlock-consumer")
COUNT = 20_000


def start(harness, group: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap,
        "REDIS_URL": harness.redis_url,
        "REDIS_KEY_PREFIX": harness.prefix,
        "CONSUMER_GROUP": group,
        "CONSUMER_BATCH_SIZE": "20",
        "CONSUMER_POLL_TIMEOUT_S": "0.2",
        "CONSUMER_HEALTH_PORT": "0",
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([str(ENTRYPOINT), "run"], env=env, stdout=subprocess.DEVNULL)


def test_sigterm_mid_stream_commits_exactly_what_it_applied_and_a_restart_finishes(harness):
    group = harness.group([TOPIC])
    start_offsets = committed_offsets(harness.bootstrap, group, [TOPIC])
    expires = datetime.now(UTC) + timedelta(minutes=5)
    events = [
        ReservationCreated.new(
            reservation_created(n).payload.model_copy(update={"hold_expires_at": expires}),
            producer="tests",
        )
        for n in range(COUNT)
    ]
    EventProducer(harness.bootstrap, client_id="test").publish(events)
    dedupe_keys = {f"processed:{group}:{e.event_id}": e.event_id for e in events}

    def applied() -> set[str]:
        pipe = harness.redis.pipeline(transaction=False)
        for key in dedupe_keys:
            pipe.exists(key)
        return {i for i, hit in zip(dedupe_keys.values(), pipe.execute(), strict=True) if hit}

    consumer = start(harness, group)
    try:
        harness.wait_until(lambda: harness.redis.exists(*dedupe_keys) >= 100, what="progress")
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(30) == 0
    finally:
        consumer.kill()
    done = applied()
    assert len(done) < COUNT, "it stopped mid-stream, as asked"

    committed = committed_offsets(harness.bootstrap, group, [TOPIC])
    # Read every partition up to its end, keep what lies below the committed offsets.
    ends = end_offsets(harness.bootstrap, [TOPIC])
    total = sum(ends[tp] - start_offsets[tp] for tp in start_offsets)
    messages = read_from(harness.bootstrap, start_offsets, count=total, timeout=60)
    assert len(messages) == total
    committed_ids = {
        dict(m.headers() or ()).get("event_id", b"").decode()
        for m in messages
        if m.offset() < committed[(m.topic(), m.partition())]
    }
    # Other suites share the topic: compare only our events.
    assert committed_ids & set(dedupe_keys.values()) == done, (
        "committed exactly what it applied: nothing lost, nothing left to redo"
    )

    consumer = start(harness, group)
    try:
        harness.wait_until(lambda: harness.redis.exists(*dedupe_keys) == COUNT, 120, "the rest")
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(30) == 0
    finally:
        consumer.kill()
    holds = [f"{harness.prefix}seat:hold:{e.payload.seat_id}" for e in events]
    assert harness.redis.exists(*holds) == COUNT
