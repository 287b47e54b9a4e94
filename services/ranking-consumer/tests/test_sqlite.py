"""The same statements on SQLite, the embedded local default."""

from __future__ import annotations

from datetime import timedelta

from payment_api.migrations import upgrade_schema
from ranking_consumer.adapters import SqlSalesLedger, schedule_sales
from sqlalchemy import select
from ticketing_events.db import create_db_engine
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import NOW, payment_succeeded


def test_payments_count_once_and_the_latest_sells_out_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/payment.db"
    upgrade_schema(url)
    engine = create_db_engine(url)
    opened = NOW - timedelta(minutes=10)
    events = [
        PaymentSucceeded.new(
            payment_succeeded(n).payload.model_copy(
                update={
                    "schedule_id": 5,
                    "schedule_seat_count": 3,
                    "sale_opened_at": opened,
                    "paid_at": opened + timedelta(seconds=s),
                }
            ),
            producer="tests",
        )
        for n, s in enumerate([10, 90, 30])
    ]
    ledger = SqlSalesLedger(engine, "g")
    assert ledger.record([events[1], events[1]]) == [], "twice in a batch counts once"
    assert ledger.record(events[1:2]) == [], "so does a redelivery"
    [entry] = ledger.record([events[0], events[2], events[1]])
    assert (entry.schedule_id, entry.sold_out_at, entry.seconds_to_sell_out) == (
        5,
        opened + timedelta(seconds=90),
        90.0,
    )
    assert ledger.sold_out_entries() == [entry]
    with engine.connect() as conn:
        assert conn.execute(select(schedule_sales.c.sold)).scalar() == 3
    engine.dispose()
