"""Per-user limits: write rate (Redis fixed window) and live reservations (database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from payment_api.adapters.redis_queue import RedisQueue
from payment_api.domain.errors import TooManyRequests
from payment_api.service_layer.unit_of_work import UnitOfWork


def check_rate(queue: RedisQueue, user_id: int, limit: int, window_s: int) -> None:
    """Count a write; past ``limit`` in the window, 429 until the window ends (0: no limit)."""
    if limit <= 0:
        return
    count, left = queue.hit(user_id, window_s)
    if count > limit:
        raise TooManyRequests(
            f"more than {limit} writes in {window_s} s; retry in {left} s", retry_after_s=left
        )


def check_live_reservations(tx: UnitOfWork, user_id: int, limit: int, now: datetime) -> None:
    """At most ``limit`` held reservations per user (0: no limit). Serialized per user, so
    concurrent reservations of one user cannot pass the cap together."""
    if limit <= 0:
        return
    tx.reservations.lock_user_holds(user_id)
    live, earliest_end = tx.reservations.live_holds(user_id, now)
    if live >= limit:
        wait = 1
        if earliest_end is not None:
            if earliest_end.tzinfo is None:  # SQLite gives naive UTC datetimes back
                earliest_end = earliest_end.replace(tzinfo=UTC)
            wait = math.ceil((earliest_end - now).total_seconds())
        raise TooManyRequests(
            f"{live} reservations held already (at most {limit}); pay or let one lapse",
            retry_after_s=wait,
            slug="too-many-reservations",
        )
