"""The post-payment cleanup rule, as plain functions from events to Redis script calls.

Rule, once per event:

- ``payment.success``: release the seat hold (delete ``seat:hold:{seat_id}`` only while it
  still holds this reservation), expire the fan's active queue token
  (``queue:active:{queue_token_id}``), and write the tombstone
  ``seat:released:{reservation_id}``.
- ``payment.failed``: release the seat hold the same way (the seat is free again) and write
  the tombstone, but leave the queue token active so the fan can retry.
- ``payment.failed`` with reason ``not_owner``: nothing. The payer was not the reservation's
  owner, so the owner's hold and reservation stay as they are.

The tombstone stops a ``reservation.created`` handled after the payment (topics are
independent) from holding the seat again; the seatlock consumer checks it in the same script
that sets the hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from ticketing_events.consumer import Delivery
from ticketing_events.idempotency import Call, Effects
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import FailureReason, PaymentFailed, PaymentSucceeded

log = structlog.get_logger("cleanup_consumer")

# Runs inside RedisOnce's dedupe script: KEYS[2] the hold, KEYS[3] the tombstone,
# KEYS[4] (success only) the active queue token; ARGV[3] the reservation id, ARGV[4] the
# tombstone's TTL in seconds, ARGV[5] the outcome kept as the tombstone's value.
RELEASE_LUA = """
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
if #KEYS >= 4 then
  redis.call('DEL', KEYS[4])
end
"""

PAID = "paid"
FAILED = "failed"


def success_call(event: PaymentSucceeded, keys: RedisKeys, tombstone_ttl_s: int) -> Call:
    """Release the hold, write the tombstone, expire the queue token."""
    p = event.payload
    return (
        event.event_id,
        (
            keys.seat_hold(p.seat_id),
            keys.seat_released(p.reservation_id),
            keys.queue_active(p.queue_token_id),
        ),
        (p.reservation_id, tombstone_ttl_s, PAID),
    )


def failure_call(event: PaymentFailed, keys: RedisKeys, tombstone_ttl_s: int) -> Call:
    """Release the hold and write the tombstone; the queue token stays active."""
    p = event.payload
    return (
        event.event_id,
        (keys.seat_hold(p.seat_id), keys.seat_released(p.reservation_id)),
        (p.reservation_id, tombstone_ttl_s, FAILED),
    )


def release_after_success(
    effects: Effects, keys: RedisKeys, tombstone_ttl_s: int
) -> Callable[[Sequence[Delivery[PaymentSucceeded]]], None]:
    """The ``payment.success`` batch handler: one pipelined round trip per batch."""

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        applied = effects.apply_many(success_call(d.event, keys, tombstone_ttl_s) for d in batch)
        _log_batch(PAID, applied)

    return handle


def release_after_failure(
    effects: Effects, keys: RedisKeys, tombstone_ttl_s: int
) -> Callable[[Sequence[Delivery[PaymentFailed]]], None]:
    """The ``payment.failed`` batch handler: one pipelined round trip per batch, skipping
    another user's attempt (``not_owner``)."""

    def handle(batch: Sequence[Delivery[PaymentFailed]]) -> None:
        applied = effects.apply_many(
            failure_call(d.event, keys, tombstone_ttl_s)
            for d in batch
            if d.event.payload.reason is not FailureReason.NOT_OWNER
        )
        _log_batch(FAILED, applied)

    return handle


def _log_batch(outcome: str, applied: list[bool]) -> None:
    log.debug(
        "holds released",
        outcome=outcome,
        applied=sum(applied),
        duplicates=len(applied) - sum(applied),
    )
