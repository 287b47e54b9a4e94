"""Configuration from the environment (pydantic-settings); every field is documented in README."""

from __future__ import annotations

from pydantic import Field
from ticketing_events.service import RedisServiceSettings
from ticketing_events.topics import CONSUMER_GROUPS

GROUP = "post-payment-cleanup-group"
assert GROUP in CONSUMER_GROUPS, "the group must be the registry's"


class Settings(RedisServiceSettings):
    service_name: str = "cleanup-consumer"
    consumer_group: str = GROUP

    # How long ``seat:released:{reservation_id}`` stops a late reservation.created from holding
    # the seat again: at least the longest hold (payment-api HOLD_SECONDS, 300 by default)
    # plus the clock skew between the services.
    seat_released_ttl_s: int = Field(default=1800, gt=0)
