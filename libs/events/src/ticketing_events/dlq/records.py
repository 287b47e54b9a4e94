"""A dead letter as read from its topic, and the selections the commands take."""

from __future__ import annotations

import json
from dataclasses import dataclass

from confluent_kafka import Message

from ticketing_events.topics import TOPIC_EVENTS

REDRIVE_FROM = "redrive.from"


def parse_dlq_topic(name: str) -> tuple[str, str] | None:
    """``(source topic, group)`` of a dead-letter topic name, or None for any other topic."""
    if not name.endswith(".dlq"):
        return None
    for topic in TOPIC_EVENTS:
        if name.startswith(f"{topic}.") and len(name) > len(topic) + len(".dlq") + 1:
            return topic, name[len(topic) + 1 : -len(".dlq")]
    return None


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic (or the original record it points to)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, message: Message) -> DeadLetter:
        pairs: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
        return cls(
            topic=str(message.topic()),
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=tuple((k, v) for k, v in pairs if v is not None),
        )

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode(errors="backslashreplace") if values else None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def source(self) -> tuple[str, str]:
        parsed = parse_dlq_topic(self.topic)
        assert parsed is not None, f"{self.topic} is not a dead-letter topic"
        return parsed

    @property
    def reason(self) -> str:
        return self.header("dlq.reason") or "unknown"

    @property
    def event_id(self) -> str | None:
        found = self.header("event_id")
        if found is None and self.value:
            try:
                doc = json.loads(self.value)
            except ValueError:
                return None
            found = doc.get("event_id") if isinstance(doc, dict) else None
        return found if isinstance(found, str) else None

    @property
    def failed_at(self) -> str:
        return self.header("dlq.failed_at") or ""

    @property
    def truncated(self) -> list[str]:
        """What the consumer left out of this record to fit the topic (value, key, headers)."""
        found = self.header("dlq.truncated")
        return found.split(",") if found else []

    @property
    def original(self) -> tuple[str, int, int] | None:
        """Where the consumer read the failed record: topic, partition, offset."""
        topic = self.header("dlq.original.topic")
        partition = self.header("dlq.original.partition")
        offset = self.header("dlq.original.offset")
        if topic is None or partition is None or offset is None:
            return None
        return topic, int(partition), int(offset)

    @property
    def trace_id(self) -> str | None:
        """The trace id of the W3C ``traceparent`` header (version-traceid-spanid-flags)."""
        parts = (self.header("traceparent") or "").split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
            return parts[1]
        return None


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on; an empty field selects all."""

    group: str | None = None
    topic: str | None = None  # the source topic, e.g. payment.success
    reasons: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()
    partition: int | None = None
    from_offset: int | None = None  # inclusive
    to_offset: int | None = None  # inclusive

    def takes_topic(self, dlq: str) -> bool:
        parsed = parse_dlq_topic(dlq)
        return (
            parsed is not None
            and self.topic in (None, parsed[0])
            and self.group in (None, parsed[1])
        )

    def takes(self, letter: DeadLetter) -> bool:
        return (
            self.takes_topic(letter.topic)
            and (not self.reasons or letter.reason in self.reasons)
            and (not self.event_ids or letter.event_id in self.event_ids)
            and self.partition in (None, letter.partition)
            and (self.from_offset is None or letter.offset >= self.from_offset)
            and (self.to_offset is None or letter.offset <= self.to_offset)
        )


EVERYTHING = Selection()
