"""``ranking-consumer run | rebuild-redis``: the service's settings, resources and subscriber."""

from __future__ import annotations

import structlog
from redis import Redis
from sqlalchemy import Engine
from ticketing_events.app import ConsumerApp, engine, redis
from ticketing_events.consumer import BatchHandler
from ticketing_events.db import DB_OUTAGE_ERRORS, DatabaseServiceSettings
from ticketing_events.idempotency import ProcessedRetention, ProcessedRetentionSettings
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS, RedisKeys
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.service import RedisServiceSettings

from ranking_consumer.adapters import GROUP, RedisRankingBoard, SqlSalesLedger, processed_events
from ranking_consumer.handlers import update_ranking

log = structlog.get_logger("ranking_consumer")


class Settings(DatabaseServiceSettings, RedisServiceSettings, ProcessedRetentionSettings):
    """Every field is documented in README."""


app = ConsumerApp(
    "ranking-consumer",
    Settings,
    resources=[engine, redis],
    outage_errors=DB_OUTAGE_ERRORS + REDIS_OUTAGE_ERRORS,
    description=__doc__,
)


def board(settings: Settings, redis: Redis) -> RedisRankingBoard:
    return RedisRankingBoard(redis, RedisKeys(settings.redis_key_prefix))


@app.subscriber(PaymentSucceeded)
def ranking(settings: Settings, engine: Engine, redis: Redis) -> BatchHandler:
    """The sold-out ranking, pruning old processed-event rows between batches."""
    ledger = SqlSalesLedger(engine, settings.consumer_group)
    groups = {GROUP, settings.consumer_group}
    retention = ProcessedRetention(engine, processed_events, groups, settings)
    return retention.after(update_ranking(ledger, board(settings, redis)))


@app.command("rebuild-redis", "rewrite the Redis ranking from the database")
def rebuild_redis(settings: Settings, engine: Engine, redis: Redis) -> int:
    """Rewrite the Redis ranking from the database; returns the number of entries."""
    ledger = SqlSalesLedger(engine, settings.consumer_group)
    entries = board(settings, redis).rebuild(ledger.sold_out_entries())
    log.info("ranking rebuilt", entries=entries)
    return entries


main = app.main
