"""The tables other services rely on keep the shape they expect."""

from __future__ import annotations

from payment_api.adapters.tables import metadata
from sqlalchemy import MetaData
from ticketing_events.idempotency import processed_events_table


def _shape(table):
    return [
        (c.name, type(c.type).__name__, getattr(c.type, "length", None), c.primary_key, c.nullable)
        for c in table.columns
    ]


def test_processed_events_has_the_shared_library_shape():
    expected = processed_events_table(MetaData())
    assert _shape(metadata.tables["processed_events"]) == _shape(expected)


def test_contract_tables_exist():
    assert {
        "concerts",
        "schedules",
        "seats",
        "users",
        "reservations",
        "payments",
        "outbox",
        "idempotency_keys",
        "sold_out_ranking",
        "schedule_sales",
        "processed_events",
    } == set(metadata.tables)
