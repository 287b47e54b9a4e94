"""Pure rules: who may pay what, when a hold counts, what a token id is."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from payment_api.domain.errors import ReservationNotPayable
from payment_api.domain.model import (
    PayableReservation,
    ReservationStatus,
    SeatStatus,
    ends_reservation,
    new_queue_token,
    payment_obstacle,
    seat_status_at,
    token_id,
)
from ticketing_events import FailureReason

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HELD = PayableReservation(
    reservation_id=10,
    owner_id=1,
    status=ReservationStatus.HELD,
    hold_expires_at=NOW + timedelta(minutes=5),
    amount=100,
    seat_id=7,
    seat_status=SeatStatus.HELD,
    seat_reservation_id=10,
)


def test_the_owner_may_pay_a_live_hold():
    assert payment_obstacle(HELD, payer_id=1, now=NOW) is None


def test_someone_else_may_not_whatever_the_state():
    for status in ReservationStatus:
        r = replace(HELD, status=status)
        assert payment_obstacle(r, payer_id=2, now=NOW) is FailureReason.NOT_OWNER


@pytest.mark.parametrize(
    "changes",
    [
        {"hold_expires_at": NOW},
        {"hold_expires_at": NOW - timedelta(seconds=1)},
        {"seat_reservation_id": 11},  # the seat was taken over after the hold lapsed
        {"seat_status": SeatStatus.AVAILABLE},
    ],
)
def test_a_lapsed_or_lost_hold_has_expired(changes):
    assert payment_obstacle(replace(HELD, **changes), 1, NOW) is FailureReason.HOLD_EXPIRED


def test_paid_and_ended_reservations_are_not_payable():
    with pytest.raises(ReservationNotPayable) as paid:
        payment_obstacle(replace(HELD, status=ReservationStatus.CONFIRMED), 1, NOW)
    assert paid.value.already_paid
    for status in (ReservationStatus.PAYMENT_FAILED, ReservationStatus.CANCELLED):
        with pytest.raises(ReservationNotPayable) as ended:
            payment_obstacle(replace(HELD, status=status), 1, NOW)
        assert not ended.value.already_paid


def test_only_the_owners_failures_end_the_reservation():
    assert ends_reservation(FailureReason.INSUFFICIENT_POINTS)
    assert ends_reservation(FailureReason.HOLD_EXPIRED)
    assert not ends_reservation(FailureReason.NOT_OWNER)


def test_a_lapsed_hold_reads_as_available():
    assert seat_status_at(SeatStatus.HELD, NOW + timedelta(seconds=1), NOW) is SeatStatus.HELD
    assert seat_status_at(SeatStatus.HELD, NOW, NOW) is SeatStatus.AVAILABLE
    assert seat_status_at(SeatStatus.SOLD, None, NOW) is SeatStatus.SOLD


def test_tokens_are_unguessable_and_their_id_is_the_sha256_digest():
    tokens = {new_queue_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 43 for t in tokens)
    token = next(iter(tokens))
    assert token_id(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(token_id(token)) == 64
