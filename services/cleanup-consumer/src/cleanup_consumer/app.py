"""``cleanup-consumer run``: the service's settings, resources and subscribers."""

from __future__ import annotations

from pydantic import Field
from redis import Redis
from ticketing_events.app import ConsumerApp, redis
from ticketing_events.consumer import BatchHandler
from ticketing_events.idempotency import RedisOnce
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS
from ticketing_events.schemas import PaymentFailed, PaymentSucceeded
from ticketing_events.service import RedisServiceSettings

from cleanup_consumer.handlers import (
    RELEASE_LUA,
    RedisKeys,
    release_after_failure,
    release_after_success,
)


class Settings(RedisServiceSettings):
    """Every field is documented in README."""

    # How long ``seat:released:{reservation_id}`` stops a late reservation.created from holding
    # the seat again: at least the longest hold (payment-api HOLD_SECONDS, 300 by default)
    # plus the clock skew between the services.
    seat_released_ttl_s: int = Field(default=1800, gt=0)


app = ConsumerApp(
    "cleanup-consumer",
    Settings,
    resources=[redis],
    outage_errors=REDIS_OUTAGE_ERRORS,
    description=__doc__,
)


def release_effects(client: Redis, group: str, key_prefix: str) -> RedisOnce:
    """Releases a hold (and expires a token) at most once per event, with its tombstone."""
    return RedisOnce(client, group, RELEASE_LUA, key_prefix=key_prefix)


@app.subscriber(PaymentSucceeded)
def after_success(settings: Settings, redis: Redis) -> BatchHandler:
    effects = release_effects(redis, settings.consumer_group, settings.redis_key_prefix)
    keys = RedisKeys(settings.redis_key_prefix)
    return release_after_success(effects, keys, settings.seat_released_ttl_s)


@app.subscriber(PaymentFailed)
def after_failure(settings: Settings, redis: Redis) -> BatchHandler:
    effects = release_effects(redis, settings.consumer_group, settings.redis_key_prefix)
    keys = RedisKeys(settings.redis_key_prefix)
    return release_after_failure(effects, keys, settings.seat_released_ttl_s)


main = app.main
