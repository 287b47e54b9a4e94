"""The compensation rule as pure functions: what each failure reason undoes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from compensator.handlers import Compensation, compensate, compensation, refunds
from opentelemetry.context import Context
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import FailureReason
from ticketing_events.testing import payment_failed


@pytest.mark.parametrize(
    "reason",
    [
        FailureReason.INSUFFICIENT_POINTS,
        FailureReason.HOLD_EXPIRED,
        FailureReason.RESERVATION_NOT_HELD,
    ],
)
def test_the_payers_own_failure_cancels_the_reservation_and_frees_the_seat(reason):
    event = payment_failed(1, reason)
    assert compensation(event) == Compensation(event.event_id, 10001, 501, 1001, True, 0)


def test_another_users_attempt_leaves_the_owners_reservation_and_seat_alone():
    event = payment_failed(1, FailureReason.NOT_OWNER)
    assert compensation(event).cancel is False


def test_deducted_points_go_back_to_the_payer_whatever_the_reason():
    items = [
        replace(compensation(payment_failed(n, reason)), refund=refund)
        for n, (reason, refund) in enumerate(zip(FailureReason, [0, 50, 70, 5], strict=True))
    ]
    again = replace(items[1], event_id="another")  # user 501 failed twice in the batch
    assert refunds([*items, again]) == {501: 100, 502: 70, 503: 5}


def test_a_batch_is_one_call_of_the_store():
    class Store:
        def __init__(self):
            self.calls = []

        def apply(self, items):
            self.calls.append([c.event_id for c in items])
            return len(items)

    events = [payment_failed(n) for n in range(4)]
    batch = [Delivery(e, e.TYPE, 0, i, Context(), None) for i, e in enumerate(events)]
    store = Store()
    compensate(store)(batch)  # type: ignore[arg-type]
    assert store.calls == [[e.event_id for e in events]]
