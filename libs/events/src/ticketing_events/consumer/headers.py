"""A consumed message's headers."""

from __future__ import annotations

from confluent_kafka import Message

from ticketing_events import tracing

# Headers whose values are text: the envelope's and the trace context's.
TEXT_HEADERS = frozenset(
    {"event_type", "event_id", "schema_version", "content-type", *tracing.fields()}
)


def header_pairs(message: Message) -> list[tuple[str, bytes]]:
    # A consumed message's headers are (str, bytes | None) pairs; a None value reads as absent.
    # A key that is not UTF-8 raises UnicodeDecodeError.
    pairs: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
    return [(k, v) for k, v in pairs if v is not None]


def header_map(message: Message) -> dict[str, bytes]:
    """A message's headers by key (the last of a repeated key); {} when a key is not UTF-8."""
    try:
        return dict(header_pairs(message))
    except UnicodeDecodeError:
        return {}


def checked_headers(message: Message) -> dict[str, bytes]:
    """The headers, or ValueError when a key or a text header's value is not UTF-8."""
    pairs = header_pairs(message)
    for key, value in pairs:
        if key in TEXT_HEADERS:
            try:
                value.decode()
            except UnicodeDecodeError:
                raise ValueError(f"header {key!r} is not UTF-8: {value[:64]!r}") from None
    return dict(pairs)
