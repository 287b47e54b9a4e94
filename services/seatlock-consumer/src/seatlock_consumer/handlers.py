"""The seat-hold rule, as plain functions from events to Redis script calls.

Rule: ``reservation.created`` sets ``seat:hold:{seat_id}`` = reservation id, expiring at the
reservation's ``hold_expires_at``, unless

- the hold has already expired (nothing is sent to Redis), or
- the reservation was already paid or cancelled: the cleanup consumer left the tombstone
  ``seat:released:{reservation_id}``. Topics are independent, so a payment event can be
  handled before the ``reservation.created`` of the same reservation; checking the tombstone
  and setting the hold in one script means a late event never resurrects a released hold.

A newer reservation of the same seat overwrites the hold: events are keyed by seat id, so
the reservations of one seat arrive in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from ticketing_events.consumer import Delivery
from ticketing_events.idempotency import Call, Effects
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import ReservationCreated

log = structlog.get_logger("seatlock_consumer")

# Runs inside RedisOnce's dedupe script: KEYS[2] the hold, KEYS[3] the tombstone,
# ARGV[3] the reservation id, ARGV[4] the hold's end in Unix milliseconds.
HOLD_SEAT_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PXAT', ARGV[4])
end
"""


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:  # the contract says UTC; never read a naive time as local
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def hold_call(event: ReservationCreated, keys: RedisKeys, now_ms: int) -> Call | None:
    """The script call holding the event's seat, or None when its hold has already expired."""
    p = event.payload
    expires_ms = epoch_ms(p.hold_expires_at)
    if expires_ms <= now_ms:
        return None
    return (
        event.event_id,
        (keys.seat_hold(p.seat_id), keys.seat_released(p.reservation_id)),
        (p.reservation_id, expires_ms),
    )


def hold_seats(
    effects: Effects, keys: RedisKeys, *, clock: Callable[[], float] = time.time
) -> Callable[[Sequence[Delivery[ReservationCreated]]], None]:
    """The batch handler: one pipelined round trip for every live hold of the batch."""

    def handle(batch: Sequence[Delivery[ReservationCreated]]) -> None:
        now_ms = int(clock() * 1000)
        calls = [c for d in batch if (c := hold_call(d.event, keys, now_ms)) is not None]
        applied = effects.apply_many(calls)
        log.debug(
            "seat holds",
            events=len(batch),
            expired=len(batch) - len(calls),
            applied=sum(applied),
            duplicates=len(applied) - sum(applied),
        )

    return handle
