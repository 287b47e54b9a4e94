"""``ranking-consumer run | rebuild-redis``: the composition root and the process entrypoint."""

from __future__ import annotations

from contextlib import ExitStack

import structlog
from redis import Redis
from sqlalchemy import Engine
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.db import DB_OUTAGE_ERRORS, engine_for
from ticketing_events.idempotency import ProcessedRetention
from ticketing_events.logs import configure_logging
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS, RedisKeys
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.service import run_consumer, service_cli
from ticketing_events.settings import ConsumerSettings, KafkaSettings

from ranking_consumer.adapters import (
    RedisRankingBoard,
    SqlSalesLedger,
    processed_events,
    redis_client,
)
from ranking_consumer.config import GROUP, Settings
from ranking_consumer.handlers import update_ranking

log = structlog.get_logger("ranking_consumer")


def build_runtime(
    settings: Settings,
    engine: Engine,
    client: Redis,
    *,
    kafka: KafkaSettings | None = None,
    consumer: ConsumerSettings | None = None,
) -> ConsumerRuntime:
    """The consumer of ``payment.success`` with its database and Redis effects, pruning its
    old processed-event rows between batches."""
    ledger = SqlSalesLedger(engine, settings.consumer_group)
    board = RedisRankingBoard(client, RedisKeys(settings.redis_key_prefix))
    groups = {GROUP, settings.consumer_group}
    retention = ProcessedRetention(engine, processed_events, groups, settings)
    return ConsumerRuntime(
        settings.consumer_group,
        {PaymentSucceeded: retention.after(update_ranking(ledger, board))},
        kafka=kafka or KafkaSettings(),
        settings=consumer or ConsumerSettings(),
        outage_errors=DB_OUTAGE_ERRORS + REDIS_OUTAGE_ERRORS,
    )


def rebuild(settings: Settings, engine: Engine, client: Redis) -> int:
    """Rewrite the Redis ranking from the database; returns the number of entries."""
    ledger = SqlSalesLedger(engine, settings.consumer_group)
    board = RedisRankingBoard(client, RedisKeys(settings.redis_key_prefix))
    return board.rebuild(ledger.sold_out_entries())


def run() -> None:
    settings = Settings()

    def build(stack: ExitStack) -> ConsumerRuntime:
        engine = engine_for(settings)
        stack.callback(engine.dispose)
        client = stack.enter_context(redis_client(settings))
        return build_runtime(settings, engine, client)

    run_consumer(settings, build)


def rebuild_redis() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    engine = engine_for(settings)
    try:
        with redis_client(settings) as client:
            log.info("ranking rebuilt", entries=rebuild(settings, engine, client))
    finally:
        engine.dispose()


main = service_cli(
    "ranking-consumer",
    __doc__,
    {
        "run": ("consume payment.success and update the sold-out ranking", run),
        "rebuild-redis": ("rewrite the Redis ranking from the database", rebuild_redis),
    },
)

if __name__ == "__main__":
    main()
