"""Statuses, queue tokens and the decisions taken on seats, reservations and payments."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ticketing_events import FailureReason

from payment_api.domain.errors import ReservationNotPayable


class SeatStatus(StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    SOLD = "sold"


class ReservationStatus(StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    # A payment failed: the reservation is over for the API; the compensator cancels it.
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"


class PaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TokenStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"


def new_queue_token() -> str:
    """An unguessable bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_id(token: str) -> str:
    """The public id of a token: its sha256 hex digest (events and Redis keys use it)."""
    return hashlib.sha256(token.encode()).hexdigest()


def hold_deadline(now: datetime, hold_seconds: int) -> datetime:
    return now + timedelta(seconds=hold_seconds)


def seat_status_at(status: SeatStatus, held_until: datetime | None, now: datetime) -> SeatStatus:
    """What a seat is for a buyer at ``now``: a lapsed hold is available again."""
    if status is SeatStatus.HELD and (held_until is None or held_until <= now):
        return SeatStatus.AVAILABLE
    return status


@dataclass(frozen=True, slots=True)
class PayableReservation:
    """A reservation and its seat as locked by a payment."""

    reservation_id: int
    owner_id: int
    status: ReservationStatus
    hold_expires_at: datetime
    amount: int
    seat_id: int
    seat_status: SeatStatus
    seat_reservation_id: int | None


def payment_obstacle(r: PayableReservation, payer_id: int, now: datetime) -> FailureReason | None:
    """Why ``payer_id`` cannot pay ``r`` now (points aside), or None when they may.

    A reservation that is already paid or over raises ReservationNotPayable: there is
    nothing left to fail, so no failed payment is recorded for it.
    """
    if r.owner_id != payer_id:
        return FailureReason.NOT_OWNER
    if r.status is ReservationStatus.CONFIRMED:
        raise ReservationNotPayable(r.reservation_id, already_paid=True)
    if r.status is not ReservationStatus.HELD:
        raise ReservationNotPayable(r.reservation_id, already_paid=False)
    still_holds_seat = (
        r.seat_status is SeatStatus.HELD and r.seat_reservation_id == r.reservation_id
    )
    if r.hold_expires_at <= now or not still_holds_seat:
        return FailureReason.HOLD_EXPIRED
    return None


def ends_reservation(reason: FailureReason) -> bool:
    """Whether a failed payment ends the reservation; another user's attempt does not."""
    return reason is not FailureReason.NOT_OWNER


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the user behind an active queue token, and that token's id."""

    user_id: int
    token_id: str
