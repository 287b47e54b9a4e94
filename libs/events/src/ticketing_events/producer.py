"""Idempotent Kafka producer that traces each message and surfaces every delivery failure."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from ticketing_events import tracing
from ticketing_events.schemas import Envelope


class DeliveryError(Exception):
    """Kafka did not acknowledge some messages; none of them may be treated as sent."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures  # (event_id, reason)
        super().__init__(f"{len(failures)} message(s) not delivered: {failures[:3]}")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """An encoded event ready for Kafka, with the trace context its publish span continues."""

    topic: str
    key: str
    value: bytes
    event_id: str
    event_type: str
    schema_version: str
    context: Context | None = None

    @classmethod
    def of(cls, event: Envelope, context: Context | None = None) -> OutgoingMessage:
        return cls(
            topic=event.TYPE,
            key=event.key,
            value=event.model_dump_json().encode(),
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            context=context,
        )


@dataclass
class _Pending:
    count: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def producer_config(bootstrap_servers: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30000,
        "logger": logging.getLogger("librdkafka"),
        **overrides,
    }


class EventProducer:
    """Publishes events with W3C trace headers; ``publish`` returns only once Kafka acked all."""

    def __init__(self, bootstrap_servers: str, *, client_id: str, **config: Any) -> None:
        self._producer = Producer(producer_config(bootstrap_servers, client_id, **config))
        self._tracer = trace.get_tracer("ticketing_events.producer")

    def publish(
        self, messages: Iterable[OutgoingMessage | Envelope], timeout: float = 30.0
    ) -> None:
        """Send every message and wait for its acknowledgement; raise DeliveryError on any loss."""
        pending = _Pending()
        for message in messages:
            outgoing = (
                message if isinstance(message, OutgoingMessage) else OutgoingMessage.of(message)
            )
            self._send(outgoing, pending)
        self._producer.flush(timeout)
        if pending.count:
            pending.failures.append(("*", f"{pending.count} unacknowledged after {timeout}s"))
        if pending.failures:
            raise DeliveryError(pending.failures)

    def _send(self, message: OutgoingMessage, pending: _Pending) -> None:
        span = self._tracer.start_span(
            f"{message.topic} publish",
            context=message.context,
            kind=SpanKind.PRODUCER,
            attributes={
                tracing.MESSAGING_SYSTEM: "kafka",
                tracing.MESSAGING_OPERATION_TYPE: "send",
                tracing.MESSAGING_OPERATION_NAME: "publish",
                tracing.MESSAGING_DESTINATION: message.topic,
                tracing.MESSAGING_MESSAGE_ID: message.event_id,
                tracing.MESSAGING_KAFKA_KEY: message.key,
            },
        )
        headers: tracing.Headers = [
            ("event_type", message.event_type.encode()),
            ("event_id", message.event_id.encode()),
            ("schema_version", message.schema_version.encode()),
            ("content-type", b"application/json"),
        ]
        tracing.inject(headers, trace.set_span_in_context(span, message.context))

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            pending.count -= 1
            if err is not None:
                pending.failures.append((message.event_id, str(err)))
                span.set_status(Status(StatusCode.ERROR, str(err)))
            else:
                span.set_attribute(tracing.MESSAGING_PARTITION, str(msg.partition()))
                span.set_attribute(tracing.MESSAGING_KAFKA_OFFSET, msg.offset())
            span.end()

        pending.count += 1
        while True:
            try:
                self._producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key.encode(),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued; returns how many messages are still undelivered."""
        return int(self._producer.flush(timeout))
