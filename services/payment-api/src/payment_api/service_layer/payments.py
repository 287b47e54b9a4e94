"""Pay a held reservation with points, in one transaction, announcing success or failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketing_events import (
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
)

from payment_api.adapters.repositories import LockedReservation
from payment_api.domain.errors import NotFound
from payment_api.domain.model import (
    Caller,
    PaymentStatus,
    ReservationStatus,
    ends_reservation,
    payment_obstacle,
)
from payment_api.service_layer.reservations import PRODUCER
from payment_api.service_layer.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    payment_id: int
    reservation_id: int
    seat_id: int
    amount: int
    status: PaymentStatus
    reason: FailureReason | None
    balance: int | None  # after a success
    at: datetime
    event: PaymentSucceeded | PaymentFailed  # written to the outbox


def pay(tx: UnitOfWork, caller: Caller, reservation_id: int, now: datetime) -> PaymentOutcome:
    """Charge once: the reservation and seat rows stay locked until the commit, so a second
    attempt waits and then finds the reservation confirmed (ReservationNotPayable)."""
    locked = tx.reservations.lock_for_payment(reservation_id)
    # Another user's reservation is answered as if it did not exist, and nothing is recorded.
    if locked is None or locked.payable.owner_id != caller.user_id:
        raise NotFound("reservation", reservation_id)
    r = locked.payable
    reason = payment_obstacle(r, caller.user_id, now)
    if reason is None:
        balance = tx.users.deduct(caller.user_id, r.amount)
        if balance is not None:
            return _succeed(tx, caller, locked, balance, now)
        reason = FailureReason.INSUFFICIENT_POINTS
    return _fail(tx, caller, locked, reason, now)


def _succeed(
    tx: UnitOfWork, caller: Caller, locked: LockedReservation, balance: int, now: datetime
) -> PaymentOutcome:
    r, schedule = locked.payable, locked.schedule
    tx.seats.sell(r.seat_id, r.reservation_id)
    tx.reservations.set_status(r.reservation_id, ReservationStatus.CONFIRMED, confirmed_at=now)
    payment_id = tx.payments.add(
        reservation_id=r.reservation_id,
        user_id=caller.user_id,
        amount=r.amount,
        status=PaymentStatus.SUCCEEDED,
        failure_reason=None,
        points_deducted=r.amount,
        created_at=now,
    )
    payload = PaymentSucceededPayload(
        reservation_id=r.reservation_id,
        user_id=caller.user_id,
        concert_id=schedule.concert_id,
        schedule_id=schedule.schedule_id,
        concert_date=schedule.concert_date,
        seat_id=r.seat_id,
        queue_token_id=caller.token_id,
        payment_id=payment_id,
        amount=r.amount,
        paid_at=now,
        schedule_seat_count=schedule.seat_count,
        sale_opened_at=schedule.sale_opened_at,
    )
    event = PaymentSucceeded.new(payload, producer=PRODUCER)
    tx.outbox.add(event)
    return PaymentOutcome(
        payment_id,
        r.reservation_id,
        r.seat_id,
        r.amount,
        PaymentStatus.SUCCEEDED,
        None,
        balance,
        now,
        event,
    )


def _fail(
    tx: UnitOfWork, caller: Caller, locked: LockedReservation, reason: FailureReason, now: datetime
) -> PaymentOutcome:
    """Record the failed attempt; it ends the caller's own reservation, never someone else's.

    Nothing was deducted (points are taken only on success), so ``points_deducted`` is 0.
    """
    r, schedule = locked.payable, locked.schedule
    if ends_reservation(reason):
        tx.reservations.set_status(
            r.reservation_id, ReservationStatus.PAYMENT_FAILED, confirmed_at=None
        )
    payment_id = tx.payments.add(
        reservation_id=r.reservation_id,
        user_id=caller.user_id,
        amount=r.amount,
        status=PaymentStatus.FAILED,
        failure_reason=reason,
        points_deducted=0,
        created_at=now,
    )
    payload = PaymentFailedPayload(
        reservation_id=r.reservation_id,
        user_id=caller.user_id,
        concert_id=schedule.concert_id,
        schedule_id=schedule.schedule_id,
        concert_date=schedule.concert_date,
        seat_id=r.seat_id,
        queue_token_id=caller.token_id,
        payment_id=payment_id,
        amount=r.amount,
        points_deducted=0,
        reason=reason,
        failed_at=now,
    )
    event = PaymentFailed.new(payload, producer=PRODUCER)
    tx.outbox.add(event)
    return PaymentOutcome(
        payment_id,
        r.reservation_id,
        r.seat_id,
        r.amount,
        PaymentStatus.FAILED,
        reason,
        None,
        now,
        event,
    )
