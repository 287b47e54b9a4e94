"""Redis: the client, the once-per-event script, and the errors that mean "Redis is down"."""

from __future__ import annotations

import redis
from redis import Redis
from ticketing_events.idempotency import RedisOnce

from seatlock_consumer.config import Settings
from seatlock_consumer.handlers import HOLD_SEAT_LUA

# Retried by the consumer runtime with consumption paused, never dead-lettered.
# (BusyLoadingError, a Redis still loading its data, is a ConnectionError.)
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def redis_client(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_socket_timeout_s,
        health_check_interval=30,
    )


def seat_hold_effects(client: Redis, group: str) -> RedisOnce:
    """Sets a seat hold at most once per event, atomically with the tombstone check."""
    return RedisOnce(client, group, HOLD_SEAT_LUA)
