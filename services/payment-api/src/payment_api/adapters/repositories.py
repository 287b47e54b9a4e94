"""SQL for each aggregate, run on the unit of work's connection.

Every write that decides who gets a seat, a reservation or points is one conditional
statement (or a row lock taken first), so the database settles the races, not Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from payment_api.adapters.tables import (
    Concert,
    IdempotencyKey,
    Payment,
    Reservation,
    Schedule,
    Seat,
    SoldOutRanking,
    User,
    table_of,
)
from payment_api.domain.model import (
    PayableReservation,
    PaymentStatus,
    ReservationStatus,
    SeatStatus,
)

concerts = table_of(Concert)
schedules = table_of(Schedule)
seats = table_of(Seat)
users = table_of(User)
reservations = table_of(Reservation)
payments = table_of(Payment)
idempotency_keys = table_of(IdempotencyKey)
sold_out_ranking = table_of(SoldOutRanking)


@dataclass(frozen=True, slots=True)
class ScheduleFacts:
    """What events say about a seat's schedule."""

    concert_id: int
    schedule_id: int
    concert_date: date
    sale_opened_at: datetime
    seat_count: int


@dataclass(frozen=True, slots=True)
class SeatForSale:
    seat_id: int
    price: int
    schedule: ScheduleFacts


@dataclass(frozen=True, slots=True)
class LockedReservation:
    payable: PayableReservation
    schedule: ScheduleFacts


def _schedule_facts(row: Any) -> ScheduleFacts:
    return ScheduleFacts(
        concert_id=row.concert_id,
        schedule_id=row.schedule_id,
        concert_date=row.concert_date,
        sale_opened_at=row.sale_opened_at,
        seat_count=row.seat_count,
    )


_SCHEDULE_COLUMNS = (
    schedules.c.concert_id,
    schedules.c.id.label("schedule_id"),
    schedules.c.concert_date,
    schedules.c.sale_opened_at,
    schedules.c.seat_count,
)


