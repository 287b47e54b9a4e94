"""A PostgreSQL schema of this session, migrated with payment-api's migrations, and the
reservations a failed payment leaves behind, with fresh ids."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial

import pytest
import sqlalchemy
from payment_api.adapters.tables import Reservation, table_of
from payment_api.migrations import upgrade_schema
from payment_api.seed import add_schedule, add_users
from ticketing_events.db import create_db_engine
from ticketing_events.testing import Database, migrated_schema

reservations = table_of(Reservation)


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    migrate = partial(upgrade_schema, database_url)
    with migrated_schema(database_url, "compensator_test", migrate) as db:
        # Other suites' payment.failed events reach this consumer too: ids they never carry.
        with db.engine.begin() as conn:
            for table in ("users", "seats", "reservations"):
                start = random.randrange(10**9, 2 * 10**9)
                conn.exec_driver_sql(f"ALTER SEQUENCE {table}_id_seq RESTART WITH {start}")
        yield db


@pytest.fixture(scope="session")
def engine(db: Database) -> sqlalchemy.Engine:
    return db.engine


@dataclass(frozen=True)
class Held:
    """A reservation holding its seat, as a failed payment of its owner leaves it."""

    reservation_id: int
    user_id: int
    seat_id: int
    schedule_id: int

    @property
    def ids(self) -> dict[str, int]:
        return {
            "reservation_id": self.reservation_id,
            "user_id": self.user_id,
            "seat_id": self.seat_id,
            "schedule_id": self.schedule_id,
        }


def hold(
    engine: sqlalchemy.Engine, count: int, points: int = 0, status: str = "payment_failed"
) -> list[Held]:
    """``count`` users with ``points``, each with a reservation (``status``) holding a seat."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _, schedule, seat_ids = add_schedule(
            conn, seats_count=count, price=1000, concert_date=date(2026, 12, 24), sale_opened_at=now
        )
        user_ids = add_users(conn, count, points)
        rows = [
            {
                "user_id": user,
                "seat_id": seat,
                "schedule_id": schedule,
                "amount": 1000,
                "status": status,
                "queue_token_id": "0" * 64,
                "reserved_at": now,
                "hold_expires_at": now + timedelta(minutes=5),
            }
            for user, seat in zip(user_ids, seat_ids, strict=True)
        ]
        reservation_ids = conn.execute(
            reservations.insert().returning(reservations.c.id, sort_by_parameter_order=True),
            rows,
        ).scalars()
        held = [
            Held(r, u, s, schedule)
            for r, u, s in zip(reservation_ids, user_ids, seat_ids, strict=True)
        ]
        conn.execute(
            sqlalchemy.text(
                "update seats set status = 'held', held_until = :until, reservation_id = :r"
                " where id = :s"
            ),
            [
                {"until": now + timedelta(minutes=5), "r": h.reservation_id, "s": h.seat_id}
                for h in held
            ],
        )
    return held


@pytest.fixture
def world(engine: sqlalchemy.Engine):
    """``world(count, points, status, on=engine)``: see ``hold``."""

    def seed(count=1, points=0, status="payment_failed", on=engine):
        return hold(on, count, points, status)

    return seed


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[sqlalchemy.Engine]:
    """The embedded database, migrated."""
    url = f"sqlite:///{tmp_path}/payment.db"
    upgrade_schema(url)
    engine = create_db_engine(url)
    yield engine
    engine.dispose()
