"""ranking-consumer against the real Kafka, PostgreSQL and Redis: sell-outs, duplicates,
poison, outages of either store, and rebuilding Redis from the database."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
import sqlalchemy
from ranking_consumer.app import app, rebuild_redis
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.db import create_db_engine
from ticketing_events.producer import EventProducer
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import Envelope, PaymentSucceeded
from ticketing_events.testing import (
    NOW,
    database_proxy,
    end_offsets,
    payment_succeeded,
    processed_event_ids,
)
from ticketing_events.topics import dlq_topic

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres]

TOPIC = PaymentSucceeded.TYPE
OPENED = NOW - timedelta(minutes=10)


def publish(harness, *events: Envelope) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))


def ranking(harness, group, engine, client, **consumer) -> ConsumerRuntime:
    return harness.runtime(app, group, {"engine": engine, "redis": client}, **consumer)


def sales(schedule_id: int, seats: int, *paid_after_s: float) -> list[PaymentSucceeded]:
    """Payments of one schedule with ``seats`` seats, paid so long after the sale opened."""
    return [
        PaymentSucceeded.new(
            payment_succeeded(n).payload.model_copy(
                update={
                    "schedule_id": schedule_id,
                    "schedule_seat_count": seats,
                    "sale_opened_at": OPENED,
                    "paid_at": OPENED + timedelta(seconds=s),
                    "concert_date": date(2026, 12, 24),
                }
            ),
            producer="tests",
        )
        for n, s in enumerate(paid_after_s)
    ]


def schedule_id() -> int:
    return random.randrange(10**9, 2 * 10**9)


def processed(engine, group: str, events) -> bool:
    return {e.event_id for e in events} <= processed_event_ids(engine, group)


def sold(engine, schedule: int):
    with engine.connect() as conn:
        return conn.execute(
            sqlalchemy.text("select sold from schedule_sales where schedule_id = :s"),
            {"s": schedule},
        ).scalar()


def ranked(engine, schedule: int):
    with engine.connect() as conn:
        return conn.execute(
            sqlalchemy.text(
                "select sold_out_at, seconds_to_sell_out from sold_out_ranking"
                " where schedule_id = :s"
            ),
            {"s": schedule},
        ).first()


def score(client: redis.Redis, harness, schedule: int) -> float | None:
    return client.zscore(RedisKeys(harness.prefix).sold_out_ranking(date(2026, 12, 24)), schedule)


def test_the_last_seat_sells_the_schedule_out_in_the_database_and_redis(harness, engine):
    group = harness.group([TOPIC])
    full, partial = schedule_id(), schedule_id()
    # Out of order: the last seat (at 50 s) is not the last event.
    events = sales(full, 3, 10, 50, 20) + sales(partial, 3, 5)
    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, *events)
        harness.wait_until(lambda: processed(engine, group, events), what="the payments")
        harness.wait_until(lambda: score(harness.redis, harness, full) is not None, what="Redis")
    assert (sold(engine, full), sold(engine, partial)) == (3, 1)
    assert tuple(ranked(engine, full)) == (OPENED + timedelta(seconds=50), 50.0)
    assert ranked(engine, partial) is None
    assert score(harness.redis, harness, full) == 50.0
    assert score(harness.redis, harness, partial) is None


def test_a_duplicate_delivery_counts_once(harness, engine):
    group = harness.group([TOPIC])
    schedule = schedule_id()
    first, second = sales(schedule, 2, 10, 20)
    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, first)
        harness.wait_until(lambda: processed(engine, group, [first]), what="the payment")
        publish(harness, first, first)
        harness.wait_consumed(group, [TOPIC])
        assert sold(engine, schedule) == 1
        assert ranked(engine, schedule) is None, "one of two seats is not a sell-out"
        publish(harness, second)
        harness.wait_until(lambda: ranked(engine, schedule) is not None, what="the sell-out")
    assert sold(engine, schedule) == 2


def test_a_replay_under_another_group_counts_only_what_was_not_counted(harness, engine):
    group, replay = harness.group([TOPIC]), harness.group([TOPIC])
    schedule = schedule_id()
    *counted, missed = sales(schedule, 3, 10, 20, 30)
    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, *counted)
        harness.wait_until(lambda: processed(engine, group, counted), what="the payments")
    publish(harness, missed)  # published while the registry group is stopped
    with harness.running(ranking(harness, replay, engine, harness.redis)):
        harness.wait_until(lambda: processed(engine, replay, [*counted, missed]), what="replay")
    assert sold(engine, schedule) == 3, "each payment counted once, whichever group read it"
    assert tuple(ranked(engine, schedule)) == (OPENED + timedelta(seconds=30), 30.0)


def test_old_processed_rows_are_pruned_and_recent_ones_still_dedupe(harness, engine):
    group = harness.group([TOPIC])
    schedule = schedule_id()
    recent, trigger = sales(schedule, 5, 10, 20)
    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, recent)
        harness.wait_until(lambda: processed(engine, group, [recent]), what="the payment")
    yesterday, long_ago = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) - timedelta(40)
    mark = sqlalchemy.text("update processed_events set processed_at = :at where event_id = :e")
    add = sqlalchemy.text("insert into processed_events values (:g, :e, :at)")
    old = {g: f"old-{uuid.uuid4().hex}" for g in (app.group, group, "another-service-group")}
    with engine.begin() as conn:
        conn.execute(mark, {"at": yesterday, "e": recent.event_id})
        conn.execute(add, [{"g": g, "e": e, "at": long_ago} for g, e in old.items()])

    def rows(event_ids) -> set[tuple[str, str]]:
        query = "select consumer_group, event_id from processed_events where event_id = any(:e)"
        with engine.connect() as conn:
            return {tuple(r) for r in conn.execute(sqlalchemy.text(query), {"e": list(event_ids)})}

    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, recent, trigger)
        harness.wait_until(lambda: processed(engine, group, [trigger]), what="the payment")
        harness.wait_until(lambda: len(rows(old.values())) == 1, what="the pruning")
    assert rows(old.values()) == {("another-service-group", old["another-service-group"])}
    assert rows([recent.event_id]) == {(app.group, recent.event_id), (group, recent.event_id)}
    assert sold(engine, schedule) == 2, "the recent payment, redelivered, counted once"


def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(harness, engine):
    group = harness.group([TOPIC])
    dlq = dlq_topic(TOPIC, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    poison = harness.publish_poison(TOPIC)
    schedule = schedule_id()
    events = sales(schedule, 1, 30)
    publish(harness, *events)
    runtime = ranking(harness, group, engine, harness.redis)
    with harness.running(runtime):
        harness.wait_until(lambda: processed(engine, group, events), what="the payment")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 1, what="a dead letter")
    ours = harness.dead_letters(dlq_start, poison, runtime.stats.dead_lettered)
    assert len(ours) == 1
    assert dict(ours[0].headers())["dlq.reason"] == b"undecodable"
    assert ranked(engine, schedule) is not None


def test_a_database_outage_is_ridden_out(harness, engine, db):
    group = harness.group([TOPIC])
    before, during = sales(schedule_id(), 1, 10), sales(schedule_id(), 1, 20)
    with database_proxy(db.url) as (proxy, url):
        proxied = create_db_engine(url, schema=db.schema)
        runtime = ranking(harness, group, proxied, harness.redis)
        with harness.running(runtime):
            publish(harness, *before)
            harness.wait_until(lambda: processed(engine, group, before), what="the first")
            proxy.stop()
            publish(harness, *during)
            harness.wait_until(lambda: runtime.stats.retries >= 2, what="retries in the outage")
            proxy.start()
            harness.wait_until(lambda: processed(engine, group, during), what="the second")
        proxied.dispose()
    assert ranked(engine, during[0].payload.schedule_id) is not None
    assert "retries_exhausted" not in runtime.stats.by_reason


def test_a_redis_outage_after_the_commit_still_reaches_redis(harness, engine, private_redis):
    group = harness.group([TOPIC])
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    schedule = schedule_id()
    events = sales(schedule, 2, 10, 40)
    runtime = ranking(harness, group, engine, client)
    with harness.running(runtime):
        private_redis.stop()
        publish(harness, *events)
        harness.wait_until(lambda: processed(engine, group, events), what="the commit")
        harness.wait_until(lambda: runtime.stats.retries >= 2, what="retries in the outage")
        private_redis.start()
        harness.wait_until(lambda: score(client, harness, schedule) == 40.0, what="Redis")
    assert sold(engine, schedule) == 2, "the retried batch was not counted again"
    client.close()


def test_rebuild_redis_rewrites_the_ranking_from_the_database(harness, engine):
    group = harness.group([TOPIC])
    schedule = schedule_id()
    events = sales(schedule, 1, 25)
    with harness.running(ranking(harness, group, engine, harness.redis)):
        publish(harness, *events)
        harness.wait_until(lambda: score(harness.redis, harness, schedule) == 25.0, what="Redis")
    keys = RedisKeys(harness.prefix)
    key = keys.sold_out_ranking(date(2026, 12, 24))
    stale = keys.sold_out_ranking(date(1999, 1, 1))
    harness.redis.delete(key)
    harness.redis.zadd(stale, {"1": 1.0})
    settings = app.settings(redis_key_prefix=harness.prefix, consumer_group=group)
    assert rebuild_redis(settings, engine, harness.redis) >= 1
    assert score(harness.redis, harness, schedule) == 25.0
    assert not harness.redis.exists(stale)
