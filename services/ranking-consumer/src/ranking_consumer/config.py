"""Configuration from the environment (pydantic-settings); every field is documented in README."""

from __future__ import annotations

from ticketing_events.db import DatabaseServiceSettings
from ticketing_events.idempotency import ProcessedRetentionSettings
from ticketing_events.service import RedisServiceSettings
from ticketing_events.topics import CONSUMER_GROUPS

GROUP = "ranking-update-group"
assert GROUP in CONSUMER_GROUPS, "the group must be the registry's"


class Settings(DatabaseServiceSettings, RedisServiceSettings, ProcessedRetentionSettings):
    service_name: str = "ranking-consumer"
    consumer_group: str = GROUP
