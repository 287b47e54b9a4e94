"""PostgreSQL/SQLite: a batch of compensations in one transaction, a few statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from ticketing_events.db import Id, UtcDateTime
from ticketing_events.idempotency import claim_each, processed_events_table
from ticketing_events.topics import group_of

from compensator.handlers import Compensation, refunds

# Whose rows say that a payment was compensated, whichever group compensates it.
GROUP = group_of("compensator").name

# The columns of payment-api's tables this service uses (payment-api README "Tables").
metadata = MetaData()
reservations = Table(
    "reservations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("status", String(16), nullable=False),
    Column("cancelled_at", UtcDateTime(), nullable=True),
)
seats = Table(
    "seats",
    metadata,
    Column("id", Id, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("held_until", UtcDateTime(), nullable=True),
    Column("reservation_id", Id, nullable=True),
)
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("points", BigInteger, nullable=False),
)
processed_events = processed_events_table(metadata)

CANCELLABLE = ("held", "payment_failed")

_cancel = (
    update(reservations)
    .where(reservations.c.status.in_(CANCELLABLE))
    .values(status="cancelled")
    .returning(reservations.c.id)
)
_free = (
    update(seats)
    .where(seats.c.status == "held")
    .values(status="available", held_until=None, reservation_id=None)
)
_refund = (
    update(users)
    .where(users.c.id == bindparam("user"))
    .values(points=users.c.points + bindparam("amount"))
)


class SqlCompensations:
    def __init__(self, engine: Engine, group: str) -> None:
        self._engine = engine
        self._group = group

    def apply(self, items: Sequence[Compensation]) -> int:
        with self._engine.begin() as conn:
            # The tables are shared by every group: a replay refunds nothing twice.
            todo = claim_each(
                conn, processed_events, self._group, items, attrgetter("event_id"), scope=GROUP
            )
            to_cancel = [c for c in todo if c.cancel]
            if to_cancel:
                _cancel_and_free(conn, to_cancel)
            back = refunds(todo)
            if back:
                conn.execute(_refund, [{"user": u, "amount": a} for u, a in back.items()])
            return len(todo)


def _cancel_and_free(conn: Connection, items: list[Compensation]) -> None:
    """Cancel the reservations that are the payers' own, then free the seats they still hold.

    Plain id lists (one ``= ANY(array)`` index scan on PostgreSQL), not (id, user_id) pairs
    (a chain of ORs): a reservation's owner never changes, so reading the owners first guards
    as well as ``user_id = :user_id`` in the UPDATE would.
    """
    r = reservations
    owners = dict(
        conn.execute(
            select(r.c.id, r.c.user_id).where(r.c.id.in_([c.reservation_id for c in items]))
        ).all()
    )
    own = [c for c in items if owners.get(c.reservation_id) == c.user_id]
    if not own:
        return
    cancelled = set(
        conn.execute(
            _cancel.where(r.c.id.in_([c.reservation_id for c in own])).values(
                cancelled_at=datetime.now(UTC)
            )
        ).scalars()
    )
    if cancelled:
        conn.execute(
            _free.where(
                seats.c.id.in_([c.seat_id for c in own if c.reservation_id in cancelled]),
                seats.c.reservation_id.in_(cancelled),
            )
        )
