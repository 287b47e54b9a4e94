"""PostgreSQL/SQLite (the counts and the ranking) and Redis (the ranking per date)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from operator import attrgetter

from redis import Redis
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    case,
    select,
)
from ticketing_events.db import Id, UtcDateTime, upsert
from ticketing_events.idempotency import claim_each, processed_events_table
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.topics import group_of

from ranking_consumer.handlers import SoldOut, Tally, sold_out, tally

# The columns of payment-api's tables this service uses (payment-api README "Tables").
metadata = MetaData()
schedule_sales = Table(
    "schedule_sales",
    metadata,
    Column("schedule_id", Id, primary_key=True, autoincrement=False),
    Column("sold", Integer, nullable=False),
    Column("last_paid_at", UtcDateTime(), nullable=False),
)
sold_out_ranking = Table(
    "sold_out_ranking",
    metadata,
    Column("schedule_id", Id, primary_key=True, autoincrement=False),
    Column("concert_id", Id, nullable=False),
    Column("concert_date", Date, nullable=False),
    Column("sale_opened_at", UtcDateTime(), nullable=True),
    Column("sold_out_at", UtcDateTime(), nullable=False),
    Column("seconds_to_sell_out", Float, nullable=False),
)
processed_events = processed_events_table(metadata)
# Whose rows say that a payment was counted, whichever group counts it.
GROUP = group_of("ranking-consumer").name


class SqlSalesLedger:
    def __init__(self, engine: Engine, group: str) -> None:
        self._engine = engine
        self._group = group

    def record(self, payments: Sequence[PaymentSucceeded]) -> list[SoldOut]:
        with self._engine.begin() as conn:
            # schedule_sales is shared by every group: a replay counts no payment twice.
            fresh = claim_each(
                conn, processed_events, self._group, payments, attrgetter("event_id"), scope=GROUP
            )
            tallies = tally(p.payload for p in fresh)
            if tallies:
                self._count(conn, tallies)
            schedule_ids = {p.payload.schedule_id for p in payments}
            rows = conn.execute(
                select(sold_out_ranking).where(sold_out_ranking.c.schedule_id.in_(schedule_ids))
            )
            return [SoldOut(**row._mapping) for row in rows]

    def _count(self, conn: Connection, tallies: list[Tally]) -> None:
        """Add the batch's counts, then record the schedules they sell out."""
        t = schedule_sales
        insert = upsert(conn.dialect.name, t).values(
            [
                {"schedule_id": x.schedule_id, "sold": x.sold, "last_paid_at": x.last_paid_at}
                for x in tallies
            ]
        )
        later = insert.excluded.last_paid_at > t.c.last_paid_at
        counted = conn.execute(
            insert.on_conflict_do_update(
                index_elements=[t.c.schedule_id],
                set_={
                    "sold": t.c.sold + insert.excluded.sold,
                    "last_paid_at": case(
                        (later, insert.excluded.last_paid_at), else_=t.c.last_paid_at
                    ),
                },
            ).returning(t.c.schedule_id, t.c.sold, t.c.last_paid_at)
        )
        after = {row.schedule_id: (row.sold, row.last_paid_at) for row in counted}
        entries = [e for x in tallies if (e := sold_out(x, *after[x.schedule_id])) is not None]
        if entries:
            conn.execute(
                upsert(conn.dialect.name, sold_out_ranking)
                .values([asdict(e) for e in entries])
                .on_conflict_do_nothing()
            )

    def sold_out_entries(self) -> list[SoldOut]:
        """Every row of ``sold_out_ranking``."""
        with self._engine.connect() as conn:
            return [SoldOut(**row._mapping) for row in conn.execute(select(sold_out_ranking))]


class RedisRankingBoard:
    """``ranking:sold-out:{date}``: schedule ids scored by seconds to sell out."""

    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def add(self, entries: Sequence[SoldOut]) -> None:
        """ZADD each entry (idempotent), in one round trip."""
        if not entries:
            return
        pipe = self._client.pipeline(transaction=False)
        for e in entries:
            pipe.zadd(self._keys.sold_out_ranking(e.concert_date), _member(e))
        pipe.execute()

    def rebuild(self, entries: Iterable[SoldOut]) -> int:
        """Replace every ranking key with ``entries`` in one transaction; returns the count."""
        by_key: dict[str, dict[str, float]] = {}
        for e in entries:
            by_key.setdefault(self._keys.sold_out_ranking(e.concert_date), {}).update(_member(e))
        stale = {k.decode() for k in self._client.scan_iter(match=self._keys.sold_out_rankings())}
        pipe = self._client.pipeline(transaction=True)
        for key in stale - by_key.keys():
            pipe.delete(key)
        for key, members in by_key.items():
            pipe.delete(key)
            pipe.zadd(key, members)
        pipe.execute()
        return sum(len(m) for m in by_key.values())


def _member(entry: SoldOut) -> dict[str, float]:
    return {str(entry.schedule_id): entry.seconds_to_sell_out}
