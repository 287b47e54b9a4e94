"""SIGTERM on the real entrypoint: it finishes the batch, commits what it applied, exits 0."""

from __future__ import annotations

import pytest
import sqlalchemy
from ticketing_events.schemas import FailureReason, PaymentFailed
from ticketing_events.testing import (
    check_sigterm_mid_stream,
    payment_failed,
    processed_event_ids,
    start_service,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

COUNT = 5_000


def test_sigterm_mid_stream_commits_exactly_what_it_compensated(harness, engine, world, db):
    group = harness.group([PaymentFailed.TYPE])
    held = world(COUNT)
    template = payment_failed(1, FailureReason.HOLD_EXPIRED)
    events = [harness.event(template, **h.ids, points_deducted=1) for h in held]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap,
        "DATABASE_URL": db.url,
        "DATABASE_SCHEMA": db.schema,
        "CONSUMER_GROUP": group,
    }

    check_sigterm_mid_stream(
        harness,
        group,
        events,
        lambda: start_service("compensator", env),
        lambda: processed_event_ids(engine, group),
    )
    with engine.connect() as conn:
        outcome = conn.execute(
            sqlalchemy.text(
                "select r.status, s.status, u.points, count(*) from reservations r"
                " join seats s on s.id = r.seat_id join users u on u.id = r.user_id"
                " where r.id = any(:ids) group by 1, 2, 3"
            ),
            {"ids": [h.reservation_id for h in held]},
        ).all()
    assert [tuple(row) for row in outcome] == [("cancelled", "available", 1, COUNT)]
