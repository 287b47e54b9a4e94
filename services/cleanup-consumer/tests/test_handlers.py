"""The cleanup rule as pure functions: which call each payment result becomes."""

from __future__ import annotations

from collections.abc import Iterable

from cleanup_consumer.handlers import (
    FAILED,
    PAID,
    Call,
    RedisKeys,
    failure_call,
    release_after_failure,
    release_after_success,
    success_call,
)
from opentelemetry.context import Context
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import FailureReason
from ticketing_events.testing import payment_failed, payment_succeeded

KEYS = RedisKeys("p:")


def test_a_success_releases_the_hold_writes_the_tombstone_and_expires_the_token():
    event = payment_succeeded(1)
    assert success_call(event, KEYS, 1800) == (
        event.event_id,
        ("p:seat:hold:1001", "p:seat:released:10001", f"p:queue:active:{1:064x}"),
        (10001, 1800, PAID),
    )


def test_a_failure_releases_the_hold_and_leaves_the_token():
    event = payment_failed(1)
    assert failure_call(event, KEYS, 60) == (
        event.event_id,
        ("p:seat:hold:1001", "p:seat:released:10001"),
        (10001, 60, FAILED),
    )


class RecordingEffects:
    """Applies nothing; records the calls of each round trip."""

    def __init__(self) -> None:
        self.round_trips: list[list[Call]] = []

    def apply_many(self, calls: Iterable[Call]) -> list[bool]:
        batch = list(calls)
        self.round_trips.append(batch)
        return [True] * len(batch)


def test_a_batch_is_one_round_trip_in_order():
    events = [payment_succeeded(i) for i in range(5)]
    batch = [Delivery(e, e.TYPE, 0, i, Context(), None) for i, e in enumerate(events)]
    effects = RecordingEffects()
    release_after_success(effects, KEYS, 60)(batch)  # type: ignore[arg-type]
    assert [[c[0] for c in trip] for trip in effects.round_trips] == [[e.event_id for e in events]]


def test_another_users_failed_attempt_leaves_the_owners_hold_alone():
    intruder = payment_failed(1, FailureReason.NOT_OWNER)
    owner_failure = payment_failed(2)
    events = [intruder, owner_failure]
    batch = [Delivery(e, e.TYPE, 0, i, Context(), None) for i, e in enumerate(events)]
    effects = RecordingEffects()
    release_after_failure(effects, KEYS, 60)(batch)  # type: ignore[arg-type]
    assert [[c[0] for c in trip] for trip in effects.round_trips] == [[owner_failure.event_id]]
