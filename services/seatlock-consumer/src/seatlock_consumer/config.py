"""Configuration from the environment (pydantic-settings); every field is documented in README."""

from __future__ import annotations

from ticketing_events.service import RedisServiceSettings
from ticketing_events.topics import CONSUMER_GROUPS

GROUP = "reservation-created-group"
assert GROUP in CONSUMER_GROUPS, "the group must be the registry's"


class Settings(RedisServiceSettings):
    service_name: str = "seatlock-consumer"
    consumer_group: str = GROUP
