"""Hold a seat for a caller and announce it (reservation.created)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketing_events import ReservationCreated, ReservationCreatedPayload

from payment_api.domain.errors import NotFound, SaleNotOpen, SeatUnavailable
from payment_api.domain.model import Caller, ReservationStatus, hold_deadline
from payment_api.service_layer.unit_of_work import UnitOfWork

PRODUCER = "payment-api"


@dataclass(frozen=True, slots=True)
class ReservationView:
    reservation_id: int
    user_id: int
    seat_id: int
    schedule_id: int
    amount: int
    status: ReservationStatus
    reserved_at: datetime
    hold_expires_at: datetime


def reserve(
    tx: UnitOfWork, caller: Caller, seat_id: int, now: datetime, hold_seconds: int
) -> ReservationView:
    """Insert the reservation, then take the seat with one conditional UPDATE.

    When the seat is taken the error rolls the insert back: nothing is written.
    """
    seat = tx.seats.for_sale(seat_id)
    if seat is None:
        raise NotFound("seat", seat_id)
    if seat.schedule.sale_opened_at > now:
        raise SaleNotOpen(seat.schedule.schedule_id)
    expires = hold_deadline(now, hold_seconds)
    reservation_id = tx.reservations.add(
        user_id=caller.user_id,
        seat=seat,
        queue_token_id=caller.token_id,
        reserved_at=now,
        hold_expires_at=expires,
    )
    if not tx.seats.hold(seat_id, reservation_id, now, expires):
        raise SeatUnavailable(seat_id)
    schedule = seat.schedule
    payload = ReservationCreatedPayload(
        reservation_id=reservation_id,
        user_id=caller.user_id,
        concert_id=schedule.concert_id,
        schedule_id=schedule.schedule_id,
        concert_date=schedule.concert_date,
        seat_id=seat_id,
        queue_token_id=caller.token_id,
        price=seat.price,
        reserved_at=now,
        hold_expires_at=expires,
    )
    tx.outbox.add(ReservationCreated.new(payload, producer=PRODUCER))
    return ReservationView(
        reservation_id=reservation_id,
        user_id=caller.user_id,
        seat_id=seat_id,
        schedule_id=schedule.schedule_id,
        amount=seat.price,
        status=ReservationStatus.HELD,
        reserved_at=now,
        hold_expires_at=expires,
    )
