"""``seatlock-consumer run``: the service's settings, resources and subscriber."""

from __future__ import annotations

from redis import Redis
from ticketing_events.app import ConsumerApp, redis
from ticketing_events.consumer import BatchHandler
from ticketing_events.idempotency import RedisOnce
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS
from ticketing_events.schemas import ReservationCreated
from ticketing_events.service import RedisServiceSettings

from seatlock_consumer.handlers import HOLD_SEAT_LUA, RedisKeys, hold_seats


class Settings(RedisServiceSettings):
    """Every field is documented in README."""


app = ConsumerApp(
    "seatlock-consumer",
    Settings,
    resources=[redis],
    outage_errors=REDIS_OUTAGE_ERRORS,
    description=__doc__,
)


def seat_hold_effects(client: Redis, group: str, key_prefix: str) -> RedisOnce:
    """Sets a seat hold at most once per event, atomically with the tombstone check."""
    return RedisOnce(client, group, HOLD_SEAT_LUA, key_prefix=key_prefix)


@app.subscriber(ReservationCreated)
def holds(settings: Settings, redis: Redis) -> BatchHandler:
    effects = seat_hold_effects(redis, settings.consumer_group, settings.redis_key_prefix)
    return hold_seats(effects, RedisKeys(settings.redis_key_prefix))


main = app.main
