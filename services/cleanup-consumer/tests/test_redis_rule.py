"""The release script against the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from cleanup_consumer.app import release_effects
from cleanup_consumer.handlers import FAILED, PAID, RedisKeys, failure_call, success_call
from ticketing_events.idempotency import RedisOnce
from ticketing_events.schemas import Envelope, PaymentSucceeded
from ticketing_events.testing import payment_failed, payment_succeeded, redis_clock_ms

pytestmark = pytest.mark.redis

TOKEN = f"{1:064x}"  # the queue token of the factories' event 1


@dataclass
class Scene:
    client: redis.Redis
    releases: RedisOnce
    keys: RedisKeys

    def apply(self, *events: Envelope) -> list[bool]:
        return self.releases.apply_many(
            success_call(e, self.keys, 60)
            if isinstance(e, PaymentSucceeded)
            else failure_call(e, self.keys, 60)  # type: ignore[arg-type]
            for e in events
        )

    def given(self, hold: int | None = 10001, token: bool = True) -> None:
        if hold is not None:
            self.client.set(self.keys.seat_hold(1001), hold, ex=300)
        if token:
            self.client.set(self.keys.queue_active(TOKEN), 501, ex=600)


@pytest.fixture
def scene(redis_url: str) -> Iterator[Scene]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    group = f"test-{uuid.uuid4().hex[:10]}"
    yield Scene(client, release_effects(client, group, prefix), RedisKeys(prefix))
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_a_success_releases_the_hold_expires_the_token_and_leaves_a_tombstone(scene):
    scene.given()
    before = redis_clock_ms(scene.client)
    assert scene.apply(payment_succeeded(1)) == [True]
    after = redis_clock_ms(scene.client)
    assert not scene.client.exists(scene.keys.seat_hold(1001))
    assert not scene.client.exists(scene.keys.queue_active(TOKEN))
    assert scene.client.get(scene.keys.seat_released(10001)) == PAID
    # 60 s from when the script ran, however long the test took to look
    expires = scene.client.pexpiretime(scene.keys.seat_released(10001))
    assert before + 60_000 <= expires <= after + 60_000


def test_a_failure_releases_the_hold_but_keeps_the_token_for_a_retry(scene):
    scene.given()
    assert scene.apply(payment_failed(1)) == [True]
    assert not scene.client.exists(scene.keys.seat_hold(1001))
    assert scene.client.get(scene.keys.queue_active(TOKEN)) == "501"
    assert scene.client.get(scene.keys.seat_released(10001)) == FAILED


def test_the_hold_of_another_reservation_of_the_seat_is_left_alone(scene):
    scene.given(hold=20001)  # the seat was held again by the next reservation
    scene.apply(payment_failed(1))
    assert scene.client.get(scene.keys.seat_hold(1001)) == "20001"


def test_a_duplicate_changes_nothing(scene):
    paid = payment_succeeded(1)
    scene.given()
    assert scene.apply(paid) == [True]
    scene.given(hold=None)  # a later state the redelivery must not touch
    assert scene.apply(paid, paid) == [False, False]
    assert scene.client.get(scene.keys.queue_active(TOKEN)) == "501"
