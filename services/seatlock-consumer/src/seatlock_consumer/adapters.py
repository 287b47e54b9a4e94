"""Redis: the client and the once-per-event script."""

from __future__ import annotations

from redis import Redis
from ticketing_events import redis_layout as layout
from ticketing_events.idempotency import RedisOnce

from seatlock_consumer.config import Settings
from seatlock_consumer.handlers import HOLD_SEAT_LUA


def redis_client(settings: Settings) -> Redis:
    return layout.redis_client(settings.redis_url, settings.redis_socket_timeout_s)


def seat_hold_effects(client: Redis, group: str, key_prefix: str) -> RedisOnce:
    """Sets a seat hold at most once per event, atomically with the tombstone check."""
    return RedisOnce(client, group, HOLD_SEAT_LUA, key_prefix=key_prefix)
