"""The Redis key layout shared by payment-api and the consumers, and the client they use.

``queue:active:{token_id}`` is written by payment-api (token_id = sha256 of the bearer token,
the events' ``queue_token_id``); ``seat:hold:{seat_id}`` by the seatlock consumer;
``seat:released:{reservation_id}`` (the tombstone) by the cleanup consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis import Redis

# Errors that mean "Redis is down" (BusyLoadingError, a Redis still loading, is a
# ConnectionError): consumers pass them as outage errors, retried and never dead-lettered.
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = ""

    def seat_hold(self, seat_id: int) -> str:
        return f"{self.prefix}seat:hold:{seat_id}"

    def seat_released(self, reservation_id: int) -> str:
        return f"{self.prefix}seat:released:{reservation_id}"

    def queue_active(self, token_id: str) -> str:
        return f"{self.prefix}queue:active:{token_id}"


def redis_client(url: str, timeout_s: float) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )
