"""The seat-hold rule as pure functions: which call each event becomes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from opentelemetry.context import Context
from seatlock_consumer.handlers import Call, RedisKeys, epoch_ms, hold_call, hold_seats
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import ReservationCreated
from ticketing_events.testing import reservation_created

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEYS = RedisKeys("p:")


def reservation(n: int, expires_at: datetime) -> ReservationCreated:
    payload = reservation_created(n).payload.model_copy(update={"hold_expires_at": expires_at})
    return ReservationCreated.new(payload, producer="tests")


def test_a_live_hold_becomes_one_call_with_its_keys_and_absolute_end():
    event = reservation(1, NOW + timedelta(minutes=5))
    call = hold_call(event, KEYS, epoch_ms(NOW))
    assert call == (
        event.event_id,
        ("p:seat:hold:1001", "p:seat:released:10001"),
        (10001, epoch_ms(NOW) + 300_000),
    )


def test_an_expired_hold_is_skipped():
    assert hold_call(reservation(1, NOW), KEYS, epoch_ms(NOW)) is None
    assert hold_call(reservation(1, NOW - timedelta(seconds=1)), KEYS, epoch_ms(NOW)) is None


def test_a_naive_expiry_reads_as_utc_whatever_the_local_zone():
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1)) == 1000
    assert epoch_ms(datetime(1970, 1, 1, 9, 0, 1, tzinfo=UTC)) == 9 * 3600_000 + 1000


class RecordingEffects:
    """Applies nothing; records the calls of each round trip."""

    def __init__(self) -> None:
        self.round_trips: list[list[Call]] = []

    def apply_many(self, calls: Iterable[Call]) -> list[bool]:
        batch = list(calls)
        self.round_trips.append(batch)
        return [True] * len(batch)


def test_a_batch_is_one_round_trip_in_order_without_the_expired():
    events = [
        reservation(1, NOW + timedelta(minutes=5)),
        reservation(2, NOW - timedelta(minutes=1)),
        reservation(3, NOW + timedelta(seconds=30)),
    ]
    batch = [Delivery(e, e.TYPE, 0, i, Context(), None) for i, e in enumerate(events)]
    effects = RecordingEffects()
    hold_seats(effects, KEYS, clock=lambda: NOW.timestamp())(batch)  # type: ignore[arg-type]
    assert len(effects.round_trips) == 1
    assert [c[0] for c in effects.round_trips[0]] == [events[0].event_id, events[2].event_id]
