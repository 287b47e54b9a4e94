"""Idempotent Kafka producer that traces each message and surfaces every delivery failure."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ticketing_events import tracing
from ticketing_events.schemas import Envelope

log = structlog.get_logger(__name__)


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


def is_fatal(error: BaseException | KafkaError | None) -> bool:
    """Whether ``error`` says the Kafka client is dead: a fatal ``KafkaError``, or an exception
    carrying one, itself or as its cause. Such a client never produces again: replace it.

    confluent-kafka raises a fatal error from ``poll``/``flush`` (as a ``SystemError`` caused by
    it when a delivery callback runs in the same call); ``produce`` then fails with ``_FATAL``.
    A ``SystemError`` with no cause is the same error lost inside a Python callback (seen with
    tracing on): it counts as fatal too.
    """
    if isinstance(error, SystemError) and error.__cause__ is None:
        return True
    seen: set[int] = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KafkaException) and error.args:
            error = error.args[0]
            break
        error = error.__cause__ or error.__context__
    return isinstance(error, KafkaError) and (error.fatal() or error.code() == KafkaError._FATAL)


@dataclass
class _Pending:
    """The messages of one ``publish`` not settled yet (each by a key of its own), and the
    failures."""

    open: dict[int, tuple[str, Span]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    keys: Iterator[int] = field(default_factory=itertools.count)

    def add(self, event_id: str, span: Span) -> int:
        # Not the span's id: with tracing off, every message gets the same no-op span object,
        # and keying by it let one message's outcome settle a whole batch (lost events).
        key = next(self.keys)
        self.open[key] = (event_id, span)
        return key

    def settle(self, key: int, error: str | None) -> Span | None:
        """The message's span, to end, unless it was settled already; records a failure."""
        event_id, span = self.open.pop(key, ("", None))
        if span is not None and error is not None:
            self.failures.append((event_id, error))
            span.set_status(Status(StatusCode.ERROR, error))
        return span


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
    """Publishes events with W3C trace headers; ``publish`` returns only once Kafka acked all.

    A fatal client error (the idempotent producer's guarantees broken) fails the ``publish`` it
    happens in and replaces the client, so the next ``publish`` goes out on a new one.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str, **config: Any) -> None:
        self._config = producer_config(bootstrap_servers, client_id, **config)
        self._producer = Producer(self._config)
        self._tracer = trace.get_tracer("ticketing_events.producer")

    def publish(
        self, messages: Iterable[OutgoingMessage | Envelope], timeout: float = 30.0
    ) -> None:
        """Send every message and wait for its acknowledgement; raise DeliveryError on any loss."""
        pending = _Pending()
        fatal: Exception | None = None
        flushing = False
        try:
            for message in messages:
                outgoing = (
                    message if isinstance(message, OutgoingMessage) else OutgoingMessage.of(message)
                )
                self._send(outgoing, pending)
            flushing = True
            self._producer.flush(timeout)
        except Exception as exc:
            # A fatal error can still be pending when confluent-kafka runs a delivery callback,
            # which then fails with a nonsense error (an AttributeError on a span, seen in CI):
            # whatever escapes flush, the client is not trusted and is replaced.
            if not (flushing or is_fatal(exc)):
                raise
            fatal = exc
            reason = f"fatal producer error: {exc.__cause__ or exc}"
            self._replace(reason)
            for key in list(pending.open):  # the dead client reports none of them
                span = pending.settle(key, reason)
                if span is not None:
                    span.end()
        if pending.open:
            pending.failures.append(("*", f"{len(pending.open)} unacknowledged after {timeout}s"))
        if pending.failures:
            raise DeliveryError(pending.failures) from fatal

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

        key = pending.add(message.event_id, span)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if pending.settle(key, None if err is None else str(err)) is None:
                return  # failed already, by a fatal error
            if err is None:
                span.set_attribute(tracing.MESSAGING_PARTITION, str(msg.partition()))
                span.set_attribute(tracing.MESSAGING_KAFKA_OFFSET, msg.offset())
            span.end()

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
            except KafkaException as exc:
                if is_fatal(exc):
                    raise
                pending.settle(key, str(exc.args[0]))  # refused here, e.g. too large
                span.end()
                return
        self._producer.poll(0)

    def _replace(self, reason: str) -> None:
        """Start a new client in place of one a fatal error killed."""
        log.error("kafka producer dead; replacing the client", error=reason[:500])
        dead, self._producer = self._producer, Producer(self._config)
        dead.purge()

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued; returns how many messages are still undelivered."""
        return int(self._producer.flush(timeout))
