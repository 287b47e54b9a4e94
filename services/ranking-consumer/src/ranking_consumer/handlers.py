"""The sold-out ranking rule, as plain functions over a batch of payments.

Rule: every payment counts once for its schedule. A schedule sells out in the batch whose
payments take its count to ``schedule_seat_count``. It sold out when its last seat was paid:
``sold_out_at`` is the latest ``paid_at`` counted for it (payments of one schedule come over
every partition, so not in order), and ``seconds_to_sell_out = sold_out_at - sale_opened_at``.

The database is the source of truth (``schedule_sales``, ``sold_out_ranking``); the Redis
sorted set per concert date is a view of it, written after the database commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

import structlog
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import PaymentSucceeded, PaymentSucceededPayload

log = structlog.get_logger("ranking_consumer")


@dataclass(frozen=True, slots=True)
class Tally:
    """The payments of one schedule in a batch."""

    schedule_id: int
    concert_id: int
    concert_date: date
    seat_count: int
    sale_opened_at: datetime
    sold: int
    last_paid_at: datetime


@dataclass(frozen=True, slots=True)
class SoldOut:
    """A row of ``sold_out_ranking``."""

    schedule_id: int
    concert_id: int
    concert_date: date
    sale_opened_at: datetime | None
    sold_out_at: datetime
    seconds_to_sell_out: float


def tally(payments: Iterable[PaymentSucceededPayload]) -> list[Tally]:
    """Payments per schedule, ordered by schedule id (the order every replica locks in)."""
    tallies: dict[int, Tally] = {}
    for p in payments:
        seen = tallies.get(p.schedule_id)
        tallies[p.schedule_id] = Tally(
            p.schedule_id,
            p.concert_id,
            p.concert_date,
            p.schedule_seat_count,
            p.sale_opened_at,
            (seen.sold if seen else 0) + 1,
            max(seen.last_paid_at, p.paid_at) if seen else p.paid_at,
        )
    return [tallies[k] for k in sorted(tallies)]


def sold_out(t: Tally, sold: int, last_paid_at: datetime) -> SoldOut | None:
    """The schedule's entry if ``t``'s payments took its count to ``sold``, across its seat
    count; ``last_paid_at`` is the latest ``paid_at`` counted for it, ``t``'s included."""
    if not sold - t.sold < t.seat_count <= sold:
        return None
    return SoldOut(
        t.schedule_id,
        t.concert_id,
        t.concert_date,
        t.sale_opened_at,
        last_paid_at,
        (last_paid_at - t.sale_opened_at).total_seconds(),
    )


class SalesLedger(Protocol):
    """The database side (``adapters.SqlSalesLedger``)."""

    def record(self, payments: Sequence[PaymentSucceeded]) -> list[SoldOut]:
        """In one transaction: count the payments not counted yet and record the schedules
        they sell out. Returns the entries of every sold-out schedule of the batch, new or
        not, so a batch retried after a Redis failure writes them again."""
        ...


class RankingBoard(Protocol):
    """The Redis side (``adapters.RedisRankingBoard``)."""

    def add(self, entries: Sequence[SoldOut]) -> None: ...


def update_ranking(
    ledger: SalesLedger, board: RankingBoard
) -> Callable[[Sequence[Delivery[PaymentSucceeded]]], None]:
    """The ``payment.success`` batch handler: one transaction, then one Redis round trip."""

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        entries = ledger.record([d.event for d in batch])
        board.add(entries)
        log.debug("payments counted", payments=len(batch), sold_out=len(entries))

    return handle
