"""The sold-out rule as pure functions: counts per schedule, when and how fast it sold out."""

from __future__ import annotations

from datetime import timedelta

from opentelemetry.context import Context
from ranking_consumer.handlers import SoldOut, Tally, sold_out, tally, update_ranking
from ticketing_events.consumer import Delivery
from ticketing_events.testing import NOW, payment_succeeded

OPENED = NOW - timedelta(minutes=10)


def payment(schedule_id: int, paid_after_s: float, seats: int = 3):
    event = payment_succeeded(schedule_id)
    return event.payload.model_copy(
        update={
            "schedule_id": schedule_id,
            "schedule_seat_count": seats,
            "sale_opened_at": OPENED,
            "paid_at": OPENED + timedelta(seconds=paid_after_s),
        }
    )


def test_a_batch_is_counted_per_schedule_with_its_latest_payment():
    tallies = tally([payment(9, 30), payment(4, 5), payment(9, 50), payment(9, 40)])
    assert [(t.schedule_id, t.sold, t.last_paid_at - OPENED) for t in tallies] == [
        (4, 1, timedelta(seconds=5)),
        (9, 3, timedelta(seconds=50)),
    ]


def tally_of(sold: int, seats: int = 3) -> Tally:
    return Tally(9, 7, NOW.date(), seats, OPENED, sold, OPENED + timedelta(seconds=50))


def test_the_batch_that_reaches_the_seat_count_sells_the_schedule_out():
    last = OPENED + timedelta(seconds=80)  # a payment counted in an earlier batch was later
    assert sold_out(tally_of(2), 3, last) == SoldOut(9, 7, NOW.date(), OPENED, last, 80.0)


def test_a_schedule_sells_out_once():
    last = OPENED + timedelta(seconds=80)
    assert sold_out(tally_of(2), 2, last) is None, "not yet"
    assert sold_out(tally_of(1), 4, last) is None, "already sold out before this batch"
    assert sold_out(tally_of(2), 4, last) is not None, "crossed in this batch"


def test_the_handler_writes_the_ledgers_entries_to_the_board():
    entry = SoldOut(9, 7, NOW.date(), OPENED, NOW, 600.0)

    class Ledger:
        def record(self, payments):
            self.payments = [p.event_id for p in payments]
            return [entry]

    class Board:
        def add(self, entries):
            self.entries = list(entries)

    events = [payment_succeeded(i) for i in range(3)]
    batch = [Delivery(e, e.TYPE, 0, i, Context(), None) for i, e in enumerate(events)]
    ledger, board = Ledger(), Board()
    update_ranking(ledger, board)(batch)  # type: ignore[arg-type]
    assert ledger.payments == [e.event_id for e in events]
    assert board.entries == [entry]
