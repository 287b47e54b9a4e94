"""cleanup-consumer against the real Kafka and Redis: effects, duplicates, poison, outage."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from cleanup_consumer.app import app
from cleanup_consumer.handlers import RedisKeys
from confluent_kafka import Producer
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope, PaymentFailed, PaymentSucceeded
from ticketing_events.testing import end_offsets, payment_failed, payment_succeeded, read_from
from ticketing_events.topics import dlq_topic

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

SUCCESS, FAILED = PaymentSucceeded.TYPE, PaymentFailed.TYPE
TOPICS = [SUCCESS, FAILED]


def publish(harness, *events: Envelope) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))


def cleanup(harness, group: str, client: redis.Redis, **consumer: object) -> ConsumerRuntime:
    return harness.runtime(app, group, {"redis": client}, **consumer)


def hold_and_activate(client: redis.Redis, keys: RedisKeys, *all_ids: dict[str, Any]) -> None:
    """Each seat held by its reservation, with its fan's queue token active."""
    for ids in all_ids:
        client.set(keys.seat_hold(ids["seat_id"]), ids["reservation_id"], ex=300)
        client.set(keys.queue_active(ids["queue_token_id"]), 501, ex=600)


def test_success_and_failure_release_the_hold_and_only_success_expires_the_token(harness):
    group = harness.group(TOPICS)
    keys = RedisKeys(harness.prefix)
    one, two = harness.ids(), harness.ids()
    hold_and_activate(harness.redis, keys, one, two)
    paid = harness.event(payment_succeeded(), **one)
    failed = harness.event(payment_failed(), **two)
    publish(harness, paid, failed)
    with harness.running(cleanup(harness, group, harness.redis)):
        harness.wait_until(
            lambda: (
                harness.processed(group, paid.event_id)
                and harness.processed(group, failed.event_id)
            ),
            what="both events",
        )
    assert not harness.redis.exists(keys.seat_hold(one["seat_id"]), keys.seat_hold(two["seat_id"]))
    assert not harness.redis.exists(keys.queue_active(one["queue_token_id"]))
    assert harness.redis.exists(keys.queue_active(two["queue_token_id"])), "the fan may retry"
    assert harness.redis.get(keys.seat_released(one["reservation_id"])) == b"paid"
    assert harness.redis.get(keys.seat_released(two["reservation_id"])) == b"failed"


def test_a_duplicate_delivery_changes_nothing(harness):
    group = harness.group(TOPICS)
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    paid = harness.event(payment_succeeded(), **ids)
    hold_and_activate(harness.redis, keys, ids)
    with harness.running(cleanup(harness, group, harness.redis)):
        publish(harness, paid)
        harness.wait_until(lambda: harness.processed(group, paid.event_id), what="the payment")
        hold_and_activate(harness.redis, keys, ids)  # a later state the redelivery must not touch
        publish(harness, paid)
        harness.wait_consumed(group, TOPICS)
    assert harness.redis.exists(keys.seat_hold(ids["seat_id"]))
    assert harness.redis.exists(keys.queue_active(ids["queue_token_id"]))


def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(harness):
    group = harness.group(TOPICS)
    dlq = dlq_topic(SUCCESS, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    poison = f"not json {harness.prefix}".encode()
    raw = Producer({"bootstrap.servers": harness.bootstrap})
    raw.produce(SUCCESS, key=str(ids["seat_id"]).encode(), value=poison)
    raw.flush(10)
    paid = harness.event(payment_succeeded(), **ids)
    publish(harness, paid)
    runtime = cleanup(harness, group, harness.redis)
    with harness.running(runtime):
        harness.wait_until(lambda: harness.processed(group, paid.event_id), what="the payment")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 1, what="a dead letter")
    letters = read_from(harness.bootstrap, dlq_start, count=runtime.stats.dead_lettered)
    ours = [m for m in letters if m.value() == poison]
    assert len(ours) == 1
    assert dict(ours[0].headers())["dlq.reason"] == b"undecodable"
    assert harness.redis.get(keys.seat_released(ids["reservation_id"])) == b"paid"


def test_a_redis_outage_is_ridden_out_and_nothing_is_dead_lettered(harness, private_redis):
    group = harness.group(TOPICS)
    keys = RedisKeys(harness.prefix)
    before, during = harness.ids(), harness.ids()
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    runtime = cleanup(harness, group, client)
    with harness.running(runtime):
        publish(harness, harness.event(payment_succeeded(), **before))
        first = keys.seat_released(before["reservation_id"])
        harness.wait_until(lambda: client.exists(first), what="the first")
        private_redis.stop()
        publish(harness, harness.event(payment_failed(), **during))
        harness.wait_until(lambda: runtime.stats.retries >= 2, what="retries during the outage")
        private_redis.start()  # empty: it keeps no data
        second = keys.seat_released(during["reservation_id"])
        harness.wait_until(lambda: client.exists(second), what="the second")
    assert client.get(second) == b"failed"
    assert "retries_exhausted" not in runtime.stats.by_reason
    client.close()
