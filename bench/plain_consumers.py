"""Each post-payment effect written plainly as a FastStream subscriber, one event at a time.

The baseline of ``bench/consumers_bench.py``: ``python bench/plain_consumers.py SERVICE N``
consumes as the group ``CONSUMER_GROUP`` from its committed offsets, applies SERVICE's effect
to each event as a FastStream user would write it (an async handler, async clients), and once
it has handled N events prints ``{"events_per_s": ...}``: N - 1 events over the time from the
first handled event to the N-th.

The effects are the services' own: their Lua scripts, key layout and per-event script calls,
their tables and statements, imported; what is written out again says so. The Redis and
database handlers commit each offset after the effect (AckPolicy.NACK_ON_ERROR: at least once,
an error redelivers) and dedupe by event id as the services do. The data platform's runs
``max_workers`` handlers at once, which FastStream allows only with AckPolicy.ACK_FIRST
(offsets auto-committed as messages are taken: at most once).

Configured from the services' variables: KAFKA_BOOTSTRAP_SERVERS, CONSUMER_GROUP, REDIS_URL,
REDIS_KEY_PREFIX, DATABASE_URL, DATABASE_SCHEMA, DATAPLATFORM_*; traced with FastStream's
OpenTelemetry middleware, exported as the services export, unless OTEL_SDK_DISABLED=true.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
from cleanup_consumer.app import Settings as CleanupSettings
from cleanup_consumer.handlers import RELEASE_LUA, failure_call, success_call
from compensator import adapters as compensator_db
from compensator.handlers import Compensation, compensation
from dataplatform_consumer.config import Settings as DataplatformSettings
from dataplatform_consumer.handlers import payment_request
from faststream.confluent import KafkaBroker
from faststream.confluent.opentelemetry import KafkaTelemetryMiddleware
from faststream.middlewares import AckPolicy
from ranking_consumer import adapters as ranking_db
from ranking_consumer.handlers import Tally, sold_out, tally
from redis import asyncio as aioredis
from seatlock_consumer.handlers import HOLD_SEAT_LUA, hold_call
from sqlalchemy import Table, case, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from ticketing_events.idempotency import DEFAULT_TTL_S, Call
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import (
    FailureReason,
    PaymentFailed,
    PaymentSucceeded,
    ReservationCreated,
)
from ticketing_events.tracing import configure_tracing

if TYPE_CHECKING:
    from faststream.confluent.subscriber.usecase import DefaultSubscriber


class Progress:
    """Called once per handled event; times the first and the N-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.handled = 0
        self.first = self.last = 0.0
        self.finished = asyncio.Event()

    def __call__(self) -> None:
        self.handled += 1
        if self.handled == 1:
            self.first = time.perf_counter()
        if self.handled == self.n:
            self.last = time.perf_counter()
            self.finished.set()

    def events_per_s(self) -> float:
        return (self.n - 1) / (self.last - self.first)


@dataclass(frozen=True)
class Setup:
    """What a service's subscribers are registered on, closed with and configured from."""

    broker: KafkaBroker
    stack: AsyncExitStack
    done: Callable[[], None]  # after each event's effect
    group: str = field(default_factory=lambda: os.environ["CONSUMER_GROUP"])
    keys: RedisKeys = field(
        default_factory=lambda: RedisKeys(os.environ.get("REDIS_KEY_PREFIX", ""))
    )

    def one_at_a_time(self, topic: str) -> DefaultSubscriber:
        """A subscriber handling one message at a time, committing it after the handler."""
        return self.broker.subscriber(
            topic, group_id=self.group, ack_policy=AckPolicy.NACK_ON_ERROR
        )

    def redis(self) -> aioredis.Redis:
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        self.stack.push_async_callback(client.aclose)
        return client

    def redis_once(self, effect_lua: str) -> Callable[[Call], Awaitable[None]]:
        """A service's Lua effect inside RedisOnce's dedupe check (ticketing_events.idempotency),
        written out again for an async client: one EVALSHA per event."""
        script = self.redis().register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then\nreturn 0\nend\n"
            f"{effect_lua}\n"
            "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\nreturn 1\n"
        )
        dedupe = self.keys.processed(self.group)

        async def apply(call: Call) -> None:
            event_id, effect_keys, args = call
            await script(keys=[dedupe + event_id, *effect_keys], args=[1, DEFAULT_TTL_S, *args])

        return apply

    def database(self) -> AsyncEngine:
        """psycopg's async driver, in the run's schema."""
        engine = create_async_engine(
            os.environ["DATABASE_URL"],
            connect_args={"options": f"-c search_path={os.environ['DATABASE_SCHEMA']}"},
        )
        self.stack.push_async_callback(engine.dispose)
        return engine

    async def claim(self, conn: AsyncConnection, table: Table, scope: str, event_id: str) -> bool:
        """``claim_each(..., scope=scope)`` for one event, in one statement: its processed row
        under ``scope`` (whether to apply it, whichever group consumed it) and the group's."""
        now = datetime.now(UTC)
        rows = [
            {"consumer_group": g, "event_id": event_id, "processed_at": now}
            for g in sorted({scope, self.group})
        ]
        claimed = await conn.scalars(
            insert(table).values(rows).on_conflict_do_nothing().returning(table.c.consumer_group)
        )
        return scope in claimed.all()


def seatlock(s: Setup) -> None:
    hold = s.redis_once(HOLD_SEAT_LUA)

    @s.one_at_a_time(ReservationCreated.TYPE)
    async def handle(event: ReservationCreated) -> None:
        call = hold_call(event, s.keys, int(time.time() * 1000))
        if call is not None:  # None: the hold has already expired
            await hold(call)
        s.done()


