"""What a handler gets: deliveries, one by one (``each``) or in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import Message
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from ticketing_events.consumer.headers import header_map
from ticketing_events.schemas import Envelope

E = TypeVar("E", bound=Envelope)


@dataclass(slots=True)
class Delivery(Generic[E]):
    """A decoded event with where it came from; ``context`` holds its consumer span."""

    event: E
    topic: str
    partition: int
    offset: int
    context: Context
    message: Message

    @property
    def headers(self) -> dict[str, bytes]:
        return header_map(self.message)


BatchHandler = Callable[[Sequence[Delivery[Any]]], None]


def each(handle: Callable[[Delivery[E]], None]) -> Callable[[Sequence[Delivery[E]]], None]:
    """Adapt a one-event handler; each call runs with that event's consumer span current."""

    def handle_batch(batch: Sequence[Delivery[E]]) -> None:
        for delivery in batch:
            token = otel_context.attach(delivery.context)
            try:
                handle(delivery)
            finally:
                otel_context.detach(token)

    return handle_batch
