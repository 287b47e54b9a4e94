"""The seatlock and cleanup consumers together: whatever order the topics deliver in, a paid
reservation ends without a hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cleanup_consumer.app import app as cleanup_app
from seatlock_consumer.app import app as seatlock_app
from seatlock_consumer.handlers import RedisKeys
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope, PaymentFailed, PaymentSucceeded, ReservationCreated
from ticketing_events.testing import payment_succeeded, reservation_created

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@contextmanager
def both_consumers(harness) -> Iterator[tuple[str, str]]:
    seat_group = harness.group([ReservationCreated.TYPE])
    cleanup_group = harness.group([PaymentSucceeded.TYPE, PaymentFailed.TYPE])
    seatlock = harness.runtime(seatlock_app, seat_group, {"redis": harness.redis})
    cleanup = harness.runtime(cleanup_app, cleanup_group, {"redis": harness.redis})
    with ExitStack() as stack:
        stack.enter_context(harness.running(seatlock))
        stack.enter_context(harness.running(cleanup))
        yield seat_group, cleanup_group


def reservation_and_payment(harness, ids: dict[str, Any]) -> tuple[Envelope, Envelope]:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    reserved = harness.event(reservation_created(), **ids, hold_expires_at=expires)
    return reserved, harness.event(payment_succeeded(), **ids)


def publish(harness, event: Envelope) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish([event])


def test_a_payment_handled_before_its_reservation_leaves_no_hold(harness):
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    reserved, paid = reservation_and_payment(harness, ids)
    with both_consumers(harness) as (seat_group, cleanup_group):
        publish(harness, paid)
        harness.wait_until(lambda: harness.processed(cleanup_group, paid.event_id), what="cleanup")
        publish(harness, reserved)
        harness.wait_until(
            lambda: harness.processed(seat_group, reserved.event_id), what="the late reservation"
        )
    assert not harness.redis.exists(keys.seat_hold(ids["seat_id"]))
    assert harness.redis.get(keys.seat_released(ids["reservation_id"])) == b"paid"


def test_in_the_normal_order_the_hold_is_set_then_released(harness):
    keys = RedisKeys(harness.prefix)
    ids = harness.ids()
    reserved, paid = reservation_and_payment(harness, ids)
    token = f"{harness.prefix}queue:active:{ids['queue_token_id']}"
    harness.redis.set(token, 501)
    hold = keys.seat_hold(ids["seat_id"])
    with both_consumers(harness):
        publish(harness, reserved)
        harness.wait_until(lambda: harness.redis.get(hold) == str(ids["reservation_id"]).encode())
        publish(harness, paid)
        harness.wait_until(lambda: not harness.redis.exists(hold), what="the release")
    assert not harness.redis.exists(token), "the queue token expired with the payment"