def cleanup(s: Setup) -> None:
    release = s.redis_once(RELEASE_LUA)
    ttl_s = CleanupSettings().seat_released_ttl_s

    @s.one_at_a_time(PaymentSucceeded.TYPE)
    async def after_success(event: PaymentSucceeded) -> None:
        await release(success_call(event, s.keys, ttl_s))
        s.done()

    @s.one_at_a_time(PaymentFailed.TYPE)
    async def after_failure(event: PaymentFailed) -> None:
        if event.payload.reason is not FailureReason.NOT_OWNER:
            await release(failure_call(event, s.keys, ttl_s))
        s.done()


async def count_sale(conn: AsyncConnection, t: Tally) -> None:
    """``SqlSalesLedger._count``'s statements for one payment, written out again."""
    sales = ranking_db.schedule_sales
    add = insert(sales).values(schedule_id=t.schedule_id, sold=t.sold, last_paid_at=t.last_paid_at)
    later = add.excluded.last_paid_at > sales.c.last_paid_at
    counted = await conn.execute(
        add.on_conflict_do_update(
            index_elements=[sales.c.schedule_id],
            set_={
                "sold": sales.c.sold + add.excluded.sold,
                "last_paid_at": case(
                    (later, add.excluded.last_paid_at), else_=sales.c.last_paid_at
                ),
            },
        ).returning(sales.c.sold, sales.c.last_paid_at)
    )
    entry = sold_out(t, *counted.one())
    if entry is not None:
        await conn.execute(
            insert(ranking_db.sold_out_ranking).values(asdict(entry)).on_conflict_do_nothing()
        )


def ranking(s: Setup) -> None:
    engine, client = s.database(), s.redis()
    ranked = ranking_db.sold_out_ranking

    @s.one_at_a_time(PaymentSucceeded.TYPE)
    async def handle(event: PaymentSucceeded) -> None:
        # As the service does a batch: count the payment once, read its schedule's ranking row
        # whether new or not (a retry after a Redis failure writes it again), commit, ZADD.
        async with engine.begin() as conn:
            if await s.claim(conn, ranking_db.processed_events, ranking_db.GROUP, event.event_id):
                await count_sale(conn, tally([event.payload])[0])
            query = select(ranked).where(ranked.c.schedule_id == event.payload.schedule_id)
            row = (await conn.execute(query)).first()
        if row is not None:
            member = {str(row.schedule_id): row.seconds_to_sell_out}
            await client.zadd(s.keys.sold_out_ranking(row.concert_date), member)
        s.done()


async def undo(conn: AsyncConnection, c: Compensation) -> None:
    """The service's statements for one event. The owner is checked in the cancel's WHERE
    rather than read first (``_cancel_and_free``), which guards the same: owners never change."""
    r, seats = compensator_db.reservations, compensator_db.seats
    if c.cancel:
        cancelled = await conn.scalar(
            compensator_db._cancel.where(
                r.c.id == c.reservation_id, r.c.user_id == c.user_id
            ).values(cancelled_at=datetime.now(UTC))
        )
        if cancelled is not None:
            await conn.execute(
                compensator_db._free.where(
                    seats.c.id == c.seat_id, seats.c.reservation_id == c.reservation_id
                )
            )
    if c.refund > 0:
        await conn.execute(compensator_db._refund, {"user": c.user_id, "amount": c.refund})


def compensate(s: Setup) -> None:
    engine = s.database()

    @s.one_at_a_time(PaymentFailed.TYPE)
    async def handle(event: PaymentFailed) -> None:
        c = compensation(event)
        async with engine.begin() as conn:
            if await s.claim(
                conn, compensator_db.processed_events, compensator_db.GROUP, c.event_id
            ):
                await undo(conn, c)
        s.done()


def dataplatform(s: Setup) -> None:
    settings = DataplatformSettings()
    limit: int = settings.dataplatform_concurrency
    # aiohttp, not httpx: here its async client takes far less CPU per request (about 1.5x the
    # events/s of httpx.AsyncClient, which this process would spend its core on).
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.dataplatform_timeout_s),
        connector=aiohttp.TCPConnector(limit=limit),
    )
    s.stack.push_async_callback(http.close)

    # As many requests in flight as the service's (DATAPLATFORM_CONCURRENCY).
    @s.broker.subscriber(PaymentSucceeded.TYPE, group_id=s.group, max_workers=limit)
    async def handle(event: PaymentSucceeded) -> None:
        headers, body = payment_request(event)
        async with http.post(settings.dataplatform_url, data=body, headers=headers) as response:
            response.raise_for_status()
        s.done()


SUBSCRIBERS: dict[str, Callable[[Setup], None]] = {
    "seatlock-consumer": seatlock,
    "cleanup-consumer": cleanup,
    "ranking-consumer": ranking,
    "compensator": compensate,
    "dataplatform-consumer": dataplatform,
}


async def consume(service: str, n: int) -> float:
    """Run ``service``'s subscribers until N events are handled; their events/s."""
    provider = configure_tracing(f"{service}-faststream")
    telemetry = [] if provider is None else [KafkaTelemetryMiddleware(tracer_provider=provider)]
    # log_level: FastStream's line per message is DEBUG, below its logger's level; errors show.
    broker = KafkaBroker(
        os.environ["KAFKA_BOOTSTRAP_SERVERS"], middlewares=telemetry, log_level=logging.DEBUG
    )
    progress = Progress(n)
    async with AsyncExitStack() as stack:
        SUBSCRIBERS[service](Setup(broker, stack, progress))
        await broker.start()
        stack.push_async_callback(broker.stop)
        await progress.finished.wait()
    if provider is not None:
        provider.shutdown()
    return progress.events_per_s()


if __name__ == "__main__":
    service, events = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"events_per_s": round(asyncio.run(consume(service, events)))}))
