"""The seat-hold script against the real Redis, alone and raced against the cleanup script."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cleanup_consumer import handlers as cleanup
from cleanup_consumer.app import release_effects
from seatlock_consumer.app import seat_hold_effects
from seatlock_consumer.handlers import RedisKeys, hold_call
from ticketing_events.idempotency import RedisOnce
from ticketing_events.schemas import ReservationCreated
from ticketing_events.testing import payment_succeeded, reservation_created

pytestmark = pytest.mark.redis


def reservation(n: int, reservation_id: int | None = None) -> ReservationCreated:
    update = {"hold_expires_at": datetime.now(UTC) + timedelta(minutes=5)}
    if reservation_id is not None:
        update["reservation_id"] = reservation_id
    payload = reservation_created(n).payload.model_copy(update=update)
    return ReservationCreated.new(payload, producer="tests")


@dataclass
class Scene:
    client: redis.Redis
    holds: RedisOnce
    releases: RedisOnce
    keys: RedisKeys
    cleanup_keys: cleanup.RedisKeys

    def hold(self, *events: ReservationCreated) -> list[bool]:
        now_ms = int(time.time() * 1000)
        return self.holds.apply_many([hold_call(e, self.keys, now_ms) for e in events])  # type: ignore[misc]

    def pay(self, n: int) -> list[bool]:
        return self.releases.apply_many(
            [cleanup.success_call(payment_succeeded(n), self.cleanup_keys, 60)]
        )


@pytest.fixture
def scene(redis_url: str) -> Iterator[Scene]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    groups = [f"test-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield Scene(
        client,
        seat_hold_effects(client, groups[0], prefix),
        release_effects(client, groups[1], prefix),
        RedisKeys(prefix),
        cleanup.RedisKeys(prefix),
    )
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_a_hold_lasts_until_the_reservation_expires(scene: Scene) -> None:
    event = reservation(1)
    assert scene.hold(event) == [True]
    assert scene.client.get(scene.keys.seat_hold(1001)) == "10001"
    expires_ms = int(event.payload.hold_expires_at.timestamp() * 1000)
    assert scene.client.pexpiretime(scene.keys.seat_hold(1001)) == expires_ms


def test_a_redelivered_reservation_does_not_take_back_a_newer_hold(scene: Scene) -> None:
    first, second = reservation(1), reservation(1, reservation_id=20001)  # both on seat 1001
    assert scene.hold(first) == [True]
    assert scene.hold(second, first) == [True, False]
    assert scene.client.get(scene.keys.seat_hold(1001)) == "20001"


def test_a_reservation_handled_after_its_payment_holds_nothing(scene: Scene) -> None:
    assert scene.pay(1) == [True]
    assert scene.hold(reservation(1)) == [True]  # applied, but the tombstone said no
    assert scene.client.get(scene.keys.seat_hold(1001)) is None
    assert scene.client.get(scene.keys.seat_released(10001)) == cleanup.PAID


def test_in_the_normal_order_the_hold_is_set_then_released(scene: Scene) -> None:
    scene.hold(reservation(1))
    assert scene.client.get(scene.keys.seat_hold(1001)) == "10001"
    scene.pay(1)
    assert scene.client.get(scene.keys.seat_hold(1001)) is None
