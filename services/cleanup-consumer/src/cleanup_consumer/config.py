"""Configuration from the environment (pydantic-settings); every field is documented in README.

Kafka and the consumer runtime read their own ``KAFKA_*`` and ``CONSUMER_*`` variables
(``ticketing_events.settings``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ticketing_events.topics import CONSUMER_GROUPS

GROUP = "post-payment-cleanup-group"
assert GROUP in CONSUMER_GROUPS, "the group must be the registry's"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "cleanup-consumer"
    log_level: str = "INFO"

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key, as in payment-api; empty in production, set by tests.
    redis_key_prefix: str = ""
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)

    # How long ``seat:released:{reservation_id}`` stops a late reservation.created from holding
    # the seat again: at least the longest hold (payment-api HOLD_SECONDS, 300 by default)
    # plus the clock skew between the services.
    seat_released_ttl_s: int = Field(default=1800, gt=0)

    # The registry's group; only tests and side-by-side replays choose another one.
    consumer_group: str = GROUP