# Hot-path statements are built once, with bind parameters, and reused.
_USER_BALANCE = select(users.c.points).where(users.c.id == bindparam("user_id"))
_CHARGE = (
    update(users)
    .where(users.c.id == bindparam("user_id"))
    .values(points=users.c.points + bindparam("amount"))
    .returning(users.c.points)
)
_DEDUCT = (
    update(users)
    .where(users.c.id == bindparam("user_id"), users.c.points >= bindparam("amount"))
    .values(points=users.c.points - bindparam("amount"))
    .returning(users.c.points)
)
_SEAT_FOR_SALE = (
    select(seats.c.id, seats.c.price, *_SCHEDULE_COLUMNS)
    .join(schedules, schedules.c.id == seats.c.schedule_id)
    .where(seats.c.id == bindparam("seat_id"))
)
# Free, or held by a hold that has lapsed.
_HOLD_SEAT = (
    update(seats)
    .where(
        seats.c.id == bindparam("seat_id"),
        or_(
            seats.c.status == SeatStatus.AVAILABLE.value,
            and_(seats.c.status == SeatStatus.HELD.value, seats.c.held_until <= bindparam("now")),
        ),
    )
    .values(
        status=SeatStatus.HELD.value,
        held_until=bindparam("until"),
        reservation_id=bindparam("holder"),
    )
)
_SELL_SEAT = (
    update(seats)
    .where(seats.c.id == bindparam("seat_id"), seats.c.reservation_id == bindparam("rid"))
    .values(status=SeatStatus.SOLD.value, held_until=None)
)
_INSERT_RESERVATION = insert(reservations).returning(reservations.c.id)
_LOCK_FOR_PAYMENT = (
    select(
        reservations.c.id,
        reservations.c.user_id,
        reservations.c.status,
        reservations.c.hold_expires_at,
        reservations.c.amount,
        seats.c.id.label("seat_id"),
        seats.c.status.label("seat_status"),
        seats.c.reservation_id.label("seat_reservation_id"),
        *_SCHEDULE_COLUMNS,
    )
    .join(seats, seats.c.id == reservations.c.seat_id)
    .join(schedules, schedules.c.id == reservations.c.schedule_id)
    .where(reservations.c.id == bindparam("rid"))
    .with_for_update(of=[reservations, seats])
)
_LIVE_HOLDS = select(func.count(), func.min(reservations.c.hold_expires_at)).where(
    reservations.c.user_id == bindparam("user_id"),
    reservations.c.status == ReservationStatus.HELD.value,
    reservations.c.hold_expires_at > bindparam("now"),
)
_SET_RESERVATION_STATUS = (
    update(reservations)
    .where(reservations.c.id == bindparam("rid"))
    .values(status=bindparam("new_status"), confirmed_at=bindparam("at"))
)
_INSERT_PAYMENT = insert(payments).returning(payments.c.id)
_IDEMPOTENCY_ANSWER = select(
    idempotency_keys.c.fingerprint, idempotency_keys.c.status_code, idempotency_keys.c.response_body
).where(
    idempotency_keys.c.user_id == bindparam("user_id"), idempotency_keys.c.key == bindparam("key")
)
_IDEMPOTENCY_REMEMBER = (
    update(idempotency_keys)
    .where(
        idempotency_keys.c.user_id == bindparam("uid"),
        idempotency_keys.c.key == bindparam("k"),
    )
    .values(status_code=bindparam("code"), response_body=bindparam("body"))
)
_IDEMPOTENCY_CLAIM = {
    name: dialect.insert(idempotency_keys)
    .on_conflict_do_nothing()
    .returning(idempotency_keys.c.key)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


class UserRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def exists(self, user_id: int) -> bool:
        return self._conn.execute(_USER_BALANCE, {"user_id": user_id}).first() is not None

    def balance(self, user_id: int) -> int | None:
        return self._conn.execute(_USER_BALANCE, {"user_id": user_id}).scalar()

    def charge(self, user_id: int, amount: int) -> int | None:
        """Add points; the new balance, or None for an unknown user."""
        return self._conn.execute(_CHARGE, {"user_id": user_id, "amount": amount}).scalar()

    def deduct(self, user_id: int, amount: int) -> int | None:
        """Take points only if the balance covers them; the new balance, or None."""
        return self._conn.execute(_DEDUCT, {"user_id": user_id, "amount": amount}).scalar()


class SeatRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def for_sale(self, seat_id: int) -> SeatForSale | None:
        row = self._conn.execute(_SEAT_FOR_SALE, {"seat_id": seat_id}).first()
        if row is None:
            return None
        return SeatForSale(seat_id=row.id, price=row.price, schedule=_schedule_facts(row))

    def hold(self, seat_id: int, reservation_id: int, now: datetime, until: datetime) -> bool:
        """Hold the seat for the reservation if it is free or its last hold lapsed."""
        params = {"seat_id": seat_id, "now": now, "until": until, "holder": reservation_id}
        return self._conn.execute(_HOLD_SEAT, params).rowcount == 1

    def sell(self, seat_id: int, reservation_id: int) -> None:
        self._conn.execute(_SELL_SEAT, {"seat_id": seat_id, "rid": reservation_id})


class ReservationRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(
        self,
        *,
        user_id: int,
        seat: SeatForSale,
        queue_token_id: str,
        reserved_at: datetime,
        hold_expires_at: datetime,
    ) -> int:
        row = {
            "user_id": user_id,
            "seat_id": seat.seat_id,
            "schedule_id": seat.schedule.schedule_id,
            "amount": seat.price,
            "status": ReservationStatus.HELD.value,
            "queue_token_id": queue_token_id,
            "reserved_at": reserved_at,
            "hold_expires_at": hold_expires_at,
        }
        return int(self._conn.execute(_INSERT_RESERVATION, row).scalar_one())

    def lock_user_holds(self, user_id: int) -> None:
        """Serialize the reservations of one user until the transaction ends (PostgreSQL: a
        transaction advisory lock, which no row lock waits on; SQLite: one writer anyway)."""
        if self._conn.dialect.name == "postgresql":
            self._conn.exec_driver_sql(
                "select pg_advisory_xact_lock(hashtextextended('reservations-of-user:' || %s, 0))",
                (str(user_id),),
            )

    def live_holds(self, user_id: int, now: datetime) -> tuple[int, datetime | None]:
        """How many reservations of the user hold a seat now, and the earliest hold end."""
        count, earliest = self._conn.execute(_LIVE_HOLDS, {"user_id": user_id, "now": now}).one()
        return int(count), earliest

    def lock_for_payment(self, reservation_id: int) -> LockedReservation | None:
        """The reservation with its seat, both row-locked until the transaction ends."""
        row = self._conn.execute(_LOCK_FOR_PAYMENT, {"rid": reservation_id}).first()
        if row is None:
            return None
        payable = PayableReservation(
            reservation_id=row.id,
            owner_id=row.user_id,
            status=ReservationStatus(row.status),
            hold_expires_at=row.hold_expires_at,
            amount=row.amount,
            seat_id=row.seat_id,
            seat_status=SeatStatus(row.seat_status),
            seat_reservation_id=row.seat_reservation_id,
        )
        return LockedReservation(payable=payable, schedule=_schedule_facts(row))

    def set_status(
        self, reservation_id: int, status: ReservationStatus, *, confirmed_at: datetime | None
    ) -> None:
        params = {"rid": reservation_id, "new_status": status.value, "at": confirmed_at}
        self._conn.execute(_SET_RESERVATION_STATUS, params)


class PaymentRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(
        self,
        *,
        reservation_id: int,
        user_id: int,
        amount: int,
        status: PaymentStatus,
        failure_reason: str | None,
        points_deducted: int,
        created_at: datetime,
    ) -> int:
        row = {
            "reservation_id": reservation_id,
            "user_id": user_id,
            "amount": amount,
            "status": status.value,
            "failure_reason": failure_reason,
            "points_deducted": points_deducted,
            "created_at": created_at,
        }
        return int(self._conn.execute(_INSERT_PAYMENT, row).scalar_one())


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    fingerprint: str
    status_code: int
    body: str


class IdempotencyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def claim(self, user_id: int, key: str, fingerprint: str, now: datetime) -> bool:
        """Insert the key; False when it exists. A concurrent claimer waits for our commit."""
        row = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "created_at": now}
        stmt = _IDEMPOTENCY_CLAIM[self._conn.dialect.name]
        return self._conn.execute(stmt, row).first() is not None

    def answer(self, user_id: int, key: str) -> StoredAnswer | None:
        row = self._conn.execute(_IDEMPOTENCY_ANSWER, {"user_id": user_id, "key": key}).first()
        if row is None:
            return None
        return StoredAnswer(row.fingerprint, row.status_code, row.response_body)

    def remember(self, user_id: int, key: str, status_code: int, body: str) -> None:
        params = {"uid": user_id, "k": key, "code": status_code, "body": body}
        self._conn.execute(_IDEMPOTENCY_REMEMBER, params)

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` keys created before then, by primary key; the number."""
        key = tuple_(idempotency_keys.c.user_id, idempotency_keys.c.key)
        batch = (
            select(idempotency_keys.c.user_id, idempotency_keys.c.key)
            .where(idempotency_keys.c.created_at < before)
            .order_by(idempotency_keys.c.user_id, idempotency_keys.c.key)
            .limit(limit)
        )
        return self._conn.execute(idempotency_keys.delete().where(key.in_(batch))).rowcount


class CatalogueQueries:
    """Read-only views for the catalogue and rankings endpoints."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def concerts(self, limit: int, offset: int) -> list[dict[str, object]]:
        stmt = select(concerts.c.id, concerts.c.title).order_by(concerts.c.id)
        rows = self._conn.execute(stmt.limit(limit).offset(offset))
        return [dict(r._mapping) for r in rows]

    def concert_exists(self, concert_id: int) -> bool:
        stmt = select(concerts.c.id).where(concerts.c.id == concert_id)
        return self._conn.execute(stmt).first() is not None

    def schedules(self, concert_id: int, now: datetime) -> list[dict[str, object]]:
        free = or_(
            seats.c.status == SeatStatus.AVAILABLE,
            and_(seats.c.status == SeatStatus.HELD, seats.c.held_until <= now),
        )
        stmt = (
            select(
                schedules.c.id,
                schedules.c.concert_id,
                schedules.c.concert_date,
                schedules.c.sale_opened_at,
                schedules.c.seat_count,
                func.count(seats.c.id).filter(free).label("available_seats"),
            )
            .outerjoin(seats, seats.c.schedule_id == schedules.c.id)
            .where(schedules.c.concert_id == concert_id)
            .group_by(schedules.c.id)
            .order_by(schedules.c.concert_date, schedules.c.id)
        )
        return [dict(r._mapping) for r in self._conn.execute(stmt)]

    def schedule_exists(self, schedule_id: int) -> bool:
        stmt = select(schedules.c.id).where(schedules.c.id == schedule_id)
        return self._conn.execute(stmt).first() is not None

    def seats(self, schedule_id: int) -> list[dict[str, object]]:
        stmt = (
            select(seats.c.id, seats.c.seat_no, seats.c.price, seats.c.status, seats.c.held_until)
            .where(seats.c.schedule_id == schedule_id)
            .order_by(seats.c.seat_no)
        )
        return [dict(r._mapping) for r in self._conn.execute(stmt)]

    def sold_out_ranking(self, concert_date: date, limit: int) -> list[dict[str, object]]:
        r = sold_out_ranking
        stmt = (
            select(
                r.c.schedule_id,
                r.c.concert_id,
                concerts.c.title,
                r.c.concert_date,
                r.c.sale_opened_at,
                r.c.sold_out_at,
                r.c.seconds_to_sell_out,
            )
            .outerjoin(concerts, concerts.c.id == r.c.concert_id)
            .where(r.c.concert_date == concert_date)
            .order_by(r.c.seconds_to_sell_out, r.c.sold_out_at, r.c.schedule_id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in self._conn.execute(stmt)]
