"""Read-only views: concerts, schedules with free seats, seats, sold-out ranking."""

from __future__ import annotations

from datetime import date, datetime

from payment_api.domain.errors import NotFound
from payment_api.domain.model import SeatStatus, seat_status_at
from payment_api.service_layer.unit_of_work import UnitOfWork


def concerts(tx: UnitOfWork, limit: int, offset: int) -> list[dict[str, object]]:
    return tx.catalogue.concerts(limit, offset)


def schedules(tx: UnitOfWork, concert_id: int, now: datetime) -> list[dict[str, object]]:
    if not tx.catalogue.concert_exists(concert_id):
        raise NotFound("concert", concert_id)
    return tx.catalogue.schedules(concert_id, now)


def seats(tx: UnitOfWork, schedule_id: int, now: datetime) -> list[dict[str, object]]:
    if not tx.catalogue.schedule_exists(schedule_id):
        raise NotFound("schedule", schedule_id)
    rows = tx.catalogue.seats(schedule_id)
    for row in rows:
        held_until = row.pop("held_until")
        row["status"] = seat_status_at(SeatStatus(row["status"]), held_until, now)  # type: ignore[arg-type]
    return rows


def sold_out_ranking(tx: UnitOfWork, concert_date: date, limit: int) -> list[dict[str, object]]:
    rows = tx.catalogue.sold_out_ranking(concert_date, limit)
    return [{"rank": i, **row} for i, row in enumerate(rows, start=1)]
