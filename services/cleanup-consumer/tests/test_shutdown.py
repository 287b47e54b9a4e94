"""SIGTERM on the real entrypoint: it finishes the batch, commits what it applied, exits 0."""

from __future__ import annotations

import pytest
from ticketing_events.schemas import PaymentFailed, PaymentSucceeded
from ticketing_events.testing import check_sigterm_mid_stream, payment_succeeded, start_service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

COUNT = 20_000


def test_sigterm_mid_stream_commits_exactly_what_it_applied_and_a_restart_finishes(harness):
    group = harness.group([PaymentSucceeded.TYPE, PaymentFailed.TYPE])
    events = [payment_succeeded(n) for n in range(COUNT)]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap,
        "REDIS_URL": harness.redis_url,
        "REDIS_KEY_PREFIX": harness.prefix,
        "CONSUMER_GROUP": group,
    }
    check_sigterm_mid_stream(
        harness,
        group,
        events,
        lambda: start_service("cleanup-consumer", env),
        lambda: harness.processed_ids(group, events),
    )
    tombstones = [f"{harness.prefix}seat:released:{e.payload.reservation_id}" for e in events]
    assert harness.redis.exists(*tombstones) == COUNT
