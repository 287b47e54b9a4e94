"""Configuration from the environment (pydantic-settings); every field is documented in README.

Kafka and the consumer runtime read their own ``KAFKA_*`` and ``CONSUMER_*`` variables
(``ticketing_events.settings``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ticketing_events.topics import CONSUMER_GROUPS

GROUP = "reservation-created-group"
assert GROUP in CONSUMER_GROUPS, "the group must be the registry's"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "seatlock-consumer"
    log_level: str = "INFO"

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key, as in payment-api; empty in production, set by tests.
    redis_key_prefix: str = ""
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)

    # The registry's group; only tests and side-by-side replays choose another one.
    consumer_group: str = GROUP
