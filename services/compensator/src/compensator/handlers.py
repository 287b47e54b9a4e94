"""The compensation rule, as plain functions from failed payments to what they undo.

Once per event, in one transaction per batch (payment-api README, "What the API does and
leaves to others on a failed payment"):

- the payer's own reservation (reasons ``insufficient_points``, ``hold_expired``,
  ``reservation_not_held``) is cancelled while it is ``held`` or ``payment_failed``, and only
  then its seat is made available again, while the seat is still held by that reservation;
- reason ``not_owner``: the payer is not the reservation's owner, so the owner's reservation
  and seat are left alone;
- whatever the reason, ``points_deducted`` (when > 0) goes back to the payer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import FailureReason, PaymentFailed

log = structlog.get_logger("compensator")


@dataclass(frozen=True, slots=True)
class Compensation:
    """What one failed payment undoes."""

    event_id: str
    reservation_id: int
    user_id: int
    seat_id: int
    cancel: bool  # end the payer's reservation and free its seat
    refund: int  # points given back to the payer


def compensation(event: PaymentFailed) -> Compensation:
    p = event.payload
    return Compensation(
        event.event_id,
        p.reservation_id,
        p.user_id,
        p.seat_id,
        cancel=p.reason is not FailureReason.NOT_OWNER,
        refund=p.points_deducted,
    )


def refunds(items: Iterable[Compensation]) -> dict[int, int]:
    """Points to give back per user, in user id order (the order every replica locks in)."""
    total: dict[int, int] = {}
    for c in items:
        if c.refund > 0:
            total[c.user_id] = total.get(c.user_id, 0) + c.refund
    return dict(sorted(total.items()))


class Compensations(Protocol):
    """The database side (``adapters.SqlCompensations``)."""

    def apply(self, items: Sequence[Compensation]) -> int:
        """Apply the items not applied yet, in one transaction; returns how many those were."""
        ...


def compensate(store: Compensations) -> Callable[[Sequence[Delivery[PaymentFailed]]], None]:
    """The ``payment.failed`` batch handler: one transaction per batch."""

    def handle(batch: Sequence[Delivery[PaymentFailed]]) -> None:
        applied = store.apply([compensation(d.event) for d in batch])
        log.debug("payments compensated", applied=applied, duplicates=len(batch) - applied)

    return handle
