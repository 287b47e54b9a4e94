"""What every consumer service reads from the environment; ``ticketing_events.app`` runs it."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every consumer service reads from the environment (unprefixed variables).

    Kafka and the consumer runtime read their own ``KAFKA_*`` and ``CONSUMER_*`` variables
    (``ticketing_events.settings``).
    """

    model_config = SettingsConfigDict(extra="ignore")

    # Empty: the service's name and its registry group (``ConsumerApp.settings``).
    service_name: str = ""
    log_level: str = "INFO"
    # Only tests and side-by-side replays choose another group than the registry's.
    consumer_group: str = ""


class RedisServiceSettings(ServiceSettings):
    """A service with Redis effects."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key, as in payment-api; empty in production, set by tests.
    redis_key_prefix: str = ""
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)
