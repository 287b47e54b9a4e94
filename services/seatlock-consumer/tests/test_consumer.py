"""seatlock-consumer against the real Kafka and Redis: effect, duplicates, poison, outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from confluent_kafka import Producer
from seatlock_consumer.app import app
from seatlock_consumer.handlers import RedisKeys
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import ReservationCreated
from ticketing_events.testing import end_offsets, read_from, reservation_created
from ticketing_events.topics import dlq_topic

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

TOPIC = ReservationCreated.TYPE


def reservation(
    harness, ids: dict[str, Any], expires_in: timedelta = timedelta(minutes=5)
) -> ReservationCreated:
    expires = datetime.now(UTC) + expires_in
    return harness.event(reservation_created(), **ids, hold_expires_at=expires)


def publish(harness, *events: ReservationCreated) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))


def seatlock(harness, group: str, client: redis.Redis, **consumer: object) -> ConsumerRuntime:
    return harness.runtime(app, group, {"redis": client}, **consumer)


def test_a_reservation_holds_its_seat_until_the_hold_expires(harness):
    group = harness.group([TOPIC])
    keys = RedisKeys(harness.prefix)
    live, gone = harness.ids(), harness.ids()
    expired = reservation(harness, gone, expires_in=timedelta(seconds=-1))
    held = reservation(harness, live)
    publish(harness, expired, held)
    with harness.running(seatlock(harness, group, harness.redis)):
        hold = keys.seat_hold(live["seat_id"])
        harness.wait_until(lambda: harness.redis.exists(hold), what="the hold")
        harness.wait_consumed(group, [TOPIC])
    assert harness.redis.get(hold) == str(live["reservation_id"]).encode()
    expires_ms = int(held.payload.hold_expires_at.timestamp() * 1000)
    assert harness.redis.pexpiretime(hold) == expires_ms, "until the hold expires"
    assert not harness.redis.exists(keys.seat_hold(gone["seat_id"])), "expired: not held"


def test_a_duplicate_delivery_changes_nothing(harness):
    group = harness.group([TOPIC])
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    first = reservation(harness, ids)
    next_id = ids["reservation_id"] + 1
    second = reservation(harness, {**ids, "reservation_id": next_id})  # the seat's next one
    hold = keys.seat_hold(ids["seat_id"])
    with harness.running(seatlock(harness, group, harness.redis)):
        publish(harness, first, second)
        harness.wait_until(lambda: harness.redis.get(hold) == str(next_id).encode())
        publish(harness, first)  # delivered again, after the newer hold
        harness.wait_consumed(group, [TOPIC])
    assert harness.redis.get(hold) == str(next_id).encode()


def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(harness):
    group = harness.group([TOPIC])
    dlq = dlq_topic(TOPIC, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    poison = f'{{"poison": "{harness.prefix}"}}'.encode()
    raw = Producer({"bootstrap.servers": harness.bootstrap})
    raw.produce(TOPIC, key=str(ids["seat_id"]).encode(), value=poison)
    raw.flush(10)
    publish(harness, reservation(harness, ids))
    runtime = seatlock(harness, group, harness.redis)
    with harness.running(runtime):
        hold = keys.seat_hold(ids["seat_id"])
        harness.wait_until(lambda: harness.redis.exists(hold), what="the hold")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 1, what="a dead letter")
    letters = read_from(harness.bootstrap, dlq_start, count=runtime.stats.dead_lettered)
    ours = [m for m in letters if m.value() == poison]
    assert len(ours) == 1
    assert dict(ours[0].headers())["dlq.reason"] == b"invalid"


def test_a_redis_outage_is_ridden_out_and_nothing_is_dead_lettered(harness, private_redis):
    group = harness.group([TOPIC])
    keys = RedisKeys(harness.prefix)
    before, during = harness.ids(), harness.ids()
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    runtime = seatlock(harness, group, client)
    with harness.running(runtime):
        publish(harness, reservation(harness, before))
        harness.wait_until(lambda: client.exists(keys.seat_hold(before["seat_id"])), what="hold")
        private_redis.stop()
        publish(harness, reservation(harness, during))
        harness.wait_until(lambda: runtime.stats.retries >= 2, what="retries during the outage")
        private_redis.start()  # empty: it keeps no data
        hold = keys.seat_hold(during["seat_id"])
        harness.wait_until(lambda: client.exists(hold), what="the hold after the outage")
    assert client.get(hold) == str(during["reservation_id"]).encode()
    assert "retries_exhausted" not in runtime.stats.by_reason
    client.close()
