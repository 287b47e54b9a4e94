"""Demo and test data: concerts with schedules and seats, users with points."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, insert

from payment_api.adapters.tables import Concert, Schedule, Seat, User, table_of

concerts = table_of(Concert)
schedules = table_of(Schedule)
seats = table_of(Seat)
users = table_of(User)


@dataclass
class Seeded:
    concert_ids: list[int] = field(default_factory=list)
    schedule_ids: list[int] = field(default_factory=list)
    seat_ids: list[int] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)


def add_schedule(
    conn: Connection,
    *,
    seats_count: int,
    price: int,
    concert_date: date,
    sale_opened_at: datetime,
    concert_id: int | None = None,
    title: str = "Concert",
) -> tuple[int, int, list[int]]:
    """One schedule with ``seats_count`` seats (new concert unless given); its ids."""
    if concert_id is None:
        concert_id = conn.execute(
            insert(concerts).values(title=title).returning(concerts.c.id)
        ).scalar_one()
    schedule_id = conn.execute(
        insert(schedules)
        .values(
            concert_id=concert_id,
            concert_date=concert_date,
            sale_opened_at=sale_opened_at,
            seat_count=seats_count,
        )
        .returning(schedules.c.id)
    ).scalar_one()
    rows = [
        {"schedule_id": schedule_id, "seat_no": n, "price": price, "status": "available"}
        for n in range(1, seats_count + 1)
    ]
    if not rows:  # an insert of no rows would insert one of defaults
        return concert_id, schedule_id, []
    seat_ids = list(
        conn.execute(
            insert(seats).returning(seats.c.id, sort_by_parameter_order=True), rows
        ).scalars()
    )
    return concert_id, schedule_id, seat_ids


def add_users(conn: Connection, count: int, points: int, name: str = "fan") -> list[int]:
    rows = [{"name": f"{name}-{n}", "points": points} for n in range(1, count + 1)]
    if not rows:  # an insert of no rows would insert one of defaults
        return []
    return list(
        conn.execute(
            insert(users).returning(users.c.id, sort_by_parameter_order=True), rows
        ).scalars()
    )


def seed(
    engine: Engine,
    *,
    concerts_count: int = 3,
    schedules_per_concert: int = 2,
    seats_per_schedule: int = 50,
    users_count: int = 100,
    points: int = 1_000_000,
    price: int = 150_000,
) -> Seeded:
    """Concerts on consecutive days from tomorrow, on sale from now."""
    now = datetime.now(UTC)
    seeded = Seeded()
    with engine.begin() as conn:
        for c in range(concerts_count):
            concert_id = None
            for s in range(schedules_per_concert):
                concert_id, schedule_id, seat_ids = add_schedule(
                    conn,
                    seats_count=seats_per_schedule,
                    price=price,
                    concert_date=(now + timedelta(days=1 + s)).date(),
                    sale_opened_at=now,
                    concert_id=concert_id,
                    title=f"Concert {c + 1}",
                )
                seeded.schedule_ids.append(schedule_id)
                seeded.seat_ids.extend(seat_ids)
            assert concert_id is not None
            seeded.concert_ids.append(concert_id)
        seeded.user_ids = add_users(conn, users_count, points)
    return seeded
