"""The service's tables (sqlmodel). They are also the contract of the compensator and the
ranking consumer, who write some of them; see README "Tables". Migrations mirror this file."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Table as SATable
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel
from ticketing_events.db import Id, UtcDateTime
from ticketing_events.idempotency import processed_events_table


def _id(*, foreign_key: str | None = None, index: bool = False) -> Any:
    args: list[Any] = [ForeignKey(foreign_key)] if foreign_key else []
    return Field(sa_column=Column(Id, *args, nullable=False, index=index))


def _pk() -> Any:
    return Field(default=None, sa_column=Column(Id, primary_key=True, autoincrement=True))


def _ts(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable))


class Table(SQLModel, registry=registry()):
    """Base with a registry of its own, so other services' sqlmodel tables never clash."""


metadata = Table.metadata


class Concert(Table, table=True):
    __tablename__ = "concerts"

    id: int | None = _pk()
    title: str = Field(sa_column=Column(String(200), nullable=False))


class Schedule(Table, table=True):
    """A concert on one date; ``seat_count`` is the number of seats on sale."""

    __tablename__ = "schedules"

    id: int | None = _pk()
    concert_id: int = _id(foreign_key="concerts.id", index=True)
    concert_date: date = Field(index=True)
    sale_opened_at: datetime = _ts()
    seat_count: int


class Seat(Table, table=True):
    """``status`` is available, held (until ``held_until``, by ``reservation_id``) or sold."""

    __tablename__ = "seats"
    __table_args__ = (
        UniqueConstraint("schedule_id", "seat_no"),
        CheckConstraint("status in ('available', 'held', 'sold')", name="seat_status"),
    )

    id: int | None = _pk()
    schedule_id: int = _id(foreign_key="schedules.id", index=True)
    seat_no: int
    price: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False, server_default="available"))
    held_until: datetime | None = _ts(nullable=True)
    reservation_id: int | None = Field(default=None, sa_column=Column(Id, nullable=True))


class User(Table, table=True):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("points >= 0", name="points_never_negative"),)

    id: int | None = _pk()
    name: str = Field(sa_column=Column(String(100), nullable=False))
    points: int = Field(sa_column=Column(BigInteger, nullable=False, server_default="0"))


class Reservation(Table, table=True):
    """``status``: held, confirmed (paid), payment_failed (API) or cancelled (compensator)."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "status in ('held', 'confirmed', 'payment_failed', 'cancelled')",
            name="reservation_status",
        ),
    )

    id: int | None = _pk()
    user_id: int = _id(foreign_key="users.id", index=True)
    seat_id: int = _id(foreign_key="seats.id", index=True)
    schedule_id: int = _id(foreign_key="schedules.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    queue_token_id: str = Field(sa_column=Column(String(64), nullable=False))
    reserved_at: datetime = _ts()
    hold_expires_at: datetime = _ts()
    confirmed_at: datetime | None = _ts(nullable=True)
    cancelled_at: datetime | None = _ts(nullable=True)


class Payment(Table, table=True):
    """Every attempt: succeeded, or failed with ``failure_reason``. One success per reservation."""

    __tablename__ = "payments"
    __table_args__ = (
        Index(
            "uq_payments_one_success",
            "reservation_id",
            unique=True,
            postgresql_where=text("status = 'succeeded'"),
            sqlite_where=text("status = 'succeeded'"),
        ),
        CheckConstraint("status in ('succeeded', 'failed')", name="payment_status"),
    )

    id: int | None = _pk()
    reservation_id: int = _id(foreign_key="reservations.id", index=True)
    user_id: int = _id(foreign_key="users.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    failure_reason: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    points_deducted: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _ts()


class OutboxMessage(Table, table=True):
    """An event waiting for (or done with) Kafka; ``payload`` is the exact message value."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_unpublished_key",
            "key",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: int | None = _pk()
    event_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    topic: str = Field(sa_column=Column(String(200), nullable=False))
    key: str = Field(sa_column=Column(String(200), nullable=False))
    event_type: str = Field(sa_column=Column(String(100), nullable=False))
    schema_version: str = Field(sa_column=Column(String(16), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    traceparent: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    tracestate: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    created_at: datetime = _ts()
    # A relay owns the row until then (set when it claims a batch, before publishing).
    lease_until: datetime | None = _ts(nullable=True)
    published_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True)
    )


class IdempotencyKey(Table, table=True):
    """First answer to a request sent with ``Idempotency-Key``, per user and key."""

    __tablename__ = "idempotency_keys"

    user_id: int = Field(sa_column=Column(Id, primary_key=True))
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int | None = None
    response_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


class SoldOutRanking(Table, table=True):
    """Written by the ranking consumer: one row per sold-out schedule."""

    __tablename__ = "sold_out_ranking"

    schedule_id: int = Field(sa_column=Column(Id, primary_key=True, autoincrement=False))
    concert_id: int = _id()
    concert_date: date = Field(index=True)
    sale_opened_at: datetime | None = _ts(nullable=True)
    sold_out_at: datetime = _ts()
    seconds_to_sell_out: float = Field(sa_column=Column(Float, nullable=False))


class ScheduleSales(Table, table=True):
    """Written by the ranking consumer: payments counted per schedule, the latest paid_at."""

    __tablename__ = "schedule_sales"

    schedule_id: int = Field(sa_column=Column(Id, primary_key=True, autoincrement=False))
    sold: int
    last_paid_at: datetime = _ts()


processed_events = processed_events_table(metadata)


def table_of(model: type[SQLModel]) -> SATable:
    """The SQLAlchemy table behind a sqlmodel class, for Core statements."""
    return model.__table__  # type: ignore[attr-defined, no-any-return]
