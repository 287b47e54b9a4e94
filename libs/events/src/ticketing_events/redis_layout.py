"""The Redis key layout shared by payment-api and the consumers, and the client they use.

``queue:active:{token_id}`` is written by payment-api (token_id = sha256 of the bearer token,
the events' ``queue_token_id``); ``seat:hold:{seat_id}`` by the seatlock consumer;
``seat:released:{reservation_id}`` (the tombstone) by the cleanup consumer;
``ranking:sold-out:{concert_date}`` (a view of the database's ``sold_out_ranking``) by the
ranking consumer; ``processed:{group}:{event_id}`` (``RedisOnce``'s dedupe key) by each group
with Redis effects. Every key starts with the deployment's ``REDIS_KEY_PREFIX``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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

    def processed(self, group: str) -> str:
        """The start of ``group``'s dedupe keys (an event id follows)."""
        return f"{self.prefix}processed:{group}:"

    def seat_hold(self, seat_id: int) -> str:
        return f"{self.prefix}seat:hold:{seat_id}"

    def seat_released(self, reservation_id: int) -> str:
        return f"{self.prefix}seat:released:{reservation_id}"

    def queue_active(self, token_id: str) -> str:
        return f"{self.prefix}queue:active:{token_id}"

    def sold_out_ranking(self, concert_date: date) -> str:
        """Sorted set of the schedule ids sold out on that date, score = seconds to sell out."""
        return f"{self.prefix}ranking:sold-out:{concert_date.isoformat()}"

    def sold_out_rankings(self) -> str:
        """SCAN pattern of every ``sold_out_ranking`` key."""
        return f"{self.prefix}ranking:sold-out:*"


def redis_client(url: str, timeout_s: float) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )
