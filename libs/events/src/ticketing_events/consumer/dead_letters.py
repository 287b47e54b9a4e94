"""Why an event is dead-lettered, and what its dead letter leaves out when too large."""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import ValidationError

from ticketing_events.consumer.errors import short
from ticketing_events.schemas import SUPPORTED_PREFIX


class DeadLetterReason(StrEnum):
    UNDECODABLE = "undecodable"
    INVALID = "invalid"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TOPIC = "unknown_topic"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"


# What a dead letter too large for its topic leaves out, step by step: the value, then also
# the key and the original headers (dlq.* headers stay, so the original can be fetched).
SHRINK: tuple[tuple[str, ...], ...] = (("value",), ("value", "key", "headers"))


def rejection(value: bytes, exc: ValidationError) -> tuple[DeadLetterReason, str]:
    """Why a message failed validation: not JSON, a major version we do not read, or invalid."""
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return DeadLetterReason.UNDECODABLE, short(exc)
    try:
        version = json.loads(value).get("schema_version")
    except (ValueError, AttributeError):
        version = None
    if isinstance(version, str) and not version.startswith(SUPPORTED_PREFIX):
        return DeadLetterReason.UNSUPPORTED_VERSION, f"schema_version {version!r}"
    return DeadLetterReason.INVALID, short(exc)
