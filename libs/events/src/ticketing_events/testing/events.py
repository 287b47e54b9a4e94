"""Realistic events, one per ``n``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ticketing_events.schemas import (
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    ReservationCreated,
    ReservationCreatedPayload,
)

if TYPE_CHECKING:
    pass


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _ids(n: int) -> dict[str, Any]:
    return {
        "reservation_id": 10_000 + n,
        "user_id": 500 + n,
        "concert_id": 7,
        "schedule_id": 70 + n % 3,
        "concert_date": date(2026, 12, 24),
        "seat_id": 1_000 + n,
        "queue_token_id": f"{n:064x}",
    }


def payment_succeeded(n: int = 1) -> PaymentSucceeded:
    payload = PaymentSucceededPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        paid_at=NOW,
        schedule_seat_count=50,
        sale_opened_at=NOW - timedelta(minutes=10),
    )
    return PaymentSucceeded.new(payload, producer="tests")


def payment_failed(
    n: int = 1, reason: FailureReason = FailureReason.INSUFFICIENT_POINTS
) -> PaymentFailed:
    payload = PaymentFailedPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        points_deducted=0,
        reason=reason,
        failed_at=NOW,
    )
    return PaymentFailed.new(payload, producer="tests")


def reservation_created(n: int = 1) -> ReservationCreated:
    payload = ReservationCreatedPayload(
        **_ids(n),
        price=150_000,
        reserved_at=NOW,
        hold_expires_at=NOW + timedelta(minutes=5),
    )
    return ReservationCreated.new(payload, producer="tests")
