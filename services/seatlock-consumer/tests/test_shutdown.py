"""SIGTERM on the real entrypoint: it finishes the batch, commits what it applied, exits 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ticketing_events.schemas import ReservationCreated
from ticketing_events.testing import check_sigterm_mid_stream, reservation_created, start_service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

COUNT = 20_000


def test_sigterm_mid_stream_commits_exactly_what_it_applied_and_a_restart_finishes(harness):
    group = harness.group([ReservationCreated.TYPE])
    expires = datetime.now(UTC) + timedelta(minutes=5)
    events = [harness.event(reservation_created(n), hold_expires_at=expires) for n in range(COUNT)]
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
        lambda: start_service("seatlock-consumer", env),
        lambda: harness.processed_ids(group, events),
    )
    holds = [f"{harness.prefix}seat:hold:{e.payload.seat_id}" for e in events]
    assert harness.redis.exists(*holds) == COUNT
