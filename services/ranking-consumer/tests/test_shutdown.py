"""SIGTERM on the real entrypoint: it finishes the batch, commits what it applied, exits 0."""

from __future__ import annotations

import random

import pytest
import sqlalchemy
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import (
    check_sigterm_mid_stream,
    payment_succeeded,
    processed_event_ids,
    start_service,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres]

SEATS, SCHEDULES = 50, 200


def test_sigterm_mid_stream_commits_exactly_what_it_counted(harness, engine, db):
    group = harness.group([PaymentSucceeded.TYPE])
    first = random.randrange(10**9, 2 * 10**9)
    events = [
        harness.event(
            payment_succeeded(n), schedule_id=first + n // SEATS, schedule_seat_count=SEATS
        )
        for n in range(SEATS * SCHEDULES)
    ]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap,
        "DATABASE_URL": db.url,
        "DATABASE_SCHEMA": db.schema,
        "REDIS_URL": harness.redis_url,
        "REDIS_KEY_PREFIX": harness.prefix,
        "CONSUMER_GROUP": group,
    }

    check_sigterm_mid_stream(
        harness,
        group,
        events,
        lambda: start_service("ranking-consumer", env),
        lambda: processed_event_ids(engine, group),
    )
    schedules = list(range(first, first + SCHEDULES))
    with engine.connect() as conn:
        counts = conn.execute(
            sqlalchemy.text("select sold from schedule_sales where schedule_id = any(:s)"),
            {"s": schedules},
        ).scalars()
        ranked = conn.execute(
            sqlalchemy.text("select count(*) from sold_out_ranking where schedule_id = any(:s)"),
            {"s": schedules},
        ).scalar()
    assert list(counts) == [SEATS] * SCHEDULES, "every payment counted once"
    assert ranked == SCHEDULES
