"""Redis: the client and the once-per-event script."""

from __future__ import annotations

from redis import Redis
from ticketing_events import redis_layout as layout
from ticketing_events.idempotency import RedisOnce

from cleanup_consumer.config import Settings
from cleanup_consumer.handlers import RELEASE_LUA


def redis_client(settings: Settings) -> Redis:
    return layout.redis_client(settings.redis_url, settings.redis_socket_timeout_s)


def release_effects(client: Redis, group: str, key_prefix: str) -> RedisOnce:
    """Releases a hold (and expires a token) at most once per event, with its tombstone."""
    return RedisOnce(client, group, RELEASE_LUA, key_prefix=key_prefix)
