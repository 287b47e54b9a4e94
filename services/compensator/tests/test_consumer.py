"""compensator against the real Kafka and PostgreSQL: each reason's effect, duplicates,
poison, a database outage, and the database calls of a batch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from compensator.adapters import SqlCompensations
from compensator.app import app
from compensator.handlers import compensation
from sqlalchemy import event
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.db import create_db_engine
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope, FailureReason, PaymentFailed
from ticketing_events.testing import (
    database_proxy,
    end_offsets,
    payment_failed,
    processed_event_ids,
)
from ticketing_events.topics import dlq_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TOPIC = PaymentFailed.TYPE


def publish(harness, *events: Envelope) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))


def compensator(harness, group, engine, **consumer) -> ConsumerRuntime:
    return harness.runtime(app, group, {"engine": engine}, **consumer)


def failed(held, reason=FailureReason.INSUFFICIENT_POINTS, points_deducted=0, **ids):
    return PaymentFailed.new(
        payment_failed(1, reason).payload.model_copy(
            update={**held.ids, "points_deducted": points_deducted, **ids}
        ),
        producer="tests",
    )


def processed(engine, group: str, events) -> bool:
    return {e.event_id for e in events} <= processed_event_ids(engine, group)


def state(engine, held) -> tuple[str, str, int | None]:
    """The reservation's status, its seat's status and holder."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sqlalchemy.text(
                    "select r.status, s.status, s.reservation_id from reservations r"
                    " join seats s on s.id = r.seat_id where r.id = :r"
                ),
                {"r": held.reservation_id},
            ).one()
        )


def points(engine, user_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sqlalchemy.text("select points from users where id = :u"), {"u": user_id}
        ).scalar_one()


def test_each_reason_compensates_only_what_the_payer_owns(harness, engine, world):
    group = harness.group([TOPIC])
    [own] = world()
    [expired] = world(points=100)
    [victim] = world(status="held")
    [intruder] = world(points=100)
    [lapsed] = world()
    taken_over_by = lapsed.reservation_id + 10**6
    with engine.begin() as conn:  # its hold lapsed and a later reservation took the seat
        conn.execute(
            sqlalchemy.text("update seats set reservation_id = :r where id = :s"),
            {"r": taken_over_by, "s": lapsed.seat_id},
        )
    events = [
        failed(own),
        failed(expired, FailureReason.HOLD_EXPIRED, points_deducted=500),
        failed(victim, FailureReason.NOT_OWNER, points_deducted=300, user_id=intruder.user_id),
        failed(lapsed, FailureReason.HOLD_EXPIRED),
    ]
    with harness.running(compensator(harness, group, engine)):
        publish(harness, *events)
        harness.wait_until(lambda: processed(engine, group, events), what="the failures")
    assert state(engine, own) == ("cancelled", "available", None)
    assert state(engine, expired) == ("cancelled", "available", None)
    assert points(engine, expired.user_id) == 600
    assert state(engine, victim) == ("held", "held", victim.reservation_id), "the owner's"
    assert points(engine, intruder.user_id) == 400, "the payer's points come back"
    assert state(engine, lapsed) == ("cancelled", "held", taken_over_by)


def test_a_duplicate_delivery_changes_nothing(harness, engine, world):
    group = harness.group([TOPIC])
    [held] = world()
    event = failed(held, FailureReason.HOLD_EXPIRED, points_deducted=100)
    with harness.running(compensator(harness, group, engine)):
        publish(harness, event)
        harness.wait_until(lambda: processed(engine, group, [event]), what="the failure")
        publish(harness, event, event)
        harness.wait_consumed(group, [TOPIC])
    assert points(engine, held.user_id) == 100
    assert state(engine, held) == ("cancelled", "available", None)


def test_a_replay_under_another_group_refunds_only_what_was_not_refunded(harness, engine, world):
    group, replay = harness.group([TOPIC]), harness.group([TOPIC])
    [refunded, missed] = world(2)
    first = failed(refunded, FailureReason.HOLD_EXPIRED, points_deducted=100)
    second = failed(missed, FailureReason.HOLD_EXPIRED, points_deducted=100)
    with harness.running(compensator(harness, group, engine)):
        publish(harness, first)
        harness.wait_until(lambda: processed(engine, group, [first]), what="the failure")
    publish(harness, second)  # published while the registry group is stopped
    with harness.running(compensator(harness, replay, engine)):
        harness.wait_until(lambda: processed(engine, replay, [first, second]), what="replay")
    assert points(engine, refunded.user_id) == 100, "refunded once, whichever group read it"
    assert points(engine, missed.user_id) == 100
    assert state(engine, missed) == ("cancelled", "available", None)


def test_old_processed_rows_are_pruned_between_batches(harness, engine, world):
    group = harness.group([TOPIC])
    old = f"old-{uuid.uuid4().hex}"
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("insert into processed_events values (:g, :e, :at)"),
            {"g": app.group, "e": old, "at": datetime.now(UTC) - timedelta(days=40)},
        )
    [held] = world()
    event = failed(held)
    with harness.running(compensator(harness, group, engine)):
        publish(harness, event)
        harness.wait_until(lambda: processed(engine, group, [event]), what="the failure")
        harness.wait_until(
            lambda: old not in processed_event_ids(engine, app.group), what="pruning"
        )
    assert event.event_id in processed_event_ids(engine, app.group), "a recent row stays"


def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(harness, engine, world):
    group = harness.group([TOPIC])
    dlq = dlq_topic(TOPIC, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    poison = harness.publish_poison(TOPIC)
    [held] = world()
    event = failed(held)
    publish(harness, event)
    runtime = compensator(harness, group, engine)
    with harness.running(runtime):
        harness.wait_until(lambda: processed(engine, group, [event]), what="the failure")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 1, what="a dead letter")
    ours = harness.dead_letters(dlq_start, poison, runtime.stats.dead_lettered)
    assert len(ours) == 1
    assert dict(ours[0].headers())["dlq.reason"] == b"undecodable"
    assert state(engine, held) == ("cancelled", "available", None)


def test_a_database_outage_is_ridden_out(harness, engine, world, db):
    group = harness.group([TOPIC])
    [before, during] = world(2)
    first, second = failed(before), failed(during)
    with database_proxy(db.url) as (proxy, url):
        proxied = create_db_engine(url, schema=db.schema)
        runtime = compensator(harness, group, proxied)
        with harness.running(runtime):
            publish(harness, first)
            harness.wait_until(lambda: processed(engine, group, [first]), what="the first")
            proxy.stop()
            publish(harness, second)
            harness.wait_until(lambda: runtime.stats.retries >= 2, what="retries in the outage")
            proxy.start()
            harness.wait_until(lambda: processed(engine, group, [second]), what="the second")
        proxied.dispose()
    assert state(engine, during) == ("cancelled", "available", None)
    assert "retries_exhausted" not in runtime.stats.by_reason


def test_a_batch_of_500_takes_as_many_database_calls_as_a_batch_of_5(engine, world):
    """Set-wise statements, whatever the batch size; the throughput they give is a figure of
    bench/consumers_bench.py."""

    def calls_to_apply(count: int) -> int:
        held = world(count)
        items = [compensation(failed(h, points_deducted=1)) for h in held]
        store = SqlCompensations(engine, f"calls-{held[0].reservation_id}")
        calls: list[str] = []

        def record(conn, cursor, statement, *_) -> None:
            calls.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert store.apply(items) == count
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert all(state(engine, h) == ("cancelled", "available", None) for h in held[::50])
        return len(calls)

    few, many = calls_to_apply(5), calls_to_apply(500)
    assert 0 < many == few
